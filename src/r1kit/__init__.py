"""r1kit: DeepSeek-R1 style reasoning RL (GRPO with rule-based rewards) for language models.

The data flows one way: prompts -> rollout -> rewards -> advantages -> policy update -> checkpoint and
metrics. The folders are layers, each importing only those below it (docs/architecture.md):

    core         errors, files, options, timers, trackers
    data         the Problem record, datasets, prompt order, templates
    models       loading models, LoRA, reward models, weights for engines
    rewards      rule rewards (what is scored) and the worker and policy (how scoring runs)
    algorithms   advantages, losses, corrections, log-probs (pure tensor math)
    rollout      rollout engines: fused decoder, transformers, vLLM
    evaluation   benchmarks, pass@1 / pass@k / cons@k
    report       HTML report, plots, aha tracker, alerts
    trainers     the shared loop, GRPO, SFT, reward models
    pipeline     the four-stage R1 pipeline, distillation
    cli          the `r1kit` command
"""

from r1kit.algorithms.advantages import group_advantages, register_advantage_estimator
from r1kit.algorithms.losses import grpo_loss, kl_k3, register_loss
from r1kit.core.errors import ConfigError, DataError, ModelError, RewardError, TrainingError, TrainingStopped
from r1kit.data.problems import Example
from r1kit.data.sources import load_examples
from r1kit.data.templates import R1_ZERO_TEMPLATE, build_prompt
from r1kit.models.loading import build_tiny_model, load_model, load_tokenizer
from r1kit.rewards import REWARDS, compute_rewards, register_reward, score_completions
from r1kit.rollout.sampling import Rollout, generate
from r1kit.trainers.grpo.config import GRPOConfig, make_config

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "Example", "GRPOConfig", "ModelError", "R1_ZERO_TEMPLATE", "REWARDS",
    "RewardError", "Rollout", "build_prompt", "build_tiny_model", "compute_rewards", "generate",
    "group_advantages", "grpo_loss", "kl_k3", "load_examples", "load_model", "load_tokenizer", "make_config",
    "register_reward", "score_completions", "train", "iter_train", "TrainingError", "TrainingStopped",
    "evaluate", "write_report", "register_loss", "register_advantage_estimator",
]


def train(*args, **kwargs):
    """See r1kit.trainers.grpo.trainer.train (imported lazily: it pulls in accelerate)."""
    from r1kit.trainers.grpo.trainer import train as _train

    return _train(*args, **kwargs)


def iter_train(*args, **kwargs):
    """See r1kit.trainers.grpo.trainer.iter_train: the training loop one step at a time."""
    from r1kit.trainers.grpo.trainer import iter_train as _iter_train

    return _iter_train(*args, **kwargs)


def evaluate(*args, **kwargs):
    """See r1kit.evaluation.evaluate.evaluate: pass@1 over k samples, pass@k, cons@k."""
    from r1kit.evaluation.evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def write_report(*args, **kwargs):
    """See r1kit.report.html.write_report: the HTML report and PNG plots of one or more runs."""
    from r1kit.report.html import write_report as _write_report

    return _write_report(*args, **kwargs)
