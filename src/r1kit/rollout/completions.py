"""Completions as text: what step labelling and tree search ask of a model (n continuations of each prompt),
behind a one-method interface so a test can script the continuations.

    completer.complete(prompts, n, seed) -> [[n continuations of prompts[0]], [... of prompts[1]], ...]

`SamplerCompleter` answers with the rollout's decode loop (r1kit.rollout.sampling.generate: each prompt's
prefix computed once and shared by its n samples); a user's stand-in is any object with that method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from r1kit.rollout.sampling import generate


class Completer(Protocol):
    def complete(self, prompts: list[str], n: int, seed: int) -> list[list[str]]: ...


@dataclass
class SamplerCompleter:
    """n sampled continuations per prompt from `sampler` (a causal LM or a FusedDecoder), in batches of
    `batch_size` prompts, each batch seeded from (seed, its position), so the result is a function of
    (prompts, n, seed)."""

    sampler: object
    tokenizer: object
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    batch_size: int = 8
    max_prompt_length: int | None = None

    def complete(self, prompts: list[str], n: int, seed: int) -> list[list[str]]:
        device = next(self.sampler.parameters()).device if hasattr(self.sampler, "parameters") else self.sampler.device
        out: list[list[str]] = []
        for b in range(0, len(prompts), self.batch_size):
            chunk = prompts[b:b + self.batch_size]
            gen = torch.Generator(device=device).manual_seed((seed * 1_000_003 + b) % 2**63)
            r = generate(self.sampler, self.tokenizer, chunk, num_generations=n, max_new_tokens=self.max_new_tokens,
                         temperature=self.temperature, top_p=self.top_p, stop_strings=tuple(self.stop_strings),
                         max_prompt_length=self.max_prompt_length, generator=gen)
            out += [r.completions[i * n:(i + 1) * n] for i in range(len(chunk))]
        return out
