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
