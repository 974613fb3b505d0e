"""Real faults for tests, made as a user meets them: a small file system that fills up, a read-only folder.

`unshare --user --map-root-user --mount` gives a command its own mount namespace (no root needed where
unprivileged user namespaces are enabled, as on most Linux systems; as root it always works). There a
tmpfs of a given size, or a read-only bind mount, is put over a folder; the command runs against it and
whatever the folder holds afterwards is copied out before the namespace, and the mount with it, ends.
Root ignores permission bits, so a read-only folder has to be a read-only mount, not a chmod. Where no
namespace can be made, the tests that need one are skipped, saying why.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest


@functools.cache
def _namespace_problem() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a mount namespace: {probe.stderr.strip()}"


def need_namespace() -> None:
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)


def run_with_mount(mount: list[str], command: list[str], copy_out: tuple[Path, Path] | None = None,
                   timeout: int = 600) -> subprocess.CompletedProcess:
    """`command` in a mount namespace where the shell commands `mount` ran first; with `copy_out` (a folder
    inside the mount, a folder outside it), what the folder holds afterwards is copied out."""
    need_namespace()
    script = " && ".join(mount) + f" && {{ {shlex.join(command)}; rc=$?; }}"
    if copy_out is not None:
        script += f"; cp -a {shlex.quote(str(copy_out[0]))}/. {shlex.quote(str(copy_out[1]))}/ 2>/dev/null"
    script += "; exit $rc"
    if copy_out is not None:
        copy_out[1].mkdir(parents=True, exist_ok=True)
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, timeout=timeout)


def small_disk(folder: Path, kilobytes: int, fill: bool = False, seed: Path | None = None) -> list[str]:
    """Shell commands: a tmpfs of `kilobytes` over `folder` (created), holding a copy of `seed`'s files if
    given; with `fill`, a file then takes up all the room left."""
    folder.mkdir(parents=True, exist_ok=True)
    q = shlex.quote(str(folder))
    steps = [f"mount -t tmpfs -o size={kilobytes}k tmpfs {q}"]
    if seed is not None:
        steps.append(f"cp -a {shlex.quote(str(seed))}/. {q}/")
    if fill:
        steps.append(f"{{ dd if=/dev/zero of={q}/filler bs=4096 2>/dev/null || true; }}")
    return steps


def read_only(folder: Path) -> list[str]:
    """Shell commands: `folder` (created) made read-only by a read-only bind mount over itself."""
    folder.mkdir(parents=True, exist_ok=True)
    q = shlex.quote(str(folder))
    return [f"mount --bind {q} {q}", f"mount -o remount,bind,ro {q}"]
