"""Shared pieces of the benchmarks: the machine's matmul peak, resident memory, medians, model FLOPs."""

from __future__ import annotations

import resource
import statistics
import time

import torch

# Benchmark prompts: R1-Zero-template arithmetic questions, identical for every side.
QUESTIONS = ["What is 17 + 25?", "What is 48 + 31?", "What is 62 + 9?", "What is 13 + 77?",
             "What is 55 + 44?", "What is 21 + 68?", "What is 90 + 7?", "What is 36 + 36?"]


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 matmul FLOP/s over a few square products: the machine's practical ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def forward_flops_per_token(model) -> float:
    """~2 FLOPs per parameter per token (matmuls); a tied embedding counts once, as the LM head."""
    return 2.0 * sum(p.numel() for p in model.parameters())


def per_length(values: list[int], lengths: list[int]) -> list[int]:
    """A per-length option given once (for every length) or once per length."""
    if len(values) not in (1, len(lengths)):
        raise SystemExit(f"bench: give one value or one per length ({len(lengths)}), not {len(values)}")
    return values * len(lengths) if len(values) == 1 else values
