"""The training loop every r1kit trainer shares: GRPO (trainer.py), SFT (sft.py) and reward models
(reward_model.py).

A trainer supplies only what is its own: how a step's batch is prepared, the loss and its metrics, as
the body of `for step in run.steps(): ...`. Everything else is done here, once, the same way for all:

- accelerate and CPU threads (`open_run`, before any model loads);
- the run folder (run_folder.py): locked for the run's life; a folder that holds a run needs `resume` or
  `overwrite_output_dir`; a resumed run restarts from the newest checkpoint that loads whole, only with
  the settings it was trained with (a few safe changes allowed on request), and its JSONL logs are cut
  back to that step, so a resumed run writes what the uninterrupted run would have written;
- AdamW and a transformers scheduler, stepped once per optimizer update, never on a skipped one;
- checkpoints: atomic HF folders with optimizer, scheduler, step and every process's RNG state
  (checkpoint.py), plus whatever the trainer adds (`extra_state`, checked on resume);
- SIGINT/SIGTERM: the step is finished, a checkpoint saved and TrainingStopped raised (the CLI prints
  the `--resume` line and exits 0); a second signal a second or more later stops at once
  (KeyboardInterrupt, exit 130). Every process agrees on the step through an all-reduce;
- the non-finite policy: a NaN/inf loss or gradient skips the update (weights, optimizer state and
  schedule untouched); `max_consecutive_nonfinite` in a row stop the run. No checkpoint follows a
  non-finite update, so resuming never starts inside a streak;
- trackers (TensorBoard, W&B, trackio) and the progress bar; metrics.jsonl stays the source of truth;
- FSDP2 under an accelerate FSDP config (sharding.py): the same loop, with the full weights and the full
  optimizer state gathered for each checkpoint, so checkpoints stay HF folders that resume exactly.

Design decision: the loop is a plain object with a few methods rather than a framework with hooks.
A trainer reads top to bottom: `open_run`, load data and models, `run.start(model, ...)`, then its
step body calling `run.update()` after each backward pass and `run.end_step()` at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.utils import logging as hf_logging

from r1kit.core.errors import EngineError, TrainingError, TrainingStopped
from r1kit.core.files import append_jsonl, truncate_jsonl, write_failure, write_json
from r1kit.core.tracking import make_trackers
from r1kit.models.loading import default_threads
from r1kit.models.weights import full_tensor
from r1kit.trainers.base_config import BaseConfig
from r1kit.trainers.checkpoint import (
    latest_checkpoint,
    list_checkpoints,
    remove_temporary_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from r1kit.trainers.run_folder import CHANGES_LOG, Claim, check_extra_state, claim_output_dir, describe
from r1kit.trainers.sharding import (
    FULL_BY_NAME,
    check_fsdp_request,
    check_optimizer_format,
    enable_fsdp_on_cpu,
    full_model_state,
    full_optimizer_state,
    is_sharded,
    load_full_optimizer_state,
)


@dataclass
class LoopOptions(BaseConfig):
    """What the loop reads: a trainer config's BaseConfig options, taken by name (`from_config`), plus what
    the trainer gives itself."""

    name: str = "train"  # "GRPO", "SFT", "RM": the progress bar and messages
    updates_per_step: int = 1  # optimizer updates per step (GRPO's num_iterations): the schedule's length
    logs: tuple[str, ...] = ("metrics.jsonl",)  # JSONL logs made empty on a fresh start, cut back on resume
    run_markers: tuple[str, ...] = ("metrics.jsonl",)  # files whose presence means the folder holds a run
    config: dict = field(default_factory=dict)  # written to config.json and each checkpoint, given to trackers

    @classmethod
    def from_config(cls, c: Any, /, **given: Any) -> "LoopOptions":
        given.setdefault("config", _by_name(dataclasses.asdict(c)))
        return super().from_config(c, **given)


def _by_name(value: Any) -> Any:
    """A config as config.json and the trackers hold it: functions (reward_funcs given in Python) by their
    dotted name."""
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, (list, tuple)):
        return [_by_name(v) for v in value]
    return {k: _by_name(v) for k, v in value.items()} if isinstance(value, dict) else value


# --------------------------------------------------------------------------
# Stop signals
# --------------------------------------------------------------------------

# The stop request made by SIGINT/SIGTERM: the signal's name, when it came, and what to announce.
_STOP: dict = {"signal": None, "time": 0.0, "step": 0, "announce": True}


def _on_stop_signal(signum: int, frame) -> None:
    """First SIGINT/SIGTERM: stop after the current step. Another one a second or more later: stop now."""
    now = time.monotonic()
    if _STOP["signal"] is not None:
        if now - _STOP["time"] >= 1.0:
            raise KeyboardInterrupt
        return  # the same request again, e.g. a launcher forwarding the terminal's Ctrl-C to its workers
    _STOP.update(signal=signal.Signals(signum).name, time=now)
    if _STOP["announce"]:
        # os.write, not print: a handler that prints while the loop prints raises "reentrant call"
        os.write(2, (f"\nr1kit: {_STOP['signal']} received: finishing step {_STOP['step'] + 1}, then saving a "
                     f"checkpoint (send it again to stop at once)\n").encode())


def install_stop_handlers(announce: bool) -> dict:
    """Turn SIGINT/SIGTERM into a stop request; returns the handlers they replace (none off the main thread).
    A signal ignored on purpose (nohup, a shell's background job) stays ignored."""
    _STOP.update(signal=None, time=0.0, step=0, announce=announce)
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN}


def request_stop(reason: str) -> None:
    """Ask the loop to stop after the current step, as a first SIGTERM does (an alert with alert_stop)."""
    if _STOP["signal"] is None:
        _STOP.update(signal=reason, time=time.monotonic())


def stop_signal() -> str | None:
    """The pending stop request (the signal's name or the reason), or None: for loops that run outside a
    `Run` between its runs (a tree search), which install the handlers themselves."""
    return _STOP["signal"]


def stop_requested(acc: Accelerator) -> bool:
    """Whether any process got a stop signal; every process must call this at the same step."""
    if acc.num_processes == 1:
        return _STOP["signal"] is not None
    flag = torch.tensor(float(_STOP["signal"] is not None), device=acc.device)
    return acc.reduce(flag, reduction="sum").item() > 0


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


@dataclass
class Update:
    """One optimizer update's outcome."""

    grad_norm: float
    skipped: bool  # non-finite loss or gradient: nothing was changed


class Run:
    """One training run's shared machinery; see the module docstring. Use as a context manager."""

    def __init__(self, o: LoopOptions, acc: Accelerator, claim: Claim, show_progress: bool = True) -> None:
        self.o, self.acc, self.claim, self.show_progress = o, acc, claim, show_progress
        self.checkpoint = claim.checkpoint
        self.out_dir = Path(o.output_dir)
        self.rank, self.world = acc.process_index, acc.num_processes
        self.is_main = acc.is_main_process
        self.sharded = is_sharded(acc)  # FSDP2: parameters, gradients and optimizer state are DTensor shards
        self.start_step = 0
        self.nonfinite_streak = 0  # non-finite updates in a row, carried across steps
        self.state: dict = claim.state
        self._cleanup = contextlib.ExitStack()
        if claim.lock is not None:  # given back on any exit; the kernel gives it back if the process dies
            self._cleanup.callback(claim.lock.release, remove_empty_folder=True)
        for note in claim.notes if self.is_main else ():
            print(f"r1kit: {o.name.lower()}: {note}")
        if self.state:
            try:
                check_optimizer_format(self.state, self.sharded, self.checkpoint)  # before any model loads
            except BaseException:
                self._cleanup.close()
                raise
        self.bar = None
        self._stepping = False  # steps() has begun: an engine failure is reported with the step
        # key -> what this process adds to each checkpoint (saved as a list by rank), e.g. a rollout
        # generated ahead of its step
        self.process_state: dict[str, Callable[[], Any]] = {}

    # --- set-up ----------------------------------------------------------------------------------------

    def start(self, model: torch.nn.Module, tokenizer, extra_state: dict | None = None,
              on_close: Callable[[], None] | None = None, **known_now: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
        """Optimizer, scheduler and accelerate around `model`; resume their states or claim the folder;
        trackers, progress bar and signal handlers. Returns (the wrapped model, the unwrapped policy).

        `extra_state` is saved with each checkpoint; on resume each of its keys must equal the saved value
        (a data fingerprint, say), else the batches would not match and the run is refused. `known_now`
        sets options that depend on the data or the number of processes (max_steps, warmup_steps)."""
        self.o = o = dataclasses.replace(self.o, **known_now)
        acc = self.acc
        self.extra_state = dict(extra_state or {})
        self._check_extra_state()
        params = [p for p in model.parameters() if p.requires_grad]
        self.adamw = torch.optim.AdamW(params, lr=o.learning_rate, betas=(o.adam_beta1, o.adam_beta2),
                                       weight_decay=o.weight_decay)
        # not handed to accelerate, which would step it once per process
        self.scheduler = get_scheduler(o.lr_scheduler_type, self.adamw, num_warmup_steps=o.warmup_steps,
                                       num_training_steps=o.max_steps * o.updates_per_step)
        # together: under FSDP2 accelerate shards the model, then points the optimizer at the sharded
        # parameters (the same AdamW object, so the scheduler still drives it)
        self.model, self.optimizer = acc.prepare(model, self.adamw)
        self.policy = acc.unwrap_model(self.model)  # under FSDP2 the sharded module itself (sharded in place)
        self.params = [p for p in self.policy.parameters() if p.requires_grad]  # FSDP2's are new Parameters
        self.tokenizer = tokenizer
        if self.state:
            if self.sharded:
                load_full_optimizer_state(self.model, self.adamw, self.state["optimizer"])
            else:
                self.optimizer.load_state_dict(self.state["optimizer"])
            self.scheduler.load_state_dict(self.state["scheduler"])
            self._resume_schedule()
            rngs = self.state["rng"]
            set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
            self.start_step = self.state["step"]
        self._prepare_folder()
        self.trackers = make_trackers(o.report_to, self.out_dir, o.config) if self.is_main else []
        self._cleanup.callback(self._close_outputs, on_close)  # runs after the bar closes (last in, first out)
        self.bar = self._cleanup.enter_context(tqdm(
            total=o.max_steps, initial=self.start_step, desc=o.name, unit="step", dynamic_ncols=True,
            disable=not (self.show_progress and self.is_main)))
        for sig, handler in install_stop_handlers(announce=self.is_main).items():
            self._cleanup.callback(signal.signal, sig, handler)
        return self.model, self.policy

    def _check_extra_state(self) -> None:
        if self.state:
            check_extra_state(self.state, self.extra_state, self.checkpoint)

    def _resume_schedule(self) -> None:
        """The learning rate of the resumed step from this run's settings: the schedule's factor at the
        checkpoint's step times learning_rate. Unchanged settings give the very value the checkpoint holds;
        an accepted change (more steps, a lower rate) takes effect from the first resumed step."""
        sched = self.scheduler
        sched.base_lrs = [self.o.learning_rate for _ in sched.base_lrs]
        for group, factor in zip(self.adamw.param_groups, sched.lr_lambdas):
            group["initial_lr"] = self.o.learning_rate
            group["lr"] = self.o.learning_rate * factor(sched.last_epoch)
        sched._last_lr = [group["lr"] for group in self.adamw.param_groups]

    def _prepare_folder(self) -> None:
        """Resume: cut the logs back to the checkpoint's step. Fresh start: empty logs, config.json, and
        with overwrite_output_dir no checkpoint of the old run (it would pass for this run's)."""
        if self.is_main:
            path = self.out_dir
            try:
                remove_temporary_checkpoints(self.out_dir)  # half-written by a run killed while saving
                if self.checkpoint is not None:
                    for name in self.o.logs:
                        path = self.out_dir / name
                        truncate_jsonl(path, self.start_step)
                    self._record_changes()
                    print(f"r1kit: {self.o.name.lower()}: resuming from {self.checkpoint} at step {self.start_step}")
                else:
                    if self.o.resume:
                        print(f"r1kit: {self.o.name.lower()}: no complete checkpoint in {self.out_dir}; starting from step 0")
                    self.out_dir.mkdir(parents=True, exist_ok=True)
                    if self.o.overwrite_output_dir:
                        for old in list_checkpoints(self.out_dir):
                            shutil.rmtree(old)
                    for name in (*self.o.logs, "config.json"):
                        path = self.out_dir / name
                        if name == "config.json":
                            write_json(path, self.o.config)
                        else:
                            path.write_text("")
            except OSError as e:  # a full disk at the start: nothing of the run's earlier files was lost
                raise TrainingError(f"could not write {path}: {write_failure(e, path)}") from e
        self.acc.wait_for_everyone()

    def _record_changes(self) -> None:
        """The safe changes a resume accepted: config.json shows the settings in force, resume_changes.jsonl
        when each change was made."""
        if not self.claim.changes:
            return
        write_json(self.out_dir / "config.json", self.o.config)
        append_jsonl(self.out_dir / CHANGES_LOG, [{"step": self.start_step, "checkpoint": str(self.checkpoint),
                                                   "changes": self.claim.changes, "time": time.strftime("%Y-%m-%d %H:%M:%S")}])
        print(f"r1kit: {self.o.name.lower()}: resuming with changed settings: {describe(self.claim.changes)} "
              f"(recorded in {self.out_dir / CHANGES_LOG})")

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._cleanup.close()
        if isinstance(exc, EngineError) and self._stepping:  # say where the run stands; the checkpoints were left as they were
            exc.args = (f"{exc}; the run stopped during step {_STOP['step'] + 1}, last checkpoint: "
                        f"{latest_checkpoint(self.out_dir) or 'none'} (--resume continues from it)",)

    def _close_outputs(self, on_close: Callable[[], None] | None) -> None:
        for t in self.trackers:
            t.close()
        if on_close is not None:
            on_close()

    # --- the step ----------------------------------------------------------------------------------------

    def steps(self) -> Iterator[int]:
        """The steps still to run (0-based), announcing each one to the signal handler."""
        self._stepping = True
        for step in range(self.start_step, self.o.max_steps):
            _STOP["step"] = step
            yield step

    def update(self, loss_nonfinite: bool | torch.Tensor = False) -> Update:
        """After the step's backward passes: clip, then one optimizer and scheduler step, or none at all
        when the loss or the gradient is not finite (every process takes the same decision)."""
        if self.o.max_grad_norm > 0:
            norm = self.acc.clip_grad_norm_(self.model.parameters(), self.o.max_grad_norm)
        elif self.sharded:  # the norm over every shard; an infinite bound scales the gradients by 1 exactly
            norm = self.acc.clip_grad_norm_(self.model.parameters(), math.inf)
        else:
            grads = [p.grad.norm() for p in self.params if p.grad is not None]
            norm = torch.norm(torch.stack(grads)) if grads else torch.zeros(())
        norm = float(full_tensor(norm))  # under FSDP2 a replicated DTensor
        bad_loss = torch.as_tensor(loss_nonfinite, dtype=torch.float32, device=self.acc.device)
        if self.world > 1:  # the norm is already common to all processes; the loss flag is not
            bad_loss = self.acc.reduce(bad_loss, reduction="sum")
        bad_loss = bool(bad_loss > 0)
        skipped = bad_loss or not math.isfinite(norm)
        if not skipped:
            self.optimizer.step()
            self.scheduler.step()
            self.nonfinite_streak = 0
        else:
            self.nonfinite_streak += 1
            self.write(f"r1kit: {self._where()}non-finite {'loss' if bad_loss else 'gradient'} (grad_norm {norm}); "
                       f"update skipped ({self.nonfinite_streak} in a row, "
                       f"max_consecutive_nonfinite={self.o.max_consecutive_nonfinite})")
        self.optimizer.zero_grad(set_to_none=True)
        return Update(norm, skipped)

    def _where(self) -> str:
        prefix = "" if self.o.name == "GRPO" else f"{self.o.name.lower()}: "
        return f"{prefix}step {_STOP['step'] + 1}: "

    def request_stop(self, reason: str) -> None:
        request_stop(reason)

    @property
    def learning_rate(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def write(self, message: str) -> None:
        """Print one line above the progress bar (main process only)."""
        if self.is_main:
            (self.bar.write if self.bar is not None else print)(message)

    def log(self, metrics: dict, step: int, force: bool = False) -> None:
        """One metrics line to metrics.jsonl and the trackers, every logging_steps steps (and at the end)."""
        if self.is_main and (force or step % self.o.logging_steps == 0 or step == self.o.max_steps):
            append_jsonl(self.out_dir / "metrics.jsonl", [metrics])
            for t in self.trackers:
                t.log(metrics, step)

    def end_step(self, step: int, metrics: dict, postfix: dict[str, str] | None = None) -> None:
        """After step `step` (1-based) is done: metrics logged, progress shown, then the non-finite limit,
        a checkpoint when due, and a stop when a signal asked for one (TrainingStopped)."""
        self.log(metrics, step)
        if self.is_main:
            self.bar.set_postfix(**(postfix or {}))
            self.bar.update(1)
        o = self.o
        if self.nonfinite_streak >= o.max_consecutive_nonfinite:
            raise TrainingError(
                f"{self.nonfinite_streak} non-finite updates in a row (max_consecutive_nonfinite="
                f"{o.max_consecutive_nonfinite}), the last at step {step}; stopped. Last good checkpoint: "
                f"{latest_checkpoint(self.out_dir) or 'none'} (--resume replays the same batches, so change the cause first)")
        stop = stop_requested(self.acc) and step < o.max_steps
        _STOP["step"] = step  # a signal from here on is answered after the next step
        saved = None
        if (o.save_steps and step % o.save_steps == 0) or step == o.max_steps or stop:
            if self.nonfinite_streak == 0:
                saved = self.save(step)
            else:
                self.write(f"r1kit: {self._where()}no checkpoint after a non-finite update; last good checkpoint: "
                           f"{latest_checkpoint(self.out_dir) or 'none'}")
        if stop:
            why = f"stopped by {_STOP['signal'] or 'a signal to another process'} after step {step}"
            where = (f"checkpoint saved: {saved}" if saved else
                     f"last good checkpoint: {latest_checkpoint(self.out_dir) or 'none'}")
            raise TrainingStopped(f"{why}; {where}", step, str(saved or latest_checkpoint(self.out_dir) or ""),
                                  main_process=self.is_main)

    def save(self, step: int) -> Path | None:
        """checkpoint-{step}: the policy (or adapter), tokenizer, optimizer, scheduler, every RNG state."""
        states = gather_object([rng_state()]) if self.world > 1 else [rng_state()]
        provided = {key: gather_object([get()]) if self.world > 1 else [get()] for key, get in self.process_state.items()}
        weights = sharded_optimizer = None
        if self.sharded:  # gathered from every process's shards to rank 0 (collectives: all take part)
            weights = full_model_state(self.acc, self.model)
            sharded_optimizer = {"optimizer": full_optimizer_state(self.model, self.adamw),
                                 "optimizer_format": FULL_BY_NAME}
        path = None
        if self.is_main:
            optimizer = sharded_optimizer if self.sharded else {"optimizer": self.optimizer.state_dict()}
            training_state = {**optimizer, "scheduler": self.scheduler.state_dict(), "step": step, "rng": states,
                              **self.extra_state, **provided}
            path = save_checkpoint(self.out_dir, step, self.policy, self.tokenizer, training_state,
                                   {"config": self.o.config, "world_size": self.world, "stage": self.o.name.lower()},
                                   self.o.save_total_limit, state_dict=weights)
        self.acc.wait_for_everyone()
        return path

    def saved_process_state(self, key: str) -> Any:
        """What this process added under `key` to the checkpoint the run resumed from (None: nothing)."""
        saved = self.state.get(key) or []
        return saved[self.rank] if self.rank < len(saved) else None

    def finish(self) -> None:
        """After the last step: close the bar and wait for every process."""
        if self.bar is not None:
            self.bar.close()
        self.acc.wait_for_everyone()

    def gather(self, x) -> torch.Tensor:
        """A per-process tensor (or list of numbers) concatenated over processes, on the CPU."""
        return self.acc.gather(torch.as_tensor(x, dtype=torch.float32, device=self.acc.device)).cpu()

    def gather_objects(self, items: list) -> list:
        return gather_object(items) if self.world > 1 else items

    def reduce_sums(self, sums: dict[str, float]) -> dict[str, float]:
        """Each value summed over processes."""
        if self.world == 1:
            return dict(sums)
        return {k: self.acc.reduce(torch.tensor(v, device=self.acc.device), reduction="sum").item()
                for k, v in sums.items()}


def open_run(o: LoopOptions, show_progress: bool = True) -> Run:
    """accelerate (gloo on CPU when there is no CUDA, so a torch.distributed launch trains data-parallel
    instead of running N independent copies), CPU threads, and the run folder's claim. Call before any
    model is loaded; then `run.start(model, tokenizer)`."""
    hf_logging.disable_progress_bar()  # transformers' load/save bars would break our progress bar
    check_fsdp_request()
    acc = Accelerator(cpu=not torch.cuda.is_available())
    enable_fsdp_on_cpu(acc)  # accelerate leaves FSDP off without a GPU (sharding.py)
    if o.torch_threads or acc.device.type == "cpu":
        torch.set_num_threads(default_threads(o.torch_threads, acc.num_processes))
    return Run(o, acc, claim_output_dir(o, acc), show_progress)
