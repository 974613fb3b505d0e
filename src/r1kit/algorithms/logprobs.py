"""Per-token log-probabilities of completions under a model (pi_theta, pi_old or pi_ref).

Design decisions:
- Shared prefix: the G completions of a prompt share it, so the prompt goes through the model once
  (with gradient when training) and its KV cache is repeated for the G completion rows. The gradient is
  exact: every row's contribution flows back into the one prefix computation. With a ~100-token R1-Zero
  template and G=8 this halves the tokens a training step processes.
- No [n, T, V] logits, ever. The model's own LM head runs on no position (`logits_to_keep` is an empty
  index); the decoder's last hidden states [n, T, H] are taken with a forward hook, and the LM head is
  applied to `chunk_tokens` (rows x positions) at a time. Each chunk yields its log-probs (logit -
  logsumexp) and entropies and its logits are freed. With a gradient, each chunk is checkpointed: the
  backward recomputes the chunk's logits from its hidden states instead of keeping them, so a training
  forward holds [n, T, H] plus one chunk's [n, c, V], and its peak memory stops growing with vocabulary x
  length (tests/test_logprobs_memory.py measures it). The recomputation is the LM head's matmul once more
  per token in the backward. This is the idea behind Liger's fused linear cross-entropy; GRPO's upstream
  gradient is not known in the forward, so the logits are recomputed rather than differentiated ahead.
- Logits are divided by the sampling temperature, matching the distribution the rollout sampled from.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import DynamicCache

from r1kit.models.cache import cache_kwargs, returned_cache

CHUNK_TOKENS = 1024  # rows x positions per chunk: 1024 x a 49,152-token vocabulary is 201 MB of fp32 logits

_NO_POSITIONS = torch.zeros(0, dtype=torch.long)  # logits_to_keep: the model's LM head runs on nothing


def completion_logprobs(model, prompt_ids: Tensor, prompt_mask: Tensor, completion_ids: Tensor,
                        completion_mask: Tensor, row_to_prompt: Tensor, temperature: float = 1.0,
                        with_entropy: bool = False, prefix_model=None, entropy_grad: bool = False,
                        chunk_tokens: int = CHUNK_TOKENS) -> tuple[Tensor, Tensor | None]:
    """Log-probs [n, T] of each completion token given its prompt and the tokens before it, and
    optionally the entropy [n, T] (no gradient unless `entropy_grad`) of the model's distribution there.

    prompt_ids, prompt_mask: [b, P] distinct left-padded prompts; completion_ids, completion_mask: [n, T]
    right-padded; row_to_prompt: [n] which prompt row each completion continues.
    `prefix_model` runs the prompt pass (default: `model`); under DDP pass the unwrapped module so that
    the wrapper sees one forward per backward (gradients still reach the same parameters).
    `chunk_tokens`: rows x positions scored through the LM head at a time (0: all at once).
    """
    prefix_model = prefix_model if prefix_model is not None else model
    T = completion_ids.shape[1]
    prompt_pos = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # [b, P]
    with last_hidden_states(prefix_model) as hidden:
        out = prefix_model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos,
                           logits_to_keep=_NO_POSITIONS.to(prompt_ids.device), **cache_kwargs(DynamicCache()))
    prompt_end = hidden.pop()[row_to_prompt, -1:]  # [n, 1, H] predicts completion token 0
    cache = returned_cache(out)
    cache.batch_select_indices(row_to_prompt)  # [n, heads, P, d] per layer: each row gets its prompt's K/V
    attn = torch.cat([prompt_mask[row_to_prompt], completion_mask], dim=1)  # [n, P+T]
    positions = prompt_pos[row_to_prompt, -1:] + 1 + torch.arange(T, device=attn.device)[None]  # [n, T]
    # completion token t is predicted at the prompt's end (t = 0) or at completion position t-1; the last
    # completion position predicts nothing, so it is not run
    states = prompt_end  # [n, 1, H]
    if T > 1:
        with last_hidden_states(prefix_model) as hidden:
            model(input_ids=completion_ids[:, :-1], attention_mask=attn[:, :-1], position_ids=positions[:, :-1],
                  logits_to_keep=_NO_POSITIONS.to(prompt_ids.device), **cache_kwargs(cache))
        states = torch.cat([prompt_end, hidden.pop()], dim=1)  # [n, T, H]
    head = lm_head(prefix_model)
    step = T if chunk_tokens <= 0 else max(1, chunk_tokens // max(len(states), 1))
    grad = torch.is_grad_enabled() and states.requires_grad
    logprobs, entropy = [], []
    for start in range(0, T, step):
        part = (head, states[:, start:start + step], completion_ids[:, start:start + step], temperature,
                with_entropy, entropy_grad)
        # with a gradient: the chunk's logits are recomputed in the backward, not kept (see the docstring)
        lp, ent = checkpoint(score_chunk, *part, use_reentrant=False) if grad and step < T else score_chunk(*part)
        logprobs.append(lp)
        entropy.append(ent)
    return torch.cat(logprobs, dim=1), torch.cat(entropy, dim=1) if with_entropy else None


def lm_head(model) -> Callable[[Tensor], Tensor]:
    """The model's LM head as a function. A plain Linear (also under FSDP2, which subclasses it) is applied
    as F.linear on its weight: calling the module again after the model's forward would run FSDP2's
    hooks a second time in the step, and its unit could free the weight before this backward reads it. Any
    other head (a LoRA-wrapped one) is called as a module."""
    head = model.get_output_embeddings()
    if isinstance(head, nn.Linear):
        return lambda states: F.linear(states, head.weight, head.bias)
    return head


def score_chunk(head: Callable[[Tensor], Tensor], states: Tensor, ids: Tensor, temperature: float, with_entropy: bool,
                entropy_grad: bool) -> tuple[Tensor, Tensor | None]:
    """(log p(ids) [n, c], entropy [n, c] or None) from hidden states [n, c, H] through the LM head."""
    logits = head(states).float()  # [n, c, V]
    if temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1)  # [n, c]
    logprobs = logits.gather(-1, ids[..., None]).squeeze(-1) - lse  # [n, c]
    if not with_entropy:
        return logprobs, None
    with contextlib.nullcontext() if entropy_grad else torch.no_grad():  # with a gradient only for a bonus
        probs = torch.softmax(logits, dim=-1)  # [n, c, V]
        return logprobs, lse - (probs * logits).sum(dim=-1)  # [n, c]


@contextlib.contextmanager
def last_hidden_states(model):
    """Collects the decoder's last hidden states [n, L, H] (after its final norm: what the LM head reads)
    of each forward run inside the block, in a list."""
    seen: list[Tensor] = []
    hook = model.get_decoder().register_forward_hook(lambda module, args, out: seen.append(out[0]))
    try:
        yield seen
    finally:
        hook.remove()
