"""Shared fixtures: a tiny character-level model built from a config (no download), and the CLI runner."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1kit.models import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("R1KIT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def digit_model(tmp_path_factory) -> str:
    """A tiny model over digits only, for the learning test."""
    return str(build_tiny_model(tmp_path_factory.mktemp("digits") / "model", alphabet="0123456789", seed=1))


def run_cli(*args: str, cwd: str | Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `r1kit ARGS` in a subprocess (as a user would) and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "r1kit.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
