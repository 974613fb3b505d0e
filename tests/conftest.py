"""Shared fixtures: a tiny character-level model built from a config (no download), and the CLI runner."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1kit.models.loading import build_tiny_model

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


# metrics that are timings: they differ between two runs that are otherwise the same
VOLATILE = {"step_time", "generation_time", "tokens_per_second", "generated_tokens_per_second", "seconds"}


def is_volatile(key: str) -> bool:
    """A timing metric: the named ones, and every phase timer (timing/<phase>)."""
    return key in VOLATILE or key.startswith("timing/")


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll until predicate() holds, while the run `proc` is still going."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before the test could interrupt it"
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


def metric_lines(out: Path) -> list[dict]:
    """metrics.jsonl without timings; complete lines only (the run may be writing it)."""
    path = Path(out) / "metrics.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return [{k: v for k, v in json.loads(line).items() if not is_volatile(k)} for line in lines]


def assert_same_run(a: Path, b: Path, step: int) -> None:
    """Two run folders hold the same run: bitwise-equal weights in checkpoint-{step}, the same metrics
    except timings."""
    import torch
    from safetensors.torch import load_file

    wa = load_file(Path(a) / f"checkpoint-{step}" / "model.safetensors")
    wb = load_file(Path(b) / f"checkpoint-{step}" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert metric_lines(a) == metric_lines(b)


@contextlib.contextmanager
def started(cmd: list[str], **kw):
    """Popen in a session of its own (unbuffered output); whatever is still running of it at the end is killed."""
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
