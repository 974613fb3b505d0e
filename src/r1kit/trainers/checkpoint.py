"""Checkpoints in HF format, written atomically, with everything needed to resume a run exactly.

A checkpoint folder `checkpoint-{step}` holds the model (or LoRA adapter) via save_pretrained, the
tokenizer, and `training_state.pt` (optimizer, scheduler, step, random generator states). It is written
under a temporary name and renamed when complete, and `trainer_state.json` is the last file written,
so a folder without it, or with a temporary name, is never taken for a good checkpoint. Files are
fsynced before the rename, so a power loss cannot leave a renamed folder with empty files. A write that
fails (a full disk) removes the temporary folder and raises CheckpointError; the checkpoints already
there are untouched, because old ones are pruned only after the new one is complete.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1kit.core.errors import CheckpointError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
TMP_PREFIX = ".tmp-checkpoint-"


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in output_dir, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for p in output_dir.iterdir():
        m = CHECKPOINT_RE.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def fsync_tree(folder: Path) -> None:
    """Flush the files of `folder` and the folder itself to disk."""
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # folders cannot be opened for fsync on some systems; the file data is flushed
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temporary_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete half-written checkpoint folders left by a killed run; returns what was removed."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    stale = [p for p in output_dir.iterdir() if p.name.startswith(TMP_PREFIX) and p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def save_checkpoint(output_dir: str | Path, step: int, model, tokenizer, training_state: dict[str, Any],
                    info: dict[str, Any], save_total_limit: int | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write checkpoint-{step} atomically and prune old ones; returns its path. `state_dict`, when given,
    is written in place of the model's own (under FSDP2: the full tensors gathered from the shards).

    Raises CheckpointError (one line, naming the folder) when the write fails with an OSError such
    as a full disk; the temporary folder is removed and existing checkpoints stay as they were.
    """
    output_dir = Path(output_dir)
    final = output_dir / f"checkpoint-{step}"
    tmp = output_dir / f"{TMP_PREFIX}{step}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if state_dict is None:
            model.save_pretrained(tmp, safe_serialization=True)
        else:
            model.save_pretrained(tmp, safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        torch.save(training_state, tmp / "training_state.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **info}, indent=2, default=str))
        fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)  # only an incomplete folder of this step: complete ones are never re-saved
        os.replace(tmp, final)
        _fsync_dir(output_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = e.strerror or str(e)
        code = f" [{errno.errorcode[e.errno]}]" if e.errno in errno.errorcode else ""
        previous = latest_checkpoint(output_dir)
        raise CheckpointError(f"could not write checkpoint {final}: {reason}{code}; the partial folder was "
                              f"removed and the previous checkpoint is intact: {previous or 'none yet'}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if save_total_limit:
        for old in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(checkpoint: str | Path) -> dict[str, Any]:
    return torch.load(Path(checkpoint) / "training_state.pt", weights_only=False)
