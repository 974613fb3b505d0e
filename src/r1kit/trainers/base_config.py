"""The options every trainer shares (TRL's names): optimisation, schedule, batch shape, checkpoints, logging.

`BaseConfig` is what the shared loop reads (`trainers.loop.LoopOptions` is built from it by name). Each
trainer's config adds the option groups of the layers it drives and its own options, and redeclares a
field here only to give it another default (GRPO's learning rate, say), as TRL's configs do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1kit.core.options import SCHEDULERS, Options, need, need_choice, opt
from r1kit.core.tracking import TRACKERS, check_trackers


@dataclass
class BaseConfig(Options):
    """optimisation, schedule, batch shape, checkpoints and logging (every trainer)"""

    seed: int = opt(42, "seed for data order, sampling and initialisation")
    # optimisation
    learning_rate: float = opt(1e-5, "AdamW learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.999, "AdamW beta2")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 disables)")
    max_consecutive_nonfinite: int = opt(3, "stop the run after this many NaN/inf updates in a row (each is skipped)")
    lr_scheduler_type: str = opt("linear", f"transformers scheduler name: {', '.join(SCHEDULERS)}")
    warmup_steps: int = opt(0, "optimizer steps of linear warm-up")
    warmup_ratio: float = opt(0.0, "warm-up as a share of the training steps (TRL); used when warmup_steps is 0")
    # batch shape and length of the run
    per_device_train_batch_size: int = opt(8, "examples per micro-batch per process")
    gradient_accumulation_steps: int = opt(1, "micro-batches per process per optimizer step")
    max_steps: int = opt(-1, "optimizer steps; -1: num_train_epochs passes over the data")
    num_train_epochs: float = opt(1.0, "passes over the data (when max_steps is -1)")
    # output
    output_dir: str = opt("runs/train", "folder for metrics.jsonl and checkpoints")
    save_steps: int = opt(0, "save a checkpoint every N steps (and always at the end); 0: only at the end")
    save_total_limit: int | None = opt(None, "keep only the last N checkpoints")
    logging_steps: int = opt(1, "write a metrics line every N steps (and at the last step)")
    resume: bool = opt(False, "resume from the newest checkpoint in output_dir that loads whole, with the settings "
                              "it was trained with")
    allow_resume_changes: bool = opt(False, "with resume: accept a larger max_steps or num_train_epochs and a lower "
                                            "learning_rate than the checkpoint's (recorded in resume_changes.jsonl); "
                                            "other changes are refused")
    overwrite_output_dir: bool = opt(False, "start afresh even if output_dir already holds a run (its checkpoints "
                                            "are deleted)")
    torch_threads: int | None = opt(None, "CPU threads per process (default: cores / processes)")
    report_to: list[str] = opt([], f"also log metrics to any of {', '.join(TRACKERS)} (each needs its package); "
                                   "all, none")

    def check(self) -> None:
        check_trackers(self.report_to)  # a TrackerError (a ConfigError) names a missing package before any model loads
        need(math.isfinite(self.learning_rate) and self.learning_rate >= 0,
             f"learning_rate={self.learning_rate}: must be a finite number >= 0")
        need(self.weight_decay >= 0, f"weight_decay={self.weight_decay}: must be >= 0")
        need(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam_beta1 and adam_beta2 must be in [0, 1)")
        need(self.max_grad_norm >= 0, f"max_grad_norm={self.max_grad_norm}: must be >= 0")
        need(self.max_consecutive_nonfinite >= 1, "max_consecutive_nonfinite must be >= 1")
        need_choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        need(self.warmup_steps >= 0, f"warmup_steps={self.warmup_steps}: must be >= 0")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio={self.warmup_ratio}: must be in [0, 1)")
        need(self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be >= 1")
        need(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1")
        need(self.save_steps >= 0, f"save_steps={self.save_steps}: must be >= 0 (0: only at the end)")
        need(self.logging_steps >= 1, f"logging_steps={self.logging_steps}: must be >= 1")
        need(self.save_total_limit is None or self.save_total_limit >= 1, "save_total_limit must be >= 1")
        need(self.torch_threads is None or self.torch_threads >= 1, "torch_threads must be >= 1")
        need(not (self.resume and self.overwrite_output_dir), "resume and overwrite_output_dir: choose one")

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps of a run of `total_steps` optimizer steps: warmup_steps, else warmup_ratio of them."""
        return self.warmup_steps or math.ceil(self.warmup_ratio * total_steps)
