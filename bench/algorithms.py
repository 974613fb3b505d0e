"""Every loss type and advantage estimator on the tiny learning task of tests/test_learning.py, 3 seeds each.

    python bench/algorithms.py                               # all variants, seeds 0 1 2, ~4 min on 1 CPU thread
    python bench/algorithms.py --variants grpo dapo dr_grpo --seeds 0 --out runs/bench_algorithms

The task: a tiny character-level Llama over digits (seed 1, as the test's `digit_model` fixture) is
rewarded 1 when its completion starts by repeating the prompt's digit; 200 prompts, G = 8, 64 completions
a step, 2 new tokens, learning rate 3e-3, beta 0, 50 steps, one CPU thread (bitwise repeatable). Each
variant changes only its own options (GRPOConfig overrides) from that base. num_iterations defaults to 2
here (the test uses 1): on-policy (ratio 1) several variants have identical gradients (sapo and GSPO equal
grpo, cispo equals dapo), and only the second update of a batch tells their off-policy handling apart.

Writes to --out: results.json (per-run rewards per step), results.md (the table) and reward.png (mean
reward per step over seeds, one line per variant, the band is min..max over seeds). Final accuracy is
measured on the trained model itself, with no sampling: the probability, at the training temperature
(1.0), that its first completion token repeats the prompt's digit, averaged over the 10 digits (the task's
whole input space; exact rather than sampled). Greedy accuracy is the share of digits whose most likely
first token is right.

A variant whose options this r1kit's training loop does not pass on yet (advantage_estimator needs
r1kit.grpo.advantages_for in the loop, importance_sampling_level needs r1kit.grpo.loss_options) is
skipped and listed as such rather than run as something it is not.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS: dict[str, dict] = {
    "grpo": {},
    "bnpo": {"loss_type": "bnpo"},
    "dapo": {"loss_type": "dapo"},
    "dr_grpo": {"loss_type": "dr_grpo"},
    "cispo": {"loss_type": "cispo", "epsilon_high": 5.0},
    "sapo": {"loss_type": "sapo"},
    "gspo": {"importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
    "rloo": {"advantage_estimator": "rloo"},
    "reinforce_plus_plus": {"advantage_estimator": "reinforce_plus_plus"},
}
# the helper the training loop must call for an option to take effect (options absent here always do)
NEEDS = {"advantage_estimator": "advantages_for", "importance_sampling_level": "loss_options",
         "sapo_temperature_pos": "loss_options", "sapo_temperature_neg": "loss_options"}


def copy_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1 if the completion starts by repeating the prompt's digit (tests/test_learning.py)."""
    return [1.0 if c[:1] == a else 0.0 for c, a in zip(completions, answers)]


def loop_source() -> str:
    """The training loop's source (trainer, and the loop module once there is one)."""
    import importlib

    text = ""
    for name in ("r1kit.trainers.grpo.setup", "r1kit.trainers.grpo.step", "r1kit.trainers.grpo.scoring",
                 "r1kit.trainers.grpo.metrics", "r1kit.trainers.loop"):
        try:
            text += inspect.getsource(importlib.import_module(name))
        except ImportError:
            pass
    return text


def unwired(overrides: dict, source: str) -> list[str]:
    return [k for k in overrides if k in NEEDS and NEEDS[k] not in source]


def final_accuracy(checkpoint: Path) -> tuple[float, float]:
    """(mean P(first token = the prompt's digit) at temperature 1, greedy accuracy) over the 10 digits."""
    from r1kit.models.loading import load_model, load_tokenizer

    model, tok = load_model(str(checkpoint)), load_tokenizer(str(checkpoint))
    model.eval()
    probs, greedy = [], []
    with torch.no_grad():
        for d in "0123456789":
            enc = tok([d], return_tensors="pt")  # the "plain" template: the prompt is the question itself
            logits = model(**enc).logits[0, -1].float()  # [V]
            p = torch.softmax(logits, dim=-1)  # [V]
            target = tok.convert_tokens_to_ids(d)
            probs.append(p[target].item())
            greedy.append(float(int(p.argmax()) == target))
    return statistics.mean(probs), statistics.mean(greedy)


def run_one(model_dir: str, overrides: dict, seed: int, steps: int, num_iterations: int, out: Path) -> dict:
    from r1kit.data.problems import Example
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import train

    rng = random.Random(0)
    examples = [Example(question=d, answer=d, id=str(i))
                for i, d in enumerate(rng.choice("0123456789") for _ in range(200))]
    config = make_config(overrides=dict(
        model=model_dir, template="plain", prefill="", stop_strings=[], num_generations=8,
        per_device_train_batch_size=64, max_completion_length=2, learning_rate=3e-3, beta=0.0,
        max_steps=steps, save_steps=0, log_completions_steps=0, write_report=False, torch_threads=1,
        num_iterations=num_iterations, output_dir=str(out), seed=seed, **overrides))
    t = time.perf_counter()
    history = train(config, examples=examples, reward_funcs=[copy_reward], show_progress=False)
    seconds = time.perf_counter() - t
    prob, greedy = final_accuracy(out / f"checkpoint-{steps}")
    return {"rewards": [m["reward"] for m in history], "accuracy": prob, "greedy_accuracy": greedy,
            "seconds": seconds}


def plot(results: dict, path: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    x = list(range(1, steps + 1))
    for name, runs in results.items():
        if not runs:
            continue
        curves = [r["rewards"] for r in runs.values()]
        mean = [statistics.mean(v) for v in zip(*curves)]
        line, = ax.plot(x, mean, label=name, linewidth=1.4)
        ax.fill_between(x, [min(v) for v in zip(*curves)], [max(v) for v in zip(*curves)],
                        color=line.get_color(), alpha=0.12, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel(f"mean reward (mean over {len(next(iter(results.values())) or [0])} seeds; band: min..max)")
    ax.set_title("tiny copy task: loss types and advantage estimators")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(ncol=3, fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict, skipped: dict, seeds: list[int]) -> str:
    rows = ["| variant | options | final accuracy (mean over seeds; per seed) | greedy accuracy | "
            "mean reward, last 5 steps | seconds per run |", "| --- | --- | --- | --- | --- | --- |"]
    for name, overrides in VARIANTS.items():
        opts = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(the defaults)"
        if name in skipped:
            rows.append(f"| {name} | {opts} | skipped: the loop does not call {', '.join(skipped[name])} yet | | | |")
            continue
        if name not in results:
            continue
        runs = [results[name][s] for s in seeds]
        acc = [r["accuracy"] for r in runs]
        last5 = statistics.mean(statistics.mean(r["rewards"][-5:]) for r in runs)
        rows.append(f"| {name} | {opts} | {statistics.mean(acc):.3f} ({', '.join(f'{a:.3f}' for a in acc)}) | "
                    f"{statistics.mean(r['greedy_accuracy'] for r in runs):.2f} | {last5:.3f} | "
                    f"{statistics.mean(r['seconds'] for r in runs):.1f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--num_iterations", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_algorithms")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from r1kit.models.loading import build_tiny_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    source = loop_source()
    results: dict[str, dict[int, dict]] = {}
    skipped: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(build_tiny_model(Path(tmp) / "model", alphabet="0123456789", seed=1))
        for name in args.variants:
            missing = unwired(VARIANTS[name], source)
            if missing:
                skipped[name] = sorted({NEEDS[k] for k in missing})
                print(f"{name}: skipped, the training loop does not call {', '.join(skipped[name])} yet", flush=True)
                continue
            results[name] = {}
            for seed in args.seeds:
                r = run_one(model_dir, VARIANTS[name], seed, args.steps, args.num_iterations,
                            Path(tmp) / f"{name}-{seed}")
                results[name][seed] = r
                print(f"{name} seed {seed}: accuracy {r['accuracy']:.3f}, reward first 3 "
                      f"{statistics.mean(r['rewards'][:3]):.3f}, last 5 {statistics.mean(r['rewards'][-5:]):.3f}, "
                      f"{r['seconds']:.1f} s", flush=True)
    meta = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "steps": args.steps, "num_iterations": args.num_iterations, "seeds": args.seeds,
            "seconds_total": time.perf_counter() - t0, "torch": torch.__version__}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results, "skipped": skipped}, indent=1))
    (out / "results.md").write_text(table(results, skipped, args.seeds))
    if results:
        plot(results, out / "reward.png", args.steps)
    print(table(results, skipped, args.seeds))
    print(f"wrote {out}/results.json, results.md, reward.png in {meta['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
