"""Rollout: sample G completions per prompt and keep their token ids and sampling log-probabilities.

Design decisions:
- A hand-written decode loop over a transformers KV cache instead of `model.generate`, because GRPO
  needs three things generate does not give cheaply: (1) each prompt's prefix is computed once and its
  cache repeated for its G samples; (2) rows that finished (EOS or a stop string such as "</answer>")
  leave the batch, so no compute goes to padding; (3) the log-probability of each sampled token under
  the sampling policy comes out of the same pass.
- The loop drives a forward through three operations (prefill, step, select rows): either r1kit's fused
  decoder for Llama-family models (r1kit.rollout.decoder, a copy of the weights) or, for any other model, the
  transformers forward over a cache of GrowingLayers, which write into preallocated buffers instead of
  concatenating on every token.
- Log-probabilities are those of the temperature-scaled distribution, softmax(logits / T), before top-p
  filtering: the same function the trainer evaluates for pi_theta and pi_old, so ratios compare like with
  like. Top-p only restricts which tokens can be drawn.
- Randomness comes from an explicit torch.Generator, so a step's samples are a function of its seed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer

from r1kit.models.cache import cache_kwargs
from r1kit.rollout.decoder import FusedDecoder


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

    @classmethod
    def from_tokens(cls, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, logprobs: Tensor, lengths: Tensor,
                    truncated: Tensor, tokenizer: PreTrainedTokenizerBase, prompt_truncated: int = 0) -> "Rollout":
        """A rollout from sampled tokens [N, >= T] (pad_token_id beyond each row's length), their log-probs
        [N, >= T] and lengths [N], cut to the longest row; texts decoded without special tokens. Every
        engine builds its Rollout here, so all share one layout."""
        T = int(lengths.max()) if len(lengths) else 0
        mask = (torch.arange(T, device=tokens.device)[None, :] < lengths[:, None]).long()  # [N, T]
        ids = tokens[:, :T].masked_fill(mask == 0, tokenizer.pad_token_id)  # [N, T]
        return cls(prompt_ids=prompt_ids, prompt_mask=prompt_mask, completion_ids=ids, completion_mask=mask,
                   logprobs=logprobs[:, :T] * mask, completions=tokenizer.batch_decode(ids, skip_special_tokens=True),
                   truncated=truncated.bool(), prompt_truncated=prompt_truncated)

    def to(self, device) -> "Rollout":
        """The same rollout with its tensors on `device` (an engine may sample elsewhere than training)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Rollout(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in moved.items()})


def sample_tokens(logits: Tensor, temperature: float, top_p: float,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Draw one token per row; return (tokens [B], log-probs [B] under softmax(logits / T))."""
    logits = logits.float()  # [B, V]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)  # [B, 1]
    if temperature <= 0:  # greedy
        tokens = logits.argmax(dim=-1)  # [B]
    else:
        # Inverse-CDF sampling: one uniform per row against the cumulative distribution. It draws from p
        # exactly, like torch.multinomial or an exponential race, but needs B random numbers instead of
        # B x V (drawing B x V exponentials cost 15-20 ms per decode step at batch 16 on 2 CPU cores).
        probs = (logits - lse).exp_()  # [B, V]
        order = None
        if top_p < 1.0:
            probs, order = probs.sort(dim=-1, descending=True)  # [B, V]
            # keep the smallest prefix whose mass reaches top_p (the top token always survives)
            probs = probs.masked_fill(probs.cumsum(dim=-1) - probs > top_p, 0.0)  # [B, V]
        cdf = probs.cumsum_(dim=-1)  # [B, V] (in place: probs is a temporary)
        u = torch.rand(len(cdf), 1, generator=generator, device=cdf.device) * cdf[:, -1:]  # [B, 1]
        # right=True: the first index whose cdf exceeds u, so tokens of zero mass are never drawn
        tokens = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)  # [B]
        if order is not None:
            tokens = order.gather(1, tokens[:, None]).squeeze(1)  # [B] back to vocabulary ids
    return tokens, logits.gather(1, tokens[:, None]).squeeze(1) - lse.squeeze(1)


class GrowingLayer(DynamicLayer):
    """A KV-cache layer that writes into preallocated buffers instead of concatenating.

    DynamicLayer re-allocates and copies the whole cache with torch.cat on every decode step: with a
    ~100-token prompt at batch 16 that was a quarter of the rollout's time on 2 CPU cores. Here each step
    writes one slot and `keys`/`values` are views of the filled part, so attention sees exactly the same
    tensors. Capacity doubles when exceeded, so any length works.
    """

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k = self._v = None  # [B, H, capacity, D]

    def _views(self) -> None:
        self.keys = self._k[:, :, : self.length]
        self.values = self._v[:, :, : self.length]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self.length + n > self._k.shape[2]:
            B, H, _, D = key_states.shape
            size = max(self.capacity, 2 * (self.length + n))
            k = key_states.new_empty(B, H, size, D)  # [B, H, size, D]
            v = value_states.new_empty(B, H, size, D)
            if self.length:
                k[:, :, : self.length] = self.keys
                v[:, :, : self.length] = self.values
            self._k, self._v = k, v
        self._k[:, :, self.length: self.length + n] = key_states
        self._v[:, :, self.length: self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self._views()

    def batch_select_indices(self, indices: Tensor) -> None:
        if self.length:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()


class HFStepper:
    """The decode loop's operations over any transformers causal LM's own forward, with a cache of
    GrowingLayers (the fallback for architectures the fused decoder does not cover)."""

    def __init__(self, model: PreTrainedModel):
        self.model = model
        self.generation_config = model.generation_config
        self.device = next(model.parameters()).device
        self.cache: Cache | None = None

    def prefill(self, prompt_ids: Tensor, prompt_mask: Tensor, positions: Tensor, capacity: int) -> Tensor:
        layers = self.model.config.get_text_config(decoder=True).num_hidden_layers
        self.cache = Cache(layers=[GrowingLayer(capacity) for _ in range(layers)])
        out = self.model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions,
                         logits_to_keep=1, **cache_kwargs(self.cache))
        return out.logits[:, -1]  # [B, V]

    def step(self, tokens: Tensor, attn: Tensor, positions: Tensor) -> Tensor:
        out = self.model(input_ids=tokens[:, None], attention_mask=attn, position_ids=positions,
                         **cache_kwargs(self.cache))
        return out.logits[:, -1]  # [A, V]

    def repeat_rows(self, repeats: int) -> None:
        self.cache.batch_repeat_interleave(repeats)

    def select_rows(self, rows: Tensor) -> None:
        self.cache.batch_select_indices(rows)

    def release(self) -> None:
        self.cache = None


def decoder_for(model) -> "FusedDecoder | HFStepper":
    """The fused decoder if `model` is one, else the HF forward of `model`."""
    return model if isinstance(model, FusedDecoder) else HFStepper(model)


def rollout_copy(policy: PreTrainedModel, dtype: torch.dtype) -> PreTrainedModel:
    """A plain copy of the policy (LoRA merged in) in `dtype` to sample from; refresh it after each update
    with `r1kit.weights.copy_weights_into(copy, policy)`.

    Sampling from a bfloat16 copy while training in float32 is what vLLM-based trainers do. On CPUs with
    AVX512-BF16 the decode matmuls run about 2x faster and read half the bytes. The copy's distribution
    differs slightly from the policy's (a mean KL of about 1e-3 per token was measured on SmolLM2-135M);
    the trainer recomputes every log-probability the loss uses with the policy itself.
    """
    base = copy.deepcopy(policy)
    if hasattr(base, "merge_and_unload"):  # a peft model: bake the adapter into a plain model
        base = base.merge_and_unload()
    return base.to(dtype).eval().requires_grad_(False)


def stop_token_ids(model, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """EOS ids from the generation config and the tokenizer."""
    ids = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                   max_prompt_length: int | None) -> tuple[Tensor, Tensor, int]:
    """Left-padded prompt ids and mask [B, P], cut from the left to max_prompt_length, and how many
    prompts were cut."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]  # [B, P]
    truncated = 0
    if max_prompt_length is not None and prompt_ids.shape[1] > max_prompt_length:
        truncated = int((prompt_mask.sum(1) > max_prompt_length).sum())
        prompt_ids, prompt_mask = prompt_ids[:, -max_prompt_length:], prompt_mask[:, -max_prompt_length:]
    return prompt_ids, prompt_mask, truncated


@torch.no_grad()  # not inference_mode: the rollout tensors feed the training forward
def generate(model: "PreTrainedModel | FusedDecoder", tokenizer: PreTrainedTokenizerBase, prompts: list[str], *,
             num_generations: int, max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
             stop_strings: tuple[str, ...] = (), max_prompt_length: int | None = None,
             generator: torch.Generator | None = None, ignore_eos: bool = False) -> Rollout:
    """Sample `num_generations` completions for each prompt with a shared-prefix KV cache.

    model: a transformers causal LM (decoded through its own forward) or a FusedDecoder holding a copy of
    the policy's weights (faster; see r1kit.rollout.decoder).
    ignore_eos: generate exactly max_new_tokens for every row (benchmarks' fixed-length mode).
    """
    G = num_generations
    dec = decoder_for(model)
    device = dec.device
    prompt_ids, prompt_mask, prompt_truncated = encode_prompts(tokenizer, prompts, max_prompt_length)
    prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
    B, P = prompt_ids.shape
    N = B * G
    pad_id = tokenizer.pad_token_id
    stops = torch.tensor([] if ignore_eos else sorted(stop_token_ids(dec, tokenizer)), dtype=torch.long, device=device)
    stop_window = 0 if ignore_eos else max((len(s) for s in stop_strings), default=0)  # a stop string spans at most this many tokens

    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    # Prefill each prompt once (the cache sized for prompt + completion), then give each of its G
    # samples a copy of the cache.
    positions = (prompt_mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, P]
    logits = dec.prefill(prompt_ids, prompt_mask, positions, P + max_new_tokens)  # [B, V]
    dec.repeat_rows(G)
    logits = logits.repeat_interleave(G, dim=0)  # [N, V]
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
            dec.select_rows(keep)
            active, tokens, attn, next_pos = active[keep], tokens[keep], attn[keep], next_pos[keep]
        attn = torch.cat([attn, attn.new_ones(len(active), 1)], dim=1)  # [A, P+t+1]
        logits = dec.step(tokens, attn, next_pos)  # [A, V]
        next_pos = next_pos + 1

    dec.release()
    if was_training:
        model.train()
    return Rollout.from_tokens(prompt_ids, prompt_mask, tokens_out, logprobs_out, lengths, ~finished, tokenizer,
                               prompt_truncated)


def take_groups(r: Rollout, groups: list[int]) -> Rollout:
    """The rollout restricted to whole groups (prompt b and its G completions), in the order given."""
    G = r.num_generations
    rows = [g * G + j for g in groups for j in range(G)]
    gi, ri = torch.tensor(groups, dtype=torch.long), torch.tensor(rows, dtype=torch.long)
    return Rollout(prompt_ids=r.prompt_ids[gi], prompt_mask=r.prompt_mask[gi], completion_ids=r.completion_ids[ri],
                   completion_mask=r.completion_mask[ri], logprobs=r.logprobs[ri],
                   completions=[r.completions[i] for i in rows], truncated=r.truncated[ri],
                   prompt_truncated=r.prompt_truncated)


def cat_rollouts(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
    """Rollouts of the same G one after the other: prompts left-padded to the longest, completions
    right-padded (masks 0, log-probs 0 on the new padding, as on any padding)."""
    P = max(r.prompt_ids.shape[1] for r in rollouts)
    T = max(r.completion_ids.shape[1] for r in rollouts)
    pad = torch.nn.functional.pad
    return Rollout(
        prompt_ids=torch.cat([pad(r.prompt_ids, (P - r.prompt_ids.shape[1], 0), value=pad_token_id) for r in rollouts]),
        prompt_mask=torch.cat([pad(r.prompt_mask, (P - r.prompt_mask.shape[1], 0)) for r in rollouts]),
        completion_ids=torch.cat([pad(r.completion_ids, (0, T - r.completion_ids.shape[1]), value=pad_token_id)
                                  for r in rollouts]),
        completion_mask=torch.cat([pad(r.completion_mask, (0, T - r.completion_mask.shape[1])) for r in rollouts]),
        logprobs=torch.cat([pad(r.logprobs, (0, T - r.logprobs.shape[1])) for r in rollouts]),
        completions=[c for r in rollouts for c in r.completions],
        truncated=torch.cat([r.truncated for r in rollouts]),
        prompt_truncated=sum(r.prompt_truncated for r in rollouts))
