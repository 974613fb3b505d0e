"""Old import path of the GRPO trainer (now r1kit.trainers.grpo.trainer), kept for users' code."""

from r1kit.trainers.grpo.trainer import iter_train, train

__all__ = ["iter_train", "train"]
