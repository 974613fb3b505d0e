"""Every code block of the README (and of docs/trl.md) that says it runs, runs: as a user would paste it, in an
empty folder (the repository's configs/ beside it), `r1kit` and `python` on the PATH.

How a block is marked, on the line before its opening fence (blank lines between are allowed):
    <!-- runnable -->          runs in the fast suite (seconds: no embedded model, no long run)
    <!-- runnable: slow -->    runs with the slow tests (the embedded model, a short training run)
    <!-- not run: REASON -->   a block no test can run here (TRL's side of a comparison, a GPU, a download)
Only ```python and ```bash blocks are considered. Once the README marks any block, every python / bash block
in it must carry one of the three marks.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = ("README.md", "docs/trl.md")
MARK = re.compile(r"<!--\s*(runnable(?::\s*slow)?|not run:[^>]*)\s*-->")
FENCE = re.compile(r"^```(python|bash)\s*$")


def code_blocks(path: Path) -> list[tuple[int, str, str, str | None]]:
    """(line, language, code, mark or None) of each ```python / ```bash block of a Markdown file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        mark = MARK.search(lines[j]) if j >= 0 else None
        end = next(k for k in range(i + 1, len(lines)) if lines[k].startswith("```"))
        blocks.append((i + 1, fence.group(1), "\n".join(lines[i + 1:end]) + "\n",
                       " ".join(mark.group(1).split()) if mark else None))
        i = end + 1
    return blocks


def runnable_blocks() -> list:
    params = []
    for doc in DOCUMENTS:
        for line, language, code, mark in code_blocks(REPO / doc):
            if mark and mark.startswith("runnable"):
                marks = [pytest.mark.slow] if mark.endswith("slow") else []
                params.append(pytest.param(language, code, id=f"{doc}:{line}", marks=marks))
    return params


@pytest.fixture
def user_folder(tmp_path) -> tuple[Path, dict]:
    """An empty folder with the repository's configs/ beside it, and an environment whose PATH has `r1kit` and
    `python` as this test's Python runs them."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    for name, target in (("r1kit", f'"{sys.executable}" -m r1kit.cli'), ("python", f'"{sys.executable}"')):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "R1KIT_DATA_DIR": str(DATA_DIR), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return tmp_path, env


@pytest.mark.parametrize("language,code", runnable_blocks())
def test_a_runnable_block_runs(language, code, user_folder):
    folder, env = user_folder
    command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_every_readme_block_is_run_or_says_why_not():
    blocks = code_blocks(REPO / "README.md")
    if not any(mark for *_, mark in blocks):
        pytest.skip("README.md marks no block yet: the lead marks them (see this module's docstring)")
    unmarked = [f"README.md:{line}" for line, _, _, mark in blocks if mark is None]
    assert not unmarked, f"python/bash blocks with neither <!-- runnable --> nor <!-- not run: why -->: {unmarked}"


def test_the_block_reader_sees_marks_and_fences(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("text\n<!-- runnable -->\n```bash\necho hi\n```\n\n<!-- not run: needs a GPU -->\n\n```python\n"
                   "import x\n```\n```bash\nls\n```\n```text\nnot code\n```\n")
    assert code_blocks(doc) == [(3, "bash", "echo hi\n", "runnable"), (9, "python", "import x\n", "not run: needs a GPU"),
                                (12, "bash", "ls\n", None)]
