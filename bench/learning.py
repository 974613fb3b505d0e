"""Does a recipe teach? Run one GRPO config over several seeds and report held-out pass@1 before and after.

    python bench/learning.py configs/zero_demo.yaml --seeds 5 [--out runs/learning] [-- extra r1kit options]

Each seed is one `r1kit grpo --config CONFIG --seed S` run in its own process (so the runs do not share
state, and a crash in one leaves the others), with evaluation on the config's held-out set at step 0 and
at the end (the config's eval_* options; eval_steps is set if the config has none). The script prints,
per seed and as mean and spread: held-out pass@1 at step 0 and at the end, the ratio and the gain, whether
the think does the work (held-out think_gain = pass@1 - pass@1 with the think removed, at step 0 and at
the end; think length), the final held-out format rate, the training template copies and guesses, and wall
time; and writes OUT/learning.png (held-out pass@1, think_gain and think length over steps, one line per
seed, and the training accuracy) and OUT/learning.json. The seeds are the config's own seed (the one a
newcomer's run uses; 42 when the config names none) and then 1, 2, ...

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


def finished(run_dir: Path, max_steps: int) -> dict | None:
    """A run already in run_dir that evaluated at its last step (--reuse), as run_seed returns it."""
    path = run_dir / "metrics.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    if not any(m.get("step") == max_steps and "eval/pass@1" in m for m in lines):
        return None
    timing = run_dir / "learning_wall.json"  # written by run_seed; else the span between the run's first and last file
    wall = (json.loads(timing.read_text())["wall_s"] if timing.exists()
            else path.stat().st_mtime - (run_dir / "config.json").stat().st_mtime)
    return {"seed": int(run_dir.name.removeprefix("seed")), "wall_s": wall, "metrics": lines}


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
    (run_dir / "learning_wall.json").write_text(json.dumps({"wall_s": wall}))
    return {"seed": seed, "wall_s": wall, "metrics": lines}


def summarize(run: dict) -> dict:
    evals = [m for m in run["metrics"] if "eval/pass@1" in m]
    train = [m for m in run["metrics"] if "reward" in m]
    before, after = evals[0]["eval/pass@1"], evals[-1]["eval/pass@1"]
    last = train[-1] if train else {}
    return {"seed": run["seed"], "pass@1_before": before, "pass@1_after": after,
            "ratio": after / before if before > 0 else float("inf"), "gain": after - before,
            "think_gain_before": evals[0].get("eval/think_gain"), "think_gain_after": evals[-1].get("eval/think_gain"),
            "no_think_after": evals[-1].get("eval/pass@1_no_think"), "think_tokens_after": evals[-1].get("eval/think_tokens"),
            "eval_format_rate": evals[-1].get("eval/format_rate"), "format_rate": last.get("format_rate"),
            "template_copy_rate": last.get("template_copy_rate"),
            "example_copy_rate": last.get("example_copy_rate"), "guess_rate": last.get("guess_rate"),
            "wall_s": round(run["wall_s"], 1)}


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

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for run in runs:
        evals = [m for m in run["metrics"] if "eval/pass@1" in m]
        steps = [m["step"] for m in evals]
        line, = axes[0].plot(steps, [m["eval/pass@1"] for m in evals], marker="o", label=f"seed {run['seed']}")
        if all("eval/pass@1_no_think" in m for m in evals):
            axes[0].plot(steps, [m["eval/pass@1_no_think"] for m in evals], marker="x", ls=":", color=line.get_color())
            axes[1].plot(steps, [m["eval/think_gain"] for m in evals], marker="o", color=line.get_color())
        axes[2].plot(steps, [m.get("eval/think_tokens", 0) for m in evals], marker="o", color=line.get_color())
        train = [m for m in run["metrics"] if "accuracy" in m]
        axes[3].plot([m["step"] for m in train], [m["accuracy"] for m in train], color=line.get_color())
    axes[0].set(title="held-out pass@1 (dotted: think removed)", xlabel="step", ylim=(0, 1))
    axes[1].set(title="held-out think_gain", xlabel="step")
    axes[2].set(title="held-out think length (tokens)", xlabel="step")
    axes[3].set(title="training accuracy", xlabel="step", ylim=(0, 1))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=5, help="how many seeds: the config's own, then 1, 2, ...")
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--reuse", action="store_true",
                        help="a seed whose folder under --out holds a finished run is read, not run again")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = yaml.safe_load(Path(args.config).read_text()) or {}
    own = options.get("seed", 42)
    seeds = [own, *[s for s in range(1, args.seeds + 1) if s != own]][:args.seeds]
    runs = []
    for seed in seeds:  # printed as they finish: a long sweep shows its progress
        done = finished(out / f"seed{seed}", options.get("max_steps", 100)) if args.reuse else None
        runs.append(done or run_seed(args.config, seed, out, extra))
        print(f"seed {seed}: {json.dumps(summarize(runs[-1]))}", flush=True)
    rows = [summarize(r) for r in runs]
    head = ("seed", "pass@1_before", "pass@1_after", "ratio", "gain", "think_gain_before", "think_gain_after",
            "no_think_after", "think_tokens_after", "eval_format_rate", "template_copy_rate", "example_copy_rate", "guess_rate", "wall_s")
    print(" | ".join(head))
    for r in rows:
        print(" | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in head))
    rows = [{k: (float("nan") if v is None else v) for k, v in r.items()} for r in rows]
    print("mean ± sd | " + " | ".join(spread([r[k] for r in rows]) for k in head[1:-1]))
    plot(runs, out / "learning.png")
    (out / "learning.json").write_text(json.dumps({"config": args.config, "extra": extra, "rows": rows}, indent=2))
    print(f"plot: {out / 'learning.png'}; table: {out / 'learning.json'}")


if __name__ == "__main__":
    main()
