"""Writing run outputs so that nothing is ever half-written: every file goes to a temporary name in the
same folder and is renamed over the target (an atomic replace on POSIX); JSONL logs are appended line by
line, and on resume the lines after the checkpoint's step (and a line cut short by a kill) are dropped."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from r1kit.core.errors import TrainingError


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Pretty JSON, written atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def append_jsonl(path: str | Path, records: list[dict]) -> None:
    """Append one JSON line per record; a failed write is a TrainingError naming the file."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(jsonl_text(records))
            f.flush()
    except OSError as e:
        raise TrainingError(f"could not write {path}: {e.strerror or e}") from e


def truncate_jsonl(path: str | Path, max_step: int) -> None:
    """Drop lines logged after `max_step` (a resumed run writes them again); atomic replace.

    A line that does not parse was cut short by a kill mid-write and is dropped too. Lines are split on
    newline only: str.splitlines would also split records at U+2028 and friends.
    """
    path = Path(path)
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("step", 0) <= max_step:
            keep.append(line + "\n")
    write_atomic(path, "".join(keep))


def iter_jsonl(path: Path) -> Iterator[dict]:
    """The JSON objects of a .jsonl file; blank or unreadable lines (a line being written) are skipped."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record
