"""Does a recipe teach? Run one GRPO config over several seeds and report held-out pass@1 before and after.

    python bench/learning.py configs/zero_demo.yaml --seeds 3 [--out runs/learning] [-- extra r1kit options]

Each seed is one `r1kit grpo --config CONFIG --seed S` run in its own process (so the runs do not share
state, and a crash in one leaves the others), with evaluation on the config's held-out set at step 0 and
at the end (the config's eval_* options; eval_steps is set if the config has none). The script prints,
per seed and as mean and spread: held-out pass@1 at step 0 and at the end, the ratio and the gain, the
final format rate and template_copy_rate, and wall time; and writes OUT/learning.png (held-out pass@1
over steps, one line per seed, and the training accuracy) and OUT/learning.json.

A learning goal is judged here, on problems never trained on and over seeds, never by a training reward.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml


def run_seed(config: str, seed: int, out: Path, extra: list[str]) -> dict:
    """One seed's run; returns its metrics lines (metrics.jsonl) and wall time."""
    run_dir = out / f"seed{seed}"
    options = yaml.safe_load(Path(config).read_text()) or {}
    cmd = [sys.executable, "-m", "r1kit.cli", "grpo", "--config", config, "--seed", str(seed), "--output_dir",
           str(run_dir), "--overwrite_output_dir", "--log_completions_steps", "0", *extra]
    if not options.get("eval_steps"):
        cmd += ["--eval_steps", str(options.get("max_steps", 100))]  # step 0 and the end
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench/learning.py: seed {seed} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"seed": seed, "wall_s": wall, "metrics": lines}


def summarize(run: dict) -> dict:
    evals = [m for m in run["metrics"] if "eval/pass@1" in m]
    train = [m for m in run["metrics"] if "reward" in m]
    before, after = evals[0]["eval/pass@1"], evals[-1]["eval/pass@1"]
    last = train[-1] if train else {}
    return {"seed": run["seed"], "pass@1_before": before, "pass@1_after": after,
            "ratio": after / before if before > 0 else float("inf"), "gain": after - before,
            "format_rate": last.get("format_rate"), "template_copy_rate": last.get("template_copy_rate"),
            "eval_format_rate": evals[-1].get("eval/format_rate"), "wall_s": round(run["wall_s"], 1)}


def spread(values: list[float]) -> str:
    finite = [v for v in values if v == v and abs(v) != float("inf")]
    if not finite:
        return "n/a"
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.mean(finite):.3f} ± {sd:.3f}"


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        evals = [m for m in run["metrics"] if "eval/pass@1" in m]
        a.plot([m["step"] for m in evals], [m["eval/pass@1"] for m in evals], marker="o", label=f"seed {run['seed']}")
        train = [m for m in run["metrics"] if "accuracy" in m]
        b.plot([m["step"] for m in train], [m["accuracy"] for m in train], label=f"seed {run['seed']}")
    a.set(title="held-out pass@1", xlabel="step", ylim=(0, 1))
    b.set(title="training accuracy", xlabel="step", ylim=(0, 1))
    a.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--out", default="runs/learning")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [run_seed(args.config, s, out, extra) for s in range(args.first_seed, args.first_seed + args.seeds)]
    rows = [summarize(r) for r in runs]
    head = ("seed", "pass@1_before", "pass@1_after", "ratio", "gain", "format_rate", "template_copy_rate", "wall_s")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in head))
    print("mean ± sd | " + " | ".join(spread([r[k] for r in rows]) for k in head[1:-1]))
    plot(runs, out / "learning.png")
    (out / "learning.json").write_text(json.dumps({"config": args.config, "extra": extra, "rows": rows}, indent=2))
    print(f"plot: {out / 'learning.png'}; table: {out / 'learning.json'}")


if __name__ == "__main__":
    main()
