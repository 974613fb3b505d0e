"""Advantage estimators in a registry: rewards [N] of groups of G -> advantages [N] and which groups have
no reward spread. `grpo` (the group mean as baseline, the paper's), `rloo`, `reinforce_plus_plus`; users
add their own with `register_advantage_estimator`."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

ADV_EPS = 1e-4  # added to the std before dividing: a group of near-equal rewards stays finite


SCALE_REWARDS = ("group", "batch", "none")


AdvantageEstimator = Callable[[Tensor, int, str], tuple[Tensor, Tensor]]


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}


def register_advantage_estimator(name: str) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Decorator: `fn(rewards [N], num_generations, scale) -> (advantages [N], zero_std [N // G])` becomes
    `advantage_estimator: name`. `scale` is one of SCALE_REWARDS; `zero_std` marks groups whose rewards
    are all equal (dynamic sampling drops them). Names are unique: re-registering one is an error."""
    def decorate(fn: AdvantageEstimator) -> AdvantageEstimator:
        if name in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn
    return decorate


def scale_mode(scale_rewards: bool | str) -> str:
    """'group', 'batch' or 'none' from a config value; True is 'group' and False is 'none', as in TRL."""
    if isinstance(scale_rewards, bool):
        return "group" if scale_rewards else "none"
    value = str(scale_rewards).strip().lower()
    value = {"true": "group", "false": "none"}.get(value, value)
    if value not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}: choose group, batch or none (true = group, false = none)")
    return value


def _scaled(centred: Tensor, grouped: Tensor, scale: str, eps: float) -> Tensor:
    """centred [groups, G] divided by the group's std, the whole batch's std, or nothing."""
    if scale == "group":
        return centred / (grouped.std(dim=1, keepdim=True) + eps)  # [groups, G]
    if scale == "batch":
        return centred / (grouped.std() + eps)  # [groups, G] one std over the batch (PPO-Lite, TRL's "batch")
    return centred


def _zero_spread(grouped: Tensor) -> Tensor:
    return (grouped == grouped[:, :1]).all(dim=1)  # [groups]


def group_advantages(rewards: Tensor, num_generations: int, scale_rewards: bool | str = True,
                     eps: float = ADV_EPS) -> tuple[Tensor, Tensor]:
    """A_i = (r_i - mean) / (std + eps) within each group of `num_generations` consecutive rewards.

    Returns (advantages [N], zero_std [N // G] bool). A group whose rewards are all equal gets exactly zero
    advantage (r - mean = 0), so it contributes no policy gradient, only the KL term. std is the unbiased
    sample std (torch.std), as in TRL. scale_rewards: group (True) | batch (one std over all N) | none (False).
    """
    grouped = rewards.view(-1, num_generations)  # [num_groups, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [num_groups, 1]
    centred = grouped - mean  # [num_groups, G]
    advantages = _scaled(centred, grouped, scale_mode(scale_rewards), eps)  # [num_groups, G]
    zero_std = _zero_spread(grouped)  # [num_groups]
    advantages = torch.where(zero_std[:, None], torch.zeros_like(advantages), advantages)
    return advantages.reshape(-1), zero_std


@register_advantage_estimator("grpo")
def grpo_advantages(rewards: Tensor, num_generations: int, scale: str = "group") -> tuple[Tensor, Tensor]:
    """GRPO (DeepSeekMath): the group mean is the baseline."""
    return group_advantages(rewards, num_generations, scale)


@register_advantage_estimator("rloo")
def rloo_advantages(rewards: Tensor, num_generations: int, scale: str = "none") -> tuple[Tensor, Tensor]:
    """RLOO (Ahmadian et al. 2024): A_i = r_i - mean of the group's other G-1 rewards = G/(G-1) (r_i - mean),
    an unbiased baseline because it does not depend on o_i. Scaling divides by the group's (or batch's) std."""
    grouped = rewards.view(-1, num_generations)  # [num_groups, G]
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (num_generations - 1)  # [num_groups, G]
    advantages = _scaled(grouped - others, grouped, scale, ADV_EPS)  # [num_groups, G]
    zero_std = _zero_spread(grouped)  # [num_groups]
    advantages = torch.where(zero_std[:, None], torch.zeros_like(advantages), advantages)
    return advantages.reshape(-1), zero_std


@register_advantage_estimator("reinforce_plus_plus")
def reinforce_plus_plus_advantages(rewards: Tensor, num_generations: int,
                                   scale: str = "batch") -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu 2025): the batch mean is the baseline and advantages are whitened over the batch.

    With a batch baseline a group's own std is no natural scale (a group of equal rewards would be divided
    by eps), so 'group' and 'batch' both divide by the batch's std; 'none' keeps r - batch mean. A group of
    equal rewards keeps a non-zero advantage here (that is the estimator); zero_std still reports it.
    """
    grouped = rewards.view(-1, num_generations)  # [num_groups, G]
    centred = grouped - rewards.mean()  # [num_groups, G]
    advantages = _scaled(centred, grouped, "none" if scale == "none" else "batch", ADV_EPS)  # [num_groups, G]
    return advantages.reshape(-1), _zero_spread(grouped)


def process_advantages(step_rewards: list[list[float]], step_ends: list[list[int]], num_generations: int,
                       width: int, eps: float = ADV_EPS) -> Tensor:
    """Process supervision with GRPO (DeepSeekMath section 4.1.3), the step-level advantages of Math-Shepherd's
    step-by-step PPO without a critic: within a group, every step reward of every output is normalised by the
    mean and std of all the group's step rewards, r~ = (r - mean) / (std + eps), and token t of output i gets
    the sum of r~ over the steps of o_i that end at or after t.

    step_rewards[i], step_ends[i]: output i's step rewards and the index of each step's last token (outputs
    without steps, e.g. general prompts, get 0). A group with a single step reward, or equal ones, gets 0.
    Returns [N, width]."""
    out = torch.zeros(len(step_rewards), width)  # [N, T]
    for g in range(0, len(step_rewards), num_generations):
        rows = range(g, g + num_generations)
        group = torch.tensor([r for i in rows for r in step_rewards[i]], dtype=torch.float32)  # [steps in group]
        if len(group) < 2 or bool((group == group[0]).all()):
            continue
        mean, std = group.mean(), group.std()
        for i in rows:
            for end, r in zip(step_ends[i], step_rewards[i]):
                out[i, : min(end, width - 1) + 1] += (r - mean) / (std + eps)  # every token up to the step's end
    return out


def informative_rows(zero_std: Tensor, num_generations: int) -> Tensor:
    """Row indices [M] of the completions whose group has reward spread (DAPO's dynamic sampling keeps these)."""
    keep = (~zero_std).repeat_interleave(num_generations)  # [N]
    return keep.nonzero().flatten()


def advantages_for(o: Any, rewards: Tensor, num_generations: int) -> tuple[Tensor, Tensor]:
    """(advantages [N], zero_std [N // G]) by the advantage_estimator and scale_rewards of `o` (AlgorithmOptions)."""
    name = getattr(o, "advantage_estimator", "grpo")
    if name not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"advantage_estimator={name!r}: choose one of {', '.join(ADVANTAGE_ESTIMATORS)}")
    return ADVANTAGE_ESTIMATORS[name](rewards, num_generations, scale_mode(getattr(o, "scale_rewards", True)))
