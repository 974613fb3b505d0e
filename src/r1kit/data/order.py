"""The seeded prompt order: a fresh permutation per pass over the data, so the prompts of any step are a
pure function of (seed, step, process rank) and a resumed run draws what the uninterrupted run drew."""

from __future__ import annotations

import functools
import random


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    perm = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return tuple(perm)


def prompt_indices(num_examples: int, start: int, count: int, seed: int) -> list[int]:
    """Indices of prompts start..start+count of an endless stream of seeded per-epoch shuffles."""
    return [_epoch_permutation(num_examples, seed, pos // num_examples)[pos % num_examples]
            for pos in range(start, start + count)]
