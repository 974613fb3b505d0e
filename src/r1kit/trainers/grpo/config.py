"""GRPOConfig: the options of a GRPO run, one flat namespace with TRL's names, read from YAML and the
command line.

Names follow TRL's GRPOConfig where the meaning is the same (num_generations, beta, epsilon,
epsilon_high, loss_type, scale_rewards, num_iterations, max_completion_length,
per_device_train_batch_size, gradient_accumulation_steps, ...), so TRL and open-r1 users can read a
config at a glance. Defaults follow the DeepSeek-R1 paper where it says (beta 0.001, epsilon 0.2,
group-std advantages, per-output token mean). The options are declared in groups by the layers that read
them (core.options); this class is their union plus GRPO's own. Unknown keys are an error, never
ignored, and the whole config is validated before any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1kit.algorithms.options import AlgorithmOptions
from r1kit.core.options import Reading, load_config, need, opt
from r1kit.data.options import DataOptions, PromptOptions
from r1kit.evaluation.options import EvalOptions
from r1kit.models.options import LoraOptions, ModelOptions, ProcessRewardOptions
from r1kit.report.options import AlertOptions
from r1kit.rewards.options import RewardOptions
from r1kit.rollout.options import EngineOptions, SamplingOptions
from r1kit.trainers.base_config import BaseConfig
from r1kit.trainers.grpo.recipes import RECIPE_KEYS, read_recipe


@dataclass
class GRPOConfig(AlertOptions, EvalOptions, AlgorithmOptions, ProcessRewardOptions, RewardOptions, EngineOptions,
                 SamplingOptions, PromptOptions, DataOptions, LoraOptions, ModelOptions, BaseConfig):
    # the step
    dynamic_sampling: bool = opt(False, "DAPO dynamic sampling: drop groups whose rewards are all equal and sample "
                                        "more prompts until the step's groups are all informative")
    max_resample_rounds: int = opt(3, "dynamic_sampling: extra rounds of sampling per step at most; the step then "
                                      "trains on the informative groups it has")
    # all-scenario RL (R1 stage 4): general prompts scored by reward models, mixed into the batches
    general_dataset: str | None = opt(None, "a .jsonl of general prompts mixed with the reasoning prompts; scored by "
                                            "reward models")
    general_prompt_field: str = opt("prompt", "JSONL field holding a general prompt")
    general_fraction: float = opt(0.5, "share of each step's prompts drawn from general_dataset (at least one per "
                                       "process)")
    reward_model: str | None = opt(None, "sequence-classification model scoring helpfulness of the summary only "
                                         "(general prompts)")
    harmlessness_model: str | None = opt(None, "sequence-classification model scoring harmlessness of the whole "
                                               "response (default: reward_model)")
    helpfulness_weight: float = opt(1.0, "weight of the helpfulness score in a general prompt's reward")
    harmlessness_weight: float = opt(1.0, "weight of the harmlessness score in a general prompt's reward")
    # what the run writes besides metrics.jsonl and samples.jsonl
    log_completions_steps: int = opt(10, "print a sample completion every N steps (0: never)")
    write_report: bool = opt(True, "write OUTPUT_DIR/report/report.html and its PNG plots when training ends")
    report_steps: int = opt(0, "also rewrite the report every N steps (0: only at the end)")
    report_markers: list[str] | None = opt(None, "reflection markers for the aha tracker (default: "
                                                 "r1kit.report.aha.DEFAULT_MARKERS)")
    # BaseConfig's, with GRPO's defaults
    learning_rate: float = opt(1e-6, "AdamW learning rate")
    adam_beta2: float = opt(0.99, "AdamW beta2")
    lr_scheduler_type: str = opt("constant", "transformers scheduler name (see BaseConfig)")
    per_device_train_batch_size: int = opt(8, "completions per micro-batch per process")
    gradient_accumulation_steps: int = opt(1, "micro-batches per process per step")
    max_steps: int = opt(100, "training steps (one batch of rollouts each); -1: num_train_epochs passes over the "
                              "dataset")
    num_train_epochs: float = opt(0.0, "with max_steps -1: passes over the dataset (TRL); steps = ceil(epochs x "
                                       "prompts / prompts per step)")
    output_dir: str = opt("runs/grpo", "folder for metrics.jsonl, samples.jsonl and checkpoints")
    save_steps: int = opt(50, "save a checkpoint every N steps (and always at the end); 0: only at the end")

    # TRL / open-r1 names read too, in YAML and on the command line alike (not options: no annotation)
    recipe_keys = RECIPE_KEYS

    @classmethod
    def read_sources(cls, sources: list[tuple[str, dict[str, Any]]]) -> Reading:
        """A YAML file and the command line, TRL / open-r1 recipe keys translated (trainers/grpo/recipes.py)."""
        return read_recipe(sources)

    @property
    def completions_per_step(self) -> int:
        """Completions each process generates and trains on per step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def check(self) -> None:
        """The rules across groups, and GRPO's own."""
        need(self.num_generations >= 2,
             f"num_generations={self.num_generations}: GRPO needs at least 2 completions per group")
        need(self.completions_per_step % self.num_generations == 0,
             f"per_device_train_batch_size x gradient_accumulation_steps = {self.completions_per_step} completions "
             f"does not divide into groups of num_generations={self.num_generations}")
        need(0 <= self.overlong_buffer_length <= self.max_completion_length,
             f"overlong_buffer_length={self.overlong_buffer_length}: must be in [0, max_completion_length="
             f"{self.max_completion_length}]")
        need(not (self.async_rollout and self.dynamic_sampling),
             "async_rollout with dynamic_sampling: the extra rounds of a step would wait behind the next step's "
             "rollout in the generation worker; use one of them")
        need(self.max_resample_rounds >= 0, f"max_resample_rounds={self.max_resample_rounds}: must be >= 0")
        need(self.max_steps >= 1 or (self.max_steps == -1 and self.num_train_epochs > 0),
             "max_steps must be >= 1 (or -1 with num_train_epochs > 0)" if self.max_steps != -1 else
             "max_steps=-1 needs num_train_epochs > 0 (passes over the dataset)")
        need(self.num_train_epochs >= 0 and math.isfinite(self.num_train_epochs), "num_train_epochs must be >= 0")
        need(self.report_steps >= 0, f"report_steps={self.report_steps}: must be >= 0 (0: report only at the end)")
        need(not self.general_dataset or bool(self.reward_model),
             "general_dataset needs reward_model: general prompts have no gold answer and are scored by a reward model")
        need(0 < self.general_fraction < 1, f"general_fraction={self.general_fraction}: must be in (0, 1)")
        need(not self.general_dataset or self.completions_per_step // self.num_generations >= 2,
             "general_dataset: each process needs at least 2 prompts per step (one reasoning, one general); "
             "raise per_device_train_batch_size x gradient_accumulation_steps")


def make_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> GRPOConfig:
    """Config file first, then overrides (from the command line) on top; unknown keys are an error.

    Either may use TRL / open-r1 names (RECIPE_KEYS), read as `r1kit grpo --config FILE --KEY VALUE` reads
    them; the notices (keys without effect, defaults that differ from TRL's) are printed once."""
    return load_config(GRPOConfig, None, yaml_path, overrides)


def validate(c: GRPOConfig) -> None:
    """Reject settings that cannot work, naming the option (every group's checks, then GRPO's)."""
    c.validate()


def training_steps(c: GRPOConfig, num_examples: int, num_processes: int = 1) -> tuple[int, int]:
    """(max_steps, warmup_steps) of a run: max_steps as given, or with max_steps -1 the steps of
    num_train_epochs passes over `num_examples` prompts (each step takes completions_per_step /
    num_generations prompts per process); warmup_steps as given, else warmup_ratio of the steps."""
    steps = c.max_steps
    if steps == -1:
        prompts_per_step = c.completions_per_step // c.num_generations * num_processes
        steps = max(1, math.ceil(c.num_train_epochs * num_examples / prompts_per_step))
    warmup = c.warmup_steps or math.ceil(c.warmup_ratio * steps)
    return steps, warmup
