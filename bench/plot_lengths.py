"""Plots of time and memory against completion length, from the --json files of bench/grpo_step.py and
bench/generation.py (any number of each; later files add lengths or sides).

    python bench/plot_lengths.py --step step_256_64.json step_1024.json --generation gen.json --out docs/lengths.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def step_series(paths: list[str]) -> dict[str, dict[int, dict]]:
    """side -> length -> its row (step time, peak RSS, ...)."""
    series: dict[str, dict[int, dict]] = {}
    for path in paths:
        for length, entry in json.loads(Path(path).read_text())["lengths"].items():
            for side, row in entry["rows"].items():
                series.setdefault(side, {})[int(length)] = row
    return series


def generation_series(paths: list[str]) -> dict[str, dict[tuple[int, int], float]]:
    """side -> (length, batch) -> tokens/s, r1kit's sides and vLLM's."""
    series: dict[str, dict[tuple[int, int], float]] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for key, row in data["r1kit"].items():
            L, B = map(int, key.split("/"))
            for side, rate in row.items():
                series.setdefault(side, {})[L, B] = rate
        for dtype, side in data.get("vllm", {}).items():
            for key, rate in side["tokens_per_s"].items():
                L, B = map(int, key.split("/"))
                series.setdefault(f"vLLM-{dtype}", {})[L, B] = rate
    return series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", nargs="*", default=[], help="bench/grpo_step.py --json files")
    ap.add_argument("--generation", nargs="*", default=[], help="bench/generation.py --json files")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, gens = step_series(args.step), generation_series(args.generation)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for side, rows in sorted(steps.items()):
        lengths = sorted(rows)
        axes[0].plot(lengths, [rows[L]["step time (s)"] for L in lengths], "o-", label=side)
        axes[1].plot(lengths, [rows[L]["peak RSS (MB)"] / 1024 for L in lengths], "o-", label=side)
    axes[0].set(title="GRPO step time (16 completions)", xlabel="completion tokens", ylabel="seconds")
    axes[1].set(title="peak RSS of the step's process", xlabel="completion tokens", ylabel="GB")
    for side, rates in sorted(gens.items()):
        for B in sorted({b for _, b in rates}):
            lengths = sorted(L for L, b in rates if b == B)
            axes[2].plot(lengths, [rates[L, B] for L in lengths], "o-", label=f"{side}, batch {B}")
    axes[2].set(title="rollout throughput", xlabel="completion tokens", ylabel="generated tokens/s")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
