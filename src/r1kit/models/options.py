"""The options of the model being trained: which model, its dtype, and a LoRA adapter."""

from __future__ import annotations

from dataclasses import dataclass

from r1kit.core.options import DTYPE_HELP, DTYPES, Options, need, need_choice, opt

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelOptions(Options):
    """the model"""

    model: str = opt("embedded", "local HF model folder, a hub id in the local cache, or 'embedded' "
                                 "(SmolLM2-135M-Instruct)")
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    dtype: str = opt("auto", DTYPE_HELP)

    def check(self) -> None:
        need_choice("dtype", self.dtype, DTYPES)


@dataclass
class LoraOptions(Options):
    """LoRA"""

    use_lora: bool = opt(False, "train a LoRA adapter (checkpoints then hold the adapter); the reference model "
                                "is the base with the adapter off")
    lora_r: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha")
    lora_dropout: float = opt(0.0, "LoRA dropout")
    lora_target_modules: list[str] = opt(LORA_TARGETS, "modules that get LoRA adapters")

    def check(self) -> None:
        need(self.lora_r >= 1 and self.lora_alpha >= 1 and 0 <= self.lora_dropout < 1,
             "lora_r and lora_alpha must be >= 1 and lora_dropout in [0, 1)")


# how a process reward model's step scores make a solution's score (models.process_reward_model.AGGREGATIONS)
PRM_AGGREGATIONS = ("min", "prod", "last", "mean", "sum")
PRM_MODES = ("outcome", "steps")


@dataclass
class ProcessRewardOptions(Options):
    """a process reward model as a reward"""

    process_reward_model: str | None = opt(None, "a process reward model (OUTPUT_DIR/model of `r1kit prm`) scoring each "
                                                 "step of reasoning completions")
    prm_weight: float = opt(1.0, "weight of the process reward model's score")
    prm_mode: str = opt("outcome", "outcome: the steps' scores, aggregated by prm_aggregation, are added to the "
                                   "rule reward; steps: step-level advantages (DeepSeekMath's process supervision: "
                                   "each token gets the normalised scores of the steps from its own on) added to the "
                                   "outcome advantage")
    prm_aggregation: str = opt("sum", f"prm_mode=outcome: a completion's score from its steps' scores: "
                                      f"{', '.join(PRM_AGGREGATIONS)} (sum: step rewards summed into the outcome)")

    def check(self) -> None:
        need_choice("prm_mode", self.prm_mode, PRM_MODES)
        need_choice("prm_aggregation", self.prm_aggregation, PRM_AGGREGATIONS)
        need(self.prm_weight >= 0, f"prm_weight={self.prm_weight}: must be >= 0")
