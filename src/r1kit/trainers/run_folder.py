"""The run folder a trainer writes in: one run at a time, and a resume only ever continues the same run.

`claim_output_dir` runs in `open_run`, before any data or model loads:
- the folder is locked for the run's life (core/lock.py); a second run in it is refused, naming the first;
- a fresh start refuses a folder that already holds a run (unless overwrite_output_dir);
- a resume starts from the newest checkpoint that loads whole (checkpoint.resumable_checkpoint); newer
  damaged ones are renamed aside, never deleted, and named with the reason;
- a resume compares the run's settings with those the checkpoint was trained with. What identifies the
  run (model, data, G, batch shape and number of processes, reward functions, seed, and every other
  option that changes what a step computes) must not change: the run is refused with one line listing
  every change. Options that only say where and how often to write, log or evaluate may change freely
  (FREE_ON_RESUME). A few changes keep the run meaningful: more steps, a lower learning rate
  (SAFE_ON_RESUME); they need `allow_resume_changes` and are recorded in resume_changes.jsonl.

The data itself is compared in `Run.start` (`check_extra_state`), once the trainer has read it: each
trainer saves a fingerprint of its tokenized or parsed data with every checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from r1kit.core.errors import ConfigError
from r1kit.core.lock import FolderLock, describe_stale
from r1kit.trainers.checkpoint import list_checkpoints, read_checkpoint_info, resumable_checkpoint, set_aside

# options that change nothing a step computes: where and how often the run writes, logs and evaluates, its
# alerts, threads and server addresses, and how a failing reward is handled
FREE_ON_RESUME = frozenset({
    "output_dir", "resume", "overwrite_output_dir", "allow_resume_changes", "save_steps", "save_total_limit",
    "logging_steps", "torch_threads", "report_to", "max_consecutive_nonfinite", "trust_remote_code", "data_dir",
    "skip_bad_data", "rollout_kernels", "vllm_gpu_memory_utilization", "vllm_server_host", "vllm_server_port",
    "vllm_group_port", "vllm_server_timeout", "vllm_enable_sleep_mode", "vllm_kv_cache_memory_bytes",
    "vllm_enforce_eager", "reward_timeout", "reward_failure", "eval_steps", "eval_benchmark", "eval_limit",
    "eval_num_samples", "eval_max_new_tokens", "eval_temperature", "eval_top_p", "alert_entropy_min",
    "alert_zero_std_max", "alert_format_rate", "alert_template_copy_max", "alert_kl_max", "alert_clip_max",
    "alert_timeouts_max", "alert_patience", "alert_stop", "log_completions_steps", "write_report", "report_steps",
    "report_markers"})


def _more(old: Any, new: Any) -> bool:
    return _numbers(old, new) and old > 0 and new > old


def _lower(old: Any, new: Any) -> bool:
    return _numbers(old, new) and 0 <= new < old


def _numbers(*xs: Any) -> bool:
    return all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)


# changes a resumed run may make with allow_resume_changes: the option and the test the change must pass
SAFE_ON_RESUME: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "max_steps": ("more steps", _more),
    "num_train_epochs": ("more epochs", _more),
    "learning_rate": ("a lower learning rate", _lower),
}
CHANGES_LOG = "resume_changes.jsonl"


@dataclass
class Claim:
    """What claiming the folder found: the checkpoint to resume from (None: a fresh start), its training
    state, the safe changes accepted, lines to print, and the lock (main process only)."""

    checkpoint: Path | None = None
    state: dict = field(default_factory=dict)
    changes: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    lock: FolderLock | None = None


def claim_output_dir(o, acc: Accelerator) -> Claim:
    """Lock the folder, then check it holds no other run (fresh start) or pick and check the checkpoint to
    resume from. A ConfigError is raised by every process alike; the lock is given back on any error."""
    out = Path(o.output_dir)
    if o.resume and o.overwrite_output_dir:
        raise ConfigError("resume and overwrite_output_dir: choose one")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir {out} is a file; choose a folder")
    lock = _on_main(acc, lambda: FolderLock.acquire(out))
    try:
        claim = _resume(o, acc, out) if o.resume else _fresh(o, out)
    except BaseException:
        if lock is not None:
            lock.release(remove_empty_folder=True)
        raise
    claim.lock = lock
    if lock is not None and lock.stale:
        claim.notes.insert(0, f"output_dir {out}: {describe_stale(lock.stale)}")
    return claim


def _fresh(o, out: Path) -> Claim:
    if not o.overwrite_output_dir and (any((out / name).exists() for name in o.run_markers) or list_checkpoints(out)):
        raise ConfigError(f"output_dir {out} already holds a run; pass --resume to continue it, "
                          f"--overwrite_output_dir to replace it, or choose another output_dir")
    return Claim()


def _resume(o, acc: Accelerator, out: Path) -> Claim:
    checkpoint, state, skipped = resumable_checkpoint(out)  # every process reads the same files
    changes = accepted_changes(read_checkpoint_info(checkpoint), o, acc.num_processes, checkpoint) if checkpoint else {}
    acc.wait_for_everyone()  # every process has read the checkpoints before damaged ones are moved
    notes = []
    if acc.is_main_process:
        for damaged, why in skipped:
            notes.append(f"resume: skipped {damaged} ({why}); kept as {set_aside(damaged).name}")
    return Claim(checkpoint, state, changes, notes)


def accepted_changes(info: dict, o, processes: int, checkpoint: Path) -> dict[str, list]:
    """The safe changes of settings since `checkpoint` ({option: [old, new]}); ConfigError listing every
    change when one is not safe, or when safe ones were not allowed."""
    saved = info.get("config") or {}
    current = json.loads(json.dumps(o.config, default=str))  # compared as the checkpoint stored them
    diffs = {k: [saved[k], current[k]] for k in saved if k in current and k not in FREE_ON_RESUME
             and saved[k] != current[k]}
    if info.get("world_size") not in (None, processes):
        diffs["processes"] = [info["world_size"], processes]
    if info.get("stage") not in (None, o.name.lower()):
        diffs["trainer"] = [info["stage"], o.name.lower()]
    safe = {k: v for k, v in diffs.items() if k in SAFE_ON_RESUME and SAFE_ON_RESUME[k][1](*v)}
    refused = {k: v for k, v in diffs.items() if k not in safe}
    if refused:
        raise ConfigError(f"resume: {checkpoint} was trained with other settings: {describe(refused)}; a resumed run "
                          f"continues the same run (only more steps and a lower learning rate may change, with "
                          f"--allow_resume_changes): train with these settings in another output_dir (--model "
                          f"{checkpoint} starts from its weights)")
    if safe and not o.allow_resume_changes:
        raise ConfigError(f"resume: {describe(safe)} since {checkpoint}: "
                          f"{' and '.join(SAFE_ON_RESUME[k][0] for k in safe)}; pass --allow_resume_changes to continue "
                          f"with them (recorded in {CHANGES_LOG})")
    return safe


def check_extra_state(saved_state: dict, extra_state: dict, checkpoint: Path | None) -> None:
    """The trainer's own record of its run (a data fingerprint, its reward functions) against the checkpoint's;
    a key the checkpoint lacks (written before it was recorded) is not compared."""
    diffs = {k: [saved_state[k], v] for k, v in extra_state.items() if k in saved_state and saved_state[k] != v}
    if diffs:
        data = " (the dataset, template, max_length or tokenizer changed)" if "data_fingerprint" in diffs else ""
        raise ConfigError(f"resume: the training data or rewards differ from those of {checkpoint}: {describe(diffs)}"
                          f"{data}, so the batches would not match; train on them in another output_dir")


def describe(changes: dict[str, list]) -> str:
    return ", ".join(f"{k} {json.dumps(old, default=str)} -> {json.dumps(new, default=str)}"
                     for k, (old, new) in changes.items())


def _on_main(acc: Accelerator, fn: Callable[[], Any]) -> Any:
    """fn() on the main process only (None elsewhere); its ConfigError is raised on every process."""
    result, error = None, None
    if acc.is_main_process:
        try:
            result = fn()
        except ConfigError as e:
            error = e
    if acc.num_processes > 1:
        box = [str(error) if error is not None else None]
        broadcast_object_list(box)
        if box[0] is not None and error is None:
            raise ConfigError(box[0])
    if error is not None:
        raise error
    return result
