"""Rollout: sample G completions per prompt and keep their token ids and sampling log-probabilities.

Design decisions:
- A hand-written decode loop over a transformers KV cache instead of `model.generate`, because GRPO
  needs three things generate does not give cheaply: (1) each prompt's prefix is computed once and its
  cache repeated for its G samples; (2) rows that finished (EOS or a stop string such as "</answer>")
  leave the batch, so no compute goes to padding; (3) the log-probability of each sampled token under
  the sampling policy comes out of the same pass.
- Log-probabilities are those of the temperature-scaled distribution, softmax(logits / T), before top-p
  filtering: the same function the trainer evaluates for pi_theta and pi_old, so ratios compare like with
  like. Top-p only restricts which tokens can be drawn.
- Randomness comes from an explicit torch.Generator, so a step's samples are a function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Rollout:
    """G completions per prompt, prompt-major: completion rows [b*G, (b+1)*G) continue prompt b."""

    prompt_ids: Tensor  # [B, P] distinct prompts, left-padded
    prompt_mask: Tensor  # [B, P]
    completion_ids: Tensor  # [N, T] right-padded with pad_token_id
    completion_mask: Tensor  # [N, T] 1 on generated tokens, the final EOS included
    logprobs: Tensor  # [N, T] log pi_sample(token) of each generated token, 0 on padding
    completions: list[str]  # decoded completions, special tokens removed
    truncated: Tensor  # [N] bool: reached max_new_tokens without EOS or stop string
    prompt_truncated: int = 0  # prompts cut from the left to max_prompt_length

    @property
    def lengths(self) -> Tensor:
        return self.completion_mask.sum(dim=1)  # [N]

    @property
    def num_generations(self) -> int:
        return self.completion_ids.shape[0] // self.prompt_ids.shape[0]


def sample_tokens(logits: Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Draw one token per row; return (tokens [B], log-probs [B] under softmax(logits / T))."""
    logits = logits.float()  # [B, V]
    if temperature <= 0:  # greedy
        logp = torch.log_softmax(logits, dim=-1)  # [B, V]
        tokens = logits.argmax(dim=-1)  # [B]
        return tokens, logp.gather(1, tokens[:, None]).squeeze(1)
    logp = torch.log_softmax(logits / temperature, dim=-1)  # [B, V]
    probs = logp.exp()  # [B, V]
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # [B, V]
        # keep the smallest prefix whose mass reaches top_p (the top token always survives)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # [B, V]
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(1, order, sorted_probs)  # [B, V]
    # argmax(p / E) with E ~ Exp(1) draws from p exactly (an exponential race) and is far faster than
    # torch.multinomial over a large vocabulary
    race = torch.empty_like(probs).exponential_(generator=generator)  # [B, V]
    tokens = (probs / race).argmax(dim=-1)  # [B]
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """EOS ids from the generation config and the tokenizer."""
    ids = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.no_grad()  # not inference_mode: the rollout tensors feed the training forward
def generate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
             num_generations: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
             stop_strings: tuple[str, ...] = (), max_prompt_length: int | None = None,
             generator: torch.Generator | None = None, ignore_eos: bool = False) -> Rollout:
    """Sample `num_generations` completions for each prompt with a shared-prefix KV cache.

    ignore_eos: generate exactly max_new_tokens for every row (benchmarks' fixed-length mode).
    """
    G = num_generations
    device = next(model.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]  # [B, P]
    prompt_truncated = 0
    if max_prompt_length is not None and prompt_ids.shape[1] > max_prompt_length:
        prompt_truncated = int((prompt_mask.sum(1) > max_prompt_length).sum())
        prompt_ids, prompt_mask = prompt_ids[:, -max_prompt_length:], prompt_mask[:, -max_prompt_length:]
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    B, P = prompt_ids.shape
    N = B * G
    pad_id = tokenizer.pad_token_id
    stops = torch.tensor([] if ignore_eos else sorted(stop_token_ids(model, tokenizer)), dtype=torch.long, device=device)
    stop_window = 0 if ignore_eos else max((len(s) for s in stop_strings), default=0)  # a stop string spans at most this many tokens

    was_training = model.training
    model.eval()
    # Prefill each prompt once, then give each of its G samples a copy of the cache.
    cache = DynamicCache()
    positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, P]
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(G)
    logits = out.logits[:, -1].repeat_interleave(G, dim=0)  # [N, V]
    attn = prompt_mask.repeat_interleave(G, dim=0)  # [N, P]
    next_pos = positions[:, -1:].repeat_interleave(G, dim=0) + 1  # [N, 1]

    tokens_out = torch.full((N, max_new_tokens), pad_id, dtype=torch.long, device=device)  # [N, T]
    logprobs_out = torch.zeros(N, max_new_tokens, device=device)  # [N, T]
    lengths = torch.zeros(N, dtype=torch.long, device=device)  # [N]
    finished = torch.zeros(N, dtype=torch.bool, device=device)  # [N]
    active = torch.arange(N, device=device)  # rows of the full batch still decoding

    for t in range(max_new_tokens):
        tokens, logp = sample_tokens(logits, temperature, top_p, generator)  # [A], [A]
        tokens_out[active, t] = tokens
        logprobs_out[active, t] = logp
        lengths[active] = t + 1
        done = torch.isin(tokens, stops)  # [A]
        if stop_window:
            tails = tokenizer.batch_decode(tokens_out[active, max(0, t + 1 - stop_window): t + 1])
            done |= torch.tensor([any(s in tail for s in stop_strings) for tail in tails], device=device)
        finished[active[done]] = True
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        keep = (~done).nonzero().squeeze(1)  # [A']
        if len(keep) < len(active):  # drop finished rows from the decode batch and the cache
            cache.batch_select_indices(keep)
            active, tokens, attn, next_pos = active[keep], tokens[keep], attn[keep], next_pos[keep]
        attn = torch.cat([attn, attn.new_ones(len(active), 1)], dim=1)  # [A, P+t+1]
        out = model(input_ids=tokens[:, None], attention_mask=attn, position_ids=next_pos,
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]  # [A, V]
        next_pos = next_pos + 1

    model.train(was_training)
    T = int(lengths.max())
    completion_ids = tokens_out[:, :T]  # [N, T]
    completion_mask = (torch.arange(T, device=device)[None, :] < lengths[:, None]).long()  # [N, T]
    logprobs = logprobs_out[:, :T] * completion_mask  # [N, T]
    texts = tokenizer.batch_decode(completion_ids.masked_fill(completion_mask == 0, pad_id),
                                   skip_special_tokens=True)
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        logprobs=logprobs,
        completions=texts,
        truncated=~finished,
        prompt_truncated=prompt_truncated,
    )
