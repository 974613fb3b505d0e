"""Old import path of the GRPO math (now r1kit.algorithms), kept for users' code."""

from r1kit.algorithms.advantages import ADVANTAGE_ESTIMATORS, group_advantages, register_advantage_estimator
from r1kit.algorithms.losses import AGGREGATIONS, LOSSES, grpo_loss, kl_k3, register_aggregation, register_loss

__all__ = ["ADVANTAGE_ESTIMATORS", "AGGREGATIONS", "LOSSES", "group_advantages", "grpo_loss", "kl_k3",
           "register_advantage_estimator", "register_aggregation", "register_loss"]
