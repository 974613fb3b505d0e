"""One run per folder: a lock held for a run's whole life, released on any exit, a crashed holder detected.

The lock is a POSIX record lock (fcntl.lockf) on FOLDER/.r1kit.lock, a file that also names its holder
(process id, host, start time, command) so that a second run is refused with one line naming the first.

Design decisions:
- A kernel lock, not a pid file alone: the kernel releases it when its process ends in any way (exit,
  exception, SIGKILL, the OOM killer), so a crashed run never leaves the folder locked; the pid the file
  still names is then reported as a stale holder and the new run takes the lock over.
- POSIX record locks belong to a process and are not inherited by fork: the reward worker and other
  children forked during the run neither hold the lock nor keep it alive after the run has died.
- The file is removed on release. A run that opened the file just before it was removed would lock a
  file no longer in the folder, so after locking, the run checks that the path still names the file it
  locked, and tries again otherwise.
- Where the file system has no record locks (some network mounts), the lock falls back to the pid in
  the file: a holder that is still running on this host keeps the folder.
- POSIX locks do not exclude a second claim from the same process, so claims held by this process are
  also kept in a set.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from r1kit.core.errors import ConfigError
from r1kit.core.files import write_failure

LOCK_NAME = ".r1kit.lock"
_HELD: set[str] = set()  # folders this process holds (resolved paths)


class FolderInUse(ConfigError):
    """The folder is held by another run; the message names it."""


class FolderLock:
    """An exclusive claim on a folder for one run; `release()` (or the context manager) gives it back."""

    def __init__(self, folder: Path, fd: int, stale: dict | None, created: bool) -> None:
        self.folder, self.fd, self.created = folder, fd, created
        self.stale = stale  # the holder named in the file when the lock was free: a run that crashed

    @classmethod
    def acquire(cls, folder: str | Path, what: str = "output_dir") -> "FolderLock":
        """Lock `folder` (created if missing) or raise FolderInUse naming the run that holds it; a folder that
        cannot be created or written in is a ConfigError naming it (`what` is the option that chose it)."""
        folder = Path(folder)
        created = not folder.exists()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{what} {folder}: cannot create it ({write_failure(e, folder)})") from None
        key = str(folder.resolve())
        if key in _HELD:
            raise FolderInUse(f"{what} {folder} is already in use by this process (another run in it is not finished)")
        path = folder / LOCK_NAME
        for _ in range(10):
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                _remove_if_empty(folder, created)
                raise ConfigError(f"{what} {folder}: cannot write in it ({write_failure(e, path)})") from None
            try:
                stale = _lock(fd, path, what, folder)
            except BaseException:
                os.close(fd)
                _remove_if_empty(folder, created)
                raise
            if _same_file(fd, path):
                break
            os.close(fd)  # removed by the run that held it while we waited: lock the new file
        else:
            raise FolderInUse(f"{what} {folder}: could not take its lock {path} (runs keep replacing it)")
        lock = cls(folder, fd, stale, created)
        try:
            holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime(
                "%Y-%m-%d %H:%M:%S"), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500]})
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode() + b"\n", 0)
        except OSError as e:
            lock.release()
            raise ConfigError(f"{what} {folder}: cannot write in it ({write_failure(e, path)})") from None
        _HELD.add(key)
        return lock

    def release(self, remove_empty_folder: bool = False) -> None:
        """Remove the lock file and give the lock back (closing the file releases it). With
        `remove_empty_folder`, a folder this lock created and nothing else wrote in is removed too."""
        if self.fd < 0:
            return
        _HELD.discard(str(self.folder.resolve()))
        try:
            (self.folder / LOCK_NAME).unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or vanished folder: closing still releases the lock
        os.close(self.fd)
        self.fd = -1
        if remove_empty_folder:
            _remove_if_empty(self.folder, self.created)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock(fd: int, path: Path, what: str, folder: Path) -> dict | None:
    """Take the lock on `fd`; returns the stale holder the file names (None if none). FolderInUse if held."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EAGAIN):
            holder = _read(fd)
            for _ in range(20):  # the holder may have locked the file a moment ago and be writing its name
                if holder:
                    break
                time.sleep(0.05)
                holder = _read(fd)
            raise FolderInUse(f"{what} {folder} is in use by another run ({_describe(holder)}); wait for it to "
                              f"end, or choose another {what}") from None
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise ConfigError(f"{what} {folder}: cannot lock {path} ({write_failure(e, path)})") from None
        holder = _read(fd)  # no record locks here: the pid in the file decides
        if holder and holder.get("host") == socket.gethostname() and _running(holder.get("pid")):
            raise FolderInUse(f"{what} {folder} is in use by another run ({_describe(holder)}); wait for it to "
                              f"end, or choose another {what}") from None
        return holder or None
    return _read(fd) or None


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "its process is starting"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
            f"{holder.get('command', '?')}")


def describe_stale(holder: dict) -> str:
    """One line about a lock whose holder ended without releasing it."""
    return f"the run that held it before (pid {holder.get('pid')}, started {holder.get('started')}) ended without " \
           f"releasing it (killed?); taken over"


def _running(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _remove_if_empty(folder: Path, created: bool) -> None:
    if created:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty, or not ours to remove
