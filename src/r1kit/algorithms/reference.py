"""The DeepSeek-R1 paper's GRPO objective (Eq. 1-3) written out on one screen, as a readable reference.

The trainer's loss is `losses.grpo_loss`: registry-driven, with every later variant as an option. With its
defaults (loss_type grpo, per-token ratios, no importance weights, no entropy options) and the advantages
of `advantages.group_advantages`, it computes exactly this function; tests/test_grpo.py checks that the two
agree, values and gradients.

    J = E[ 1/G sum_i 1/|o_i| sum_t ( min(r_it A_i, clip(r_it, 1 - eps, 1 + eps) A_i) - beta D_it ) ]   (Eq. 1)
    D_it = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1                                           (Eq. 2)
    A_i = (R_i - mean(R_1..R_G)) / std(R_1..R_G)                                                     (Eq. 3)
    r_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)

The paper writes the ratio per output; DeepSeekMath, whose GRPO R1 uses, defines and implements it per
token with the 1/|o_i| mean, as here. The loss minimised is -J.
"""

from __future__ import annotations

import torch
from torch import Tensor


def compute_pg_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor, rewards: Tensor, mask: Tensor,
                    group_size: int, beta: float = 0.001, epsilon: float = 0.2, std_eps: float = 1e-4) -> Tensor:
    """-J for N = B x G completions of B prompts, completion rows of a prompt consecutive.

    logprobs, old_logprobs, ref_logprobs: [N, T] log-probs of the sampled tokens under pi_theta, pi_old,
    pi_ref; mask: [N, T] 1 on completion tokens; rewards: [N]."""
    mask = mask.to(logprobs.dtype)  # [N, T]
    groups = rewards.view(-1, group_size)  # [B, G]
    centred = groups - groups.mean(dim=1, keepdim=True)  # [B, G]
    advantages = (centred / (groups.std(dim=1, keepdim=True) + std_eps)).reshape(-1, 1)  # [N, 1]  Eq. 3
    # log-ratios are zeroed on padding before exp(): padded positions may hold anything, and inf * 0 = NaN
    ratio = torch.exp((logprobs - old_logprobs) * mask)  # [N, T]  r_it
    surrogate = torch.min(ratio * advantages,  # [N, T]
                          ratio.clamp(1 - epsilon, 1 + epsilon) * advantages)  # [N, T]
    log_ref_ratio = (ref_logprobs - logprobs) * mask  # [N, T]  log(pi_ref / pi_theta)
    kl = log_ref_ratio.exp() - log_ref_ratio - 1  # [N, T]  Eq. 2, >= 0
    per_token = surrogate - beta * kl  # [N, T]
    per_output = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # [N]  1/|o_i| sum_t
    return -per_output.mean()  # scalar: -J, the mean over the N outputs of all groups
