"""r1kit: DeepSeek-R1 style reasoning RL (GRPO with rule-based rewards) for language models.

The data flows one way, one module per step:
    data (prompts) -> rollout -> rewards -> grpo (advantages, loss) -> trainer (update) -> checkpoint, metrics
"""

from .config import ConfigError, GRPOConfig, make_config
from .data import DataError, Example, load_examples
from .grpo import group_advantages, grpo_loss, kl_k3
from .models import ModelError, build_tiny_model, load_model, load_tokenizer
from .rewards import REWARDS, RewardError, compute_rewards, register_reward
from .rollout import Rollout, generate
from .templates import R1_ZERO_TEMPLATE, build_prompt

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "Example", "GRPOConfig", "ModelError", "R1_ZERO_TEMPLATE", "REWARDS",
    "RewardError", "Rollout", "build_prompt", "build_tiny_model", "compute_rewards", "generate",
    "group_advantages", "grpo_loss", "kl_k3", "load_examples", "load_model", "load_tokenizer", "make_config",
    "register_reward", "train",
]


def train(*args, **kwargs):
    """See r1kit.trainer.train (imported lazily: it pulls in accelerate)."""
    from .trainer import train as _train

    return _train(*args, **kwargs)
