"""Writing run outputs so that nothing is ever half-written: every file goes to a temporary name in the
same folder and is renamed over the target (an atomic replace on POSIX); JSONL logs are appended line by
line, and on resume the lines after the checkpoint's step (and a line cut short by a kill) are dropped."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from r1kit.core.errors import TrainingError


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` through a temporary file and a rename; a write that fails
    (a full disk) leaves `path` as it was and no temporary file behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# "os error 28" in the messages of libraries written in Rust (safetensors, tokenizers)
_OS_ERROR_IN_TEXT = re.compile(r"os error (\d+)")
FULL_DISK_BYTES = 1 << 20  # a write that failed on a file system with less free space than this ran out of it


def write_failure(error: BaseException, where: str | Path | None = None) -> str:
    """Why a write failed, in words, whatever library raised it: "No space left on device [ENOSPC]".

    Libraries report a full disk in their own ways: an OSError, safetensors' SafetensorError with "os error
    28" in its text, torch.save's RuntimeError ("unexpected pos") with the OSError as its context, or
    nothing that names the cause at all; for those, a file system with (almost) no free space at `where`
    is taken for the cause."""
    seen, e = set(), error
    while e is not None and id(e) not in seen:  # the OSError a library's own error was raised from
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno:
            blocking = _file_on_the_way(Path(where)) if where is not None and e.errno in (errno.ENOTDIR, errno.EEXIST) else None
            return f"{blocking} is a file" if blocking else _errno_text(e.errno, e.strerror)
        e = e.__cause__ or e.__context__
    found = _OS_ERROR_IN_TEXT.search(str(error))
    if found:
        return _errno_text(int(found.group(1)))
    if where is not None and _free_bytes(Path(where)) < FULL_DISK_BYTES:
        return _errno_text(errno.ENOSPC)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def _file_on_the_way(path: Path) -> Path | None:
    """The file that stands where `path` or one of its folders should be (mkdir's ENOTDIR / EEXIST)."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def _errno_text(code: int, text: str | None = None) -> str:
    name = f" [{errno.errorcode[code]}]" if code in errno.errorcode else ""
    return f"{text or os.strerror(code)}{name}"


def _free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path` (its nearest existing folder); large when unknown."""
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                break
    return 1 << 62


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
        raise TrainingError(f"could not write {path}: {write_failure(e, path)}") from e


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


def read_jsonl(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a .jsonl file and the number of its non-blank lines that are not one (unreadable:
    cut short by a kill, or not JSON at all)."""
    records, unreadable = [], 0
    if not path.is_file():
        return records, unreadable
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            else:
                unreadable += 1
    return records, unreadable
