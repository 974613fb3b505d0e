"""Old import path of the GRPO config (now r1kit.trainers.grpo.config), kept for users' code."""

from r1kit.core.errors import ConfigError, TrainingError, TrainingStopped
from r1kit.trainers.grpo.config import GRPOConfig, make_config, training_steps
from r1kit.trainers.grpo.recipes import RECIPE_KEYS

__all__ = ["ConfigError", "GRPOConfig", "RECIPE_KEYS", "TrainingError", "TrainingStopped", "make_config",
           "training_steps"]
