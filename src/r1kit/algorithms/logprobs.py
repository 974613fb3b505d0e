"""Per-token log-probabilities of completions under a model (pi_theta, pi_old or pi_ref).

Design decisions:
- Shared prefix: the G completions of a prompt share it, so the prompt goes through the model once
  (with gradient when training) and its KV cache is repeated for the G completion rows. The gradient is
  exact: every row's contribution flows back into the one prefix computation. With a ~100-token R1-Zero
  template and G=8 this halves the tokens a training step processes.
- Only completion positions go through the LM head, and log p(token) is gathered as
  logit - logsumexp(logits) rather than materialising a full-vocabulary log-softmax.
- Logits are divided by the sampling temperature, matching the distribution the rollout sampled from.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor
from transformers import DynamicCache

from r1kit.models.cache import cache_kwargs, returned_cache


def completion_logprobs(model, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                        completion_mask: Tensor, row_to_prompt: Tensor, temperature: float = 1.0,
                        with_entropy: bool = False, prefix_model=None,
                        entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """Log-probs [n, T] of each completion token given its prompt and the tokens before it, and
    optionally the entropy [n, T] (no gradient) of the model's distribution at those positions.

    prompt_ids, prompt_mask: [b, P] distinct left-padded prompts; completion_ids, completion_mask: [n, T]
    right-padded; row_to_prompt: [n] which prompt row each completion continues.
    `prefix_model` runs the prompt pass (default: `model`); under DDP pass the unwrapped module so that
    the wrapper sees one forward per backward (gradients still reach the same parameters).
    """
    prefix_model = prefix_model if prefix_model is not None else model
    T = completion_ids.shape[1]
    prompt_pos = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # [b, P]
    out = prefix_model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos,
                       logits_to_keep=1, **cache_kwargs(DynamicCache()))
    cache = returned_cache(out)
    cache.batch_select_indices(row_to_prompt)  # [n, heads, P, d] per layer: each row gets its prompt's K/V
    first_logits = out.logits[row_to_prompt, -1:]  # [n, 1, V] predicts completion token 0
    attn = torch.cat([prompt_mask[row_to_prompt], completion_mask], dim=1)  # [n, P+T]
    positions = prompt_pos[row_to_prompt, -1:] + 1 + torch.arange(T, device=attn.device)[None]  # [n, T]
    out = model(input_ids=completion_ids, attention_mask=attn, position_ids=positions, logits_to_keep=T,
                **cache_kwargs(cache))
    # completion token t is predicted at prompt end (t = 0) or at completion position t-1; the two parts are
    # scored separately rather than concatenated, which would copy the [n, T, V] logits once more
    parts = ((first_logits, completion_ids[:, :1]),
             (out.logits[:, :-1], completion_ids[:, 1:]))
    logprobs, entropy = [], []
    for logits, ids in parts:
        logits = logits.float()  # [n, t, V]
        if temperature != 1.0:
            logits = logits / temperature
        lse = torch.logsumexp(logits, dim=-1)  # [n, t]
        logprobs.append(logits.gather(-1, ids[..., None]).squeeze(-1) - lse)  # [n, t]
        if with_entropy:  # with a gradient only for an entropy bonus: it costs a [n, t, V] backward
            with contextlib.nullcontext() if entropy_grad else torch.no_grad():
                probs = torch.softmax(logits, dim=-1)  # [n, t, V]
                entropy.append(lse - (probs * logits).sum(dim=-1))  # [n, t]
    return torch.cat(logprobs, dim=1), torch.cat(entropy, dim=1) if with_entropy else None
