"""Checkpoints in HF format, written atomically, with everything needed to resume a run exactly.

A checkpoint folder `checkpoint-{step}` holds the model (or LoRA adapter) via save_pretrained, the
tokenizer, and `training_state.pt` (optimizer, scheduler, step, random generator states). It is written
under a temporary name and renamed when complete, and `trainer_state.json` is the last file written,
so a folder without it, or with a temporary name, is never taken for a good checkpoint. Files are
fsynced before the rename, so a power loss cannot leave a renamed folder with empty files. A write that
fails (a full disk, whatever library reports it) removes the temporary folder and raises CheckpointError;
the checkpoints already there are untouched, because old ones are pruned only after the new one is complete.

`trainer_state.json` also records the size of every file of the checkpoint, so that resuming can tell a
checkpoint that loads whole from one damaged later (a file truncated, replaced or gone): `resumable_checkpoint`
takes the newest whole one and renames the damaged ones aside (`checkpoint-N.damaged`), never deleting them.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1kit.core.errors import CheckpointError, ConfigError
from r1kit.core.files import write_failure

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

    Raises CheckpointError (one line, naming the folder and the cause) when the write fails, a full disk
    say; the temporary folder is removed and existing checkpoints stay as they were.
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
        with open(tmp / "training_state.pt", "wb") as f:  # a file object: a full disk then surfaces as an OSError
            torch.save(training_state, f)
        files = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **info, "files": files}, indent=2, default=str))
        fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)  # only an incomplete folder of this step: complete ones are never re-saved
        os.replace(tmp, final)
        _fsync_dir(output_dir)
    except Exception as e:  # noqa: BLE001 - safetensors and torch report a full disk as their own errors
        shutil.rmtree(tmp, ignore_errors=True)
        previous = next((c for c in reversed(list_checkpoints(output_dir)) if c != final), None)
        raise CheckpointError(f"could not write checkpoint {final}: {write_failure(e, output_dir)}; the partial "
                              f"folder was removed and the previous checkpoint is intact: {previous or 'none yet'}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if save_total_limit:
        for old in list_checkpoints(output_dir)[:-save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(checkpoint: str | Path) -> dict[str, Any]:
    return torch.load(Path(checkpoint) / "training_state.pt", weights_only=False)


def read_checkpoint_info(checkpoint: str | Path) -> dict[str, Any]:
    """trainer_state.json of a checkpoint: its step, the config it was trained with, its files' sizes."""
    return json.loads((Path(checkpoint) / STATE_FILE).read_text(encoding="utf-8"))


def checkpoint_problem(checkpoint: Path) -> tuple[str | None, dict[str, Any]]:
    """(why the checkpoint does not load whole, None if it does; its training state when it does).

    Whole: trainer_state.json parses, every file it lists has the size it was written with, the weights
    (model or adapter, every shard) are safetensors files whose header covers the file, every JSON file
    parses and training_state.pt loads. The weights are not read in full: a file of the right size with a
    valid header but flipped bits inside passes."""
    from safetensors import safe_open

    try:
        info = read_checkpoint_info(checkpoint)
    except (OSError, ValueError) as e:
        return f"{STATE_FILE}: {write_failure(e)}", {}
    for name, size in (info.get("files") or {}).items():
        f = checkpoint / name
        if not f.is_file():
            return f"{name} is missing", {}
        if f.stat().st_size != size:
            return f"{name} is {f.stat().st_size} bytes, written as {size}", {}
    weights = sorted(checkpoint.glob("*.safetensors"))
    if not weights:
        return "no weights (*.safetensors)", {}
    for f in [*weights, *sorted(checkpoint.glob("*.json"))]:
        try:
            if f.suffix == ".json":
                json.loads(f.read_text(encoding="utf-8"))
            else:
                with safe_open(f, "pt") as opened:
                    opened.keys()
        except Exception as e:  # noqa: BLE001 - SafetensorError, UnicodeDecodeError, JSONDecodeError, OSError
            return f"{f.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", {}
    try:
        state = load_training_state(checkpoint)
    except Exception as e:  # noqa: BLE001 - a truncated pickle raises whatever its reader hits first
        return f"training_state.pt: {str(e).splitlines()[0] if str(e) else type(e).__name__}", {}
    if not isinstance(state, dict) or "step" not in state:
        return "training_state.pt holds no training state", {}
    return None, state


def resumable_checkpoint(output_dir: str | Path) -> tuple[Path | None, dict[str, Any], list[tuple[Path, str]]]:
    """The newest checkpoint that loads whole, its training state, and the newer ones skipped, with why.

    None when the folder holds no checkpoint; ConfigError when it holds some but none loads whole (a
    fresh start would overwrite the run's logs)."""
    skipped: list[tuple[Path, str]] = []
    for ckpt in reversed(list_checkpoints(output_dir)):
        problem, state = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt, state, skipped
        skipped.append((ckpt, problem))
    if skipped:
        raise ConfigError(f"resume: no checkpoint in {output_dir} loads whole: "
                          + "; ".join(f"{c.name}: {why}" for c, why in skipped))
    return None, {}, []


def set_aside(checkpoint: Path) -> Path:
    """Rename a damaged checkpoint to checkpoint-N.damaged (never taken for a checkpoint, never pruned, and out
    of the way of the checkpoint the resumed run writes at that step); returns the new path."""
    target, n = checkpoint.with_name(f"{checkpoint.name}.damaged"), 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"{checkpoint.name}.damaged-{n}")
    os.replace(checkpoint, target)
    return target
