"""Corrections and shaping around the loss: importance weights for a rollout engine whose weights differ
from the policy's (TIS, IcePop, per token or per sequence), no loss on truncated completions (DAPO), and
DAPO's soft overlong penalty."""

from __future__ import annotations

import torch
from torch import Tensor

IMPORTANCE_SAMPLING_MODES = ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask")
# the cap when the correction is on because the rollout engine's weights differ from the policy's (TRL's default
# vllm_importance_sampling_clip_max)
AUTO_IMPORTANCE_SAMPLING_CAP = 3.0


def rollout_importance_weights(old_logprobs: Tensor, sampler_logprobs: Tensor, mask: Tensor, mode: str,
                               cap: float) -> Tensor:
    """Weights [N, T] (no gradient) re-weighting samples drawn by a rollout engine (bf16 copy, vLLM) to
    pi_old, from w = pi_old / pi_sampler, as TRL's vLLM importance-sampling correction defines them:
    token_* take w per token; sequence_* take one w per completion, the product of its token ratios
    (exp of the summed log-ratio), for all its tokens. *_truncate is TIS, min(w, C); *_mask is IcePop-style:
    w where 1/C <= w <= C, else 0 (TRL's masks only zero w > C). Padding positions hold exp(0) = 1 capped in
    the token modes; the loss masks them."""
    if mode not in IMPORTANCE_SAMPLING_MODES:
        raise ValueError(f"importance_sampling_mode={mode!r}: choose one of {', '.join(IMPORTANCE_SAMPLING_MODES)}")
    if not (cap > 1 if mode.endswith("mask") else cap > 0):
        raise ValueError(f"importance_sampling_cap={cap}: must be > {1 if mode.endswith('mask') else 0} for {mode}")
    with torch.no_grad():
        gap = (old_logprobs - sampler_logprobs) * mask  # [N, T] log pi_old - log pi_sampler, 0 on padding
        if mode.startswith("sequence"):
            gap = gap.sum(dim=1, keepdim=True)  # [N, 1]
        w = gap.exp()  # [N, T] or [N, 1]
        if mode.endswith("truncate"):
            w = w.clamp(max=cap)
        else:
            w = torch.where((w >= 1.0 / cap) & (w <= cap), w, torch.zeros_like(w))
        return w.expand_as(old_logprobs).contiguous()  # [N, T]


def mask_truncated_completions(mask: Tensor, truncated: Tensor) -> Tensor:
    """The completion mask [N, T] with the rows of truncated completions (truncated [N] bool: cut at
    max_completion_length) zeroed: no loss on an output that never finished (DAPO)."""
    return mask * (~truncated.bool()).to(mask.dtype)[:, None]  # [N, T]


def soft_overlong_penalty(lengths: list[int] | Tensor, max_completion_length: int, buffer_length: int) -> list[float]:
    """DAPO's soft overlong punishment per completion length L (tokens), with L_max = max_completion_length
    and the buffer L_b: 0 for L <= L_max - L_b, (L_max - L_b - L) / L_b within the buffer (0 to -1),
    -1 beyond L_max. The loop adds overlong_penalty_factor x this to each reward."""
    if not 0 < buffer_length <= max_completion_length:
        raise ValueError(f"overlong_buffer_length={buffer_length}: must be in [1, max_completion_length]")
    start = max_completion_length - buffer_length
    out = []
    for n in (lengths.tolist() if isinstance(lengths, Tensor) else lengths):
        if n <= start:
            out.append(0.0)
        elif n <= max_completion_length:
            out.append((start - n) / buffer_length)
        else:
            out.append(-1.0)
    return out
