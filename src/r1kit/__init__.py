"""r1kit: DeepSeek-R1 style reasoning RL (GRPO with rule-based rewards) for language models.

The data flows one way, one module per step:
    data (prompts) -> rollout -> rewards, answers -> grpo (advantages, loss) -> update -> checkpoint, metrics
The shared training loop is loop.py, the GRPO step trainer.py; around them: the pipeline stages (stages.py,
pipeline.py), evaluate (pass@1, cons@k), report (plots, aha tracker, samples), chat. docs/architecture.md
groups the modules by role and lists the rules the layout keeps (no import cycles, one table per concept).
"""

from .config import ConfigError, GRPOConfig, TrainingError, TrainingStopped, make_config
from .data import DataError, Example, load_examples
from .grpo import group_advantages, grpo_loss, kl_k3, register_advantage_estimator, register_loss
from .models import ModelError, build_tiny_model, load_model, load_tokenizer
from .rewards import REWARDS, RewardError, compute_rewards, register_reward, score_completions
from .rollout import Rollout, generate
from .templates import R1_ZERO_TEMPLATE, build_prompt

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "Example", "GRPOConfig", "ModelError", "R1_ZERO_TEMPLATE", "REWARDS",
    "RewardError", "Rollout", "build_prompt", "build_tiny_model", "compute_rewards", "generate",
    "group_advantages", "grpo_loss", "kl_k3", "load_examples", "load_model", "load_tokenizer", "make_config",
    "register_reward", "score_completions", "train", "iter_train", "TrainingError", "TrainingStopped",
    "evaluate", "write_report", "register_loss", "register_advantage_estimator",
]


def train(*args, **kwargs):
    """See r1kit.trainer.train (imported lazily: it pulls in accelerate)."""
    from .trainer import train as _train

    return _train(*args, **kwargs)


def iter_train(*args, **kwargs):
    """See r1kit.trainer.iter_train: the training loop one step at a time."""
    from .trainer import iter_train as _iter_train

    return _iter_train(*args, **kwargs)


def evaluate(*args, **kwargs):
    """See r1kit.evaluate.evaluate: pass@1 over k samples, pass@k, cons@k."""
    from .evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def write_report(*args, **kwargs):
    """See r1kit.report.write_report: the HTML report and PNG plots of one or more runs."""
    from .report import write_report as _write_report

    return _write_report(*args, **kwargs)
