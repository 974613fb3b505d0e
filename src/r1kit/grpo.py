"""GRPO as pure tensor functions: group-relative advantages and the clipped, KL-regularised loss.

The objective (DeepSeekMath Eq. 3, used by DeepSeek-R1 Eq. 1-3), for a group of G outputs o_i of a
question q sampled from pi_old:

    J = 1/G sum_i 1/|o_i| sum_t [ min(r_it A_i, clip(r_it, 1-eps_low, 1+eps_high) A_i) - beta * D_it ]
    r_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)
    D_it = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1          (the k3 estimator: unbiased, >= 0)
    A_i  = (R_i - mean(R)) / std(R)                            (within the group)

The loss is -J. The R1 paper writes the ratio at the level of whole outputs; the per-token form with the
1/|o_i| mean is how DeepSeekMath defines and implements GRPO and is the default here (loss_type="grpo").
Variants are options, never silent changes of that default:
- loss_type="dapo": one mean over all tokens of the batch (DAPO's token-level normalisation), so long
  outputs are not down-weighted.
- loss_type="dr_grpo": sum over tokens divided by (number of outputs x max_completion_length), a constant,
  removing the length bias (Dr. GRPO); pair it with scale_rewards=False as that paper does.
- epsilon_high > epsilon: DAPO's clip-higher.
- importance_weights: per-token min(pi_old / pi_rollout, C), truncated importance sampling, for rollouts
  sampled by an engine whose weights differ from the policy's (a bf16 copy, vLLM); off by default.

Normalisers (`num_sequences`, `num_tokens`) are passed in so that a batch split into micro-batches, or
across processes, sums to exactly the loss of the whole batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "dapo", "dr_grpo")


def group_advantages(rewards: Tensor, num_generations: int, scale_rewards: bool = True,
                     eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """A_i = (r_i - mean) / (std + eps) within each group of `num_generations` consecutive rewards.

    Returns (advantages [N], zero_std [N // G] bool). A group whose rewards are all equal gets exactly zero
    advantage (r - mean = 0), so it contributes no policy gradient, only the KL term. std is the unbiased
    sample std (torch.std), as in TRL.
    """
    grouped = rewards.view(-1, num_generations)  # [num_groups, G]
    mean = grouped.mean(dim=1, keepdim=True)  # [num_groups, 1]
    std = grouped.std(dim=1, keepdim=True)  # [num_groups, 1]
    centred = grouped - mean  # [num_groups, G]
    advantages = centred / (std + eps) if scale_rewards else centred  # [num_groups, G]
    zero_std = (grouped == grouped[:, :1]).all(dim=1)  # [num_groups]
    advantages = torch.where(zero_std[:, None], torch.zeros_like(advantages), advantages)
    return advantages.reshape(-1), zero_std


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref): pi_ref/pi_theta - log(pi_ref/pi_theta) - 1 >= 0."""
    log_ratio = ref_logprobs - logprobs  # log(pi_ref / pi_theta)
    return torch.exp(log_ratio) - log_ratio - 1


def grpo_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor | None, advantages: Tensor,
              mask: Tensor, *, beta: float = 0.001, epsilon: float = 0.2, epsilon_high: float | None = None,
              loss_type: str = "grpo", max_completion_length: int | None = None,
              num_sequences: int | None = None, num_tokens: float | None = None,
              importance_weights: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO loss (-J) of a batch of completions and token sums for the step's statistics.

    logprobs, old_logprobs, ref_logprobs, mask: [N, T]; advantages: [N]. `num_sequences` / `num_tokens`
    are the whole batch's counts when this is one micro-batch of it (defaults: this batch's own).
    importance_weights [N, T] (no gradient) multiply each token's loss: the samples came from a slightly
    different sampler than pi_old, and w = pi_old / pi_sampler re-weights them to pi_old's expectation.
    Returns (loss, stats) where stats hold detached sums over unmasked tokens: kl, clipped_low,
    clipped_high, and the token count, to be summed over micro-batches and divided.
    """
    mask = mask.to(logprobs.dtype)  # [N, T]
    eps_high = epsilon if epsilon_high is None else epsilon_high
    # log-ratios are zeroed on padding before exp(): padded positions can hold any value, and inf * 0 = NaN
    ratio = torch.exp((logprobs - old_logprobs) * mask)  # [N, T]
    adv = advantages[:, None]  # [N, 1]
    unclipped = ratio * adv  # [N, T]
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + eps_high) * adv  # [N, T]
    per_token = torch.min(unclipped, clipped)  # [N, T]
    kl = kl_k3(logprobs * mask, ref_logprobs * mask) if ref_logprobs is not None else torch.zeros_like(logprobs)  # [N, T]
    if beta != 0.0:
        per_token = per_token - beta * kl
    per_token_loss = -per_token  # [N, T]
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights.detach()  # [N, T]

    n_seq = logprobs.shape[0] if num_sequences is None else num_sequences
    if loss_type == "grpo":
        lengths = mask.sum(dim=1).clamp(min=1)  # [N]
        loss = ((per_token_loss * mask).sum(dim=1) / lengths).sum() / n_seq
    elif loss_type == "dapo":
        n_tok = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
        loss = (per_token_loss * mask).sum() / n_tok
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type=dr_grpo needs max_completion_length")
        loss = (per_token_loss * mask).sum() / (n_seq * max_completion_length)
    else:
        raise ValueError(f"loss_type={loss_type!r}: choose one of {', '.join(LOSS_TYPES)}")

    with torch.no_grad():
        low = ((ratio < 1 - epsilon) & (adv < 0)).to(mask.dtype)  # [N, T] the clip is active below
        high = ((ratio > 1 + eps_high) & (adv > 0)).to(mask.dtype)  # [N, T] the clip is active above
        stats = {
            "kl": (kl.detach() * mask).sum(),
            "clipped_low": (low * mask).sum(),
            "clipped_high": (high * mask).sum(),
            "tokens": mask.sum(),
        }
    return loss, stats
