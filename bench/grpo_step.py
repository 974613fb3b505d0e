"""An r1kit GRPO step vs. a TRL GRPOTrainer step: same model, prompts, G, completion length, sampling,
beta and num_iterations, A/B alternated after a warm-up.

    pip install -e ".[bench]"        # TRL is a bench-only dependency
    python bench/grpo_step.py [--model embedded] [--steps 4] [--warmup 1] [--natural] [--beta 0.04] [--bf16_rollout]
    python bench/grpo_step.py --dtype bfloat16     # both sides train bf16 weights (TRL: bf16=True)
    python bench/grpo_step.py --max_completion_length 64 256 1024 --steps 2 2 1 --warmup 1 1 0 --json out.json
    python bench/grpo_step.py --no_trl --async_side --one_at_a_time     # async_rollout against the plain step

Each side runs in its own worker process (so each has its own peak resident memory); the parent sends
"step" to one worker and waits, then to the other, so the two never compete for the cores. Per step:
whole step time, generation tokens/s (for the async side: tokens over the time the step waited for its
rollout), training tokens/s (prompt + completion tokens of every completion
over the time outside generation), peak RSS, and model FLOP/s as a fraction of the machine's fp32 matmul
peak. Model FLOPs use one formula for both sides: 2N per generated token, 6N per trained token (forward and
backward), 2N per token of each extra no-grad forward (reference model when beta > 0; pi_old when
num_iterations > 1), N = parameter count. Fixed-length mode (default) makes both sides generate exactly
max_completion_length tokens (EOS ignored), so they do identical work. Each length gets fresh workers, so
each side's peak RSS is that length's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import QUESTIONS, median, peak_rss_mb, per_length  # noqa: E402


def reward_len(completions, **kwargs):
    """A cheap deterministic reward with spread within groups (TRL's calling convention)."""
    return [float(len(c) % 7) for c in completions]


def r1kit_reward(completions, answers):
    return [float(len(c) % 7) for c in completions]


def r1kit_worker(conn, args, rollout_dtype: str = "auto", async_rollout: bool = False) -> None:
    import torch

    from r1kit.data.problems import Example
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import iter_train

    # async_rollout: the cores are split between the training process and its generation worker
    threads = max(1, args.threads // 2) if async_rollout else args.threads
    torch.set_num_threads(threads)
    examples = [Example(q, "0", str(i)) for i, q in enumerate(QUESTIONS * 50)]
    config = make_config(overrides=dict(
        model=args.model, template="r1zero", prefill="", num_generations=args.G,
        per_device_train_batch_size=micro_batch(args), gradient_accumulation_steps=args.batch // micro_batch(args),
        max_completion_length=args.max_completion_length,
        temperature=1.0, top_p=1.0, beta=args.beta, num_iterations=args.num_iterations, learning_rate=1e-6,
        max_steps=10_000, save_steps=0, log_completions_steps=0, ignore_eos=not args.natural,
        output_dir=str(Path(args.out) / f"r1kit-{rollout_dtype}-{async_rollout}"), overwrite_output_dir=True,
        torch_threads=threads, reward_timeout=0, write_report=False, rollout_dtype=rollout_dtype, dtype=args.dtype,
        async_rollout=async_rollout, rollout_worker_threads=max(1, args.threads - threads)))  # rewards in-process, as TRL runs them
    steps = iter_train(config, examples=examples, reward_funcs=[r1kit_reward], show_progress=False)
    conn.send("ready")
    while conn.recv() == "step":
        m = next(steps)
        prompt_tokens = m["tokens_per_second"] * m["step_time"] - m["completion_length"] * args.batch
        conn.send({"step_time": m["step_time"], "generation_time": m["generation_time"],
                   "completion_tokens": m["completion_length"] * args.batch, "prompt_tokens": prompt_tokens,
                   "rss": peak_rss_mb() + children_peak_rss_mb()})


def micro_batch(args) -> int:
    """r1kit's completions per micro-batch: --micro_batch, else as many as keep it within 4,096 completion
    tokens (all 16 at 64 and 256 tokens, 4 at 1024), dividing the step's batch."""
    micro = getattr(args, "micro_batch", 0) or min(args.batch, max(1, 4096 // args.max_completion_length))
    return micro if args.batch % micro == 0 else args.batch


def children_peak_rss_mb() -> float:
    """Peak RSS of this process's children (async_rollout's generation worker; its shared-memory copy of the
    weights counts in both processes)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0) / 1024
    return total


def trl_worker(conn, args) -> None:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from r1kit.data.templates import build_prompt
    from r1kit.models.loading import load_model, load_tokenizer, resolve_model_path

    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.model)
    prompts = [build_prompt(q, tok, "r1zero", "") for q in QUESTIONS * 50]
    cfg = GRPOConfig(
        output_dir=str(Path(args.out) / "trl"), per_device_train_batch_size=args.batch, num_generations=args.G,
        steps_per_generation=1, max_completion_length=args.max_completion_length, temperature=1.0, top_p=1.0,
        beta=args.beta, num_iterations=args.num_iterations, learning_rate=1e-6, report_to=[], logging_steps=10**6,
        save_strategy="no", use_cpu=True, bf16=args.dtype == "bfloat16", seed=0, shuffle_dataset=False,
        generation_kwargs={} if args.natural else {"min_new_tokens": args.max_completion_length})
    model = load_model(resolve_model_path(args.model), getattr(torch, args.dtype))
    trainer = GRPOTrainer(model=model, reward_funcs=reward_len, args=cfg, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": prompts}))
    trainer.create_optimizer_and_scheduler(num_training_steps=10_000)
    gen_time = [0.0]
    generate_fn = trainer._generate_single_turn

    def timed_generate(*a, **kw):  # time TRL's generation the same way r1kit reports its own
        t = time.perf_counter()
        out = generate_fn(*a, **kw)
        gen_time[0] += time.perf_counter() - t
        return out

    trainer._generate_single_turn = timed_generate
    trainer.current_gradient_accumulation_steps = 1  # normally set by HF Trainer's own loop
    batches = iter(trainer.get_train_dataloader())
    trainer.model.train()
    conn.send("ready")
    while conn.recv() == "step":
        gen_time[0] = 0.0
        t = time.perf_counter()
        batch = next(batches)
        for _ in range(args.num_iterations):  # TRL reuses the buffered generation for mu updates
            trainer.training_step(trainer.model, batch, None)
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
            trainer.optimizer.zero_grad()
        step_time = time.perf_counter() - t
        lengths = trainer._metrics["train"]["completions/mean_length"][-1]
        prompt_tokens = sum(len(tok(p).input_ids) for p in batch_prompts(batch))
        conn.send({"step_time": step_time, "generation_time": gen_time[0], "completion_tokens": lengths * args.batch,
                   "prompt_tokens": prompt_tokens, "rss": peak_rss_mb()})


def batch_prompts(batch) -> list[str]:
    return [row["prompt"] for row in batch]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16, help="completions per step")
    ap.add_argument("--max_completion_length", type=int, nargs="+", default=[64],
                    help="one or more completion lengths, each run with fresh workers")
    ap.add_argument("--micro_batch", type=int, default=0,
                    help="r1kit's completions per micro-batch (0: at most 4,096 completion tokens per micro-batch)")
    ap.add_argument("--beta", type=float, default=0.04)
    ap.add_argument("--num_iterations", type=int, default=1)
    ap.add_argument("--steps", type=int, nargs="+", default=[4], help="measured steps per side (one, or one per length)")
    ap.add_argument("--warmup", type=int, nargs="+", default=[1], help="warm-up steps (one, or one per length)")
    ap.add_argument("--one_at_a_time", action="store_true",
                    help="run one side's steps, stop it, then the next (not alternated): for lengths where the "
                         "sides' peaks together would not fit in memory")
    ap.add_argument("--natural", action="store_true", help="stop at EOS (real runs) instead of fixed length")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/r1kit-bench")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights dtype of both sides' models (bfloat16: TRL also gets bf16=True)")
    ap.add_argument("--bf16_rollout", action="store_true",
                    help="add a third side: r1kit with rollout_dtype=bfloat16 (training stays float32)")
    ap.add_argument("--async_side", action="store_true",
                    help="add a side: r1kit with async_rollout (one-step-off-policy; the threads split between the "
                         "trainer and its generation worker); use with --one_at_a_time, or the worker's background "
                         "generation would overlap the other sides' steps")
    ap.add_argument("--no_trl", action="store_true", help="r1kit's side(s) only")
    ap.add_argument("--json", help="also write every figure to this file (bench/plot_lengths.py reads it)")
    args = ap.parse_args()

    import torch
    from common import forward_flops_per_token, matmul_peak_flops

    from r1kit.models.loading import load_model

    torch.set_num_threads(args.threads)
    peak = matmul_peak_flops()
    n_flops = forward_flops_per_token(load_model(args.model))  # 2N
    lengths = args.max_completion_length
    results = {"machine": {"threads": args.threads, "matmul_peak_gflops": peak / 1e9}, "lengths": {}}
    for L, steps, warmup in zip(lengths, per_length(args.steps, lengths), per_length(args.warmup, lengths)):
        run_args = argparse.Namespace(**{**vars(args), "max_completion_length": L})
        rows = summarize(run_sides(run_args, steps, warmup), run_args, n_flops, peak)
        results["lengths"][L] = {"steps": steps, "warmup": warmup, "rows": rows}
        print_rows(rows, run_args, peak, steps, warmup)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))


def run_sides(args, steps: int, warmup: int) -> dict[str, list[dict]]:
    """Each side in its own worker process; steps alternated between the sides (never concurrent), or one
    side after the other with --one_at_a_time."""
    ctx = mp.get_context("spawn")
    sides = [("r1kit", r1kit_worker, ("auto",))] + ([] if args.no_trl else [("trl", trl_worker, ())])
    if args.bf16_rollout:
        sides.insert(1, ("r1kit-bf16", r1kit_worker, ("bfloat16",)))
    if args.async_side:
        sides.insert(1, ("r1kit-async", r1kit_worker, ("auto", True)))
    groups = [[side] for side in sides] if args.one_at_a_time else [sides]
    results = {}
    for group in groups:
        workers = {}
        for name, fn, extra in group:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=fn, args=(child, args, *extra))
            proc.start()
            assert parent.recv() == "ready", name
            workers[name] = (parent, proc)
        for name in workers:
            results[name] = []
        for i in range(warmup + steps):
            for name, (conn, _) in workers.items():  # A/B alternated, never concurrent
                conn.send("step")
                m = conn.recv()
                if i >= warmup:
                    results[name].append(m)
        for conn, proc in workers.values():
            conn.send("stop")
            proc.join(timeout=60)
    return results


def summarize(results: dict[str, list[dict]], args, n_flops: float, peak: float) -> dict[str, dict]:
    extra_forwards = (args.beta > 0) + (args.num_iterations > 1)
    rows = {}
    for name, ms in results.items():
        def med(f):
            return median([f(m) for m in ms])
        train_tokens = lambda m: m["prompt_tokens"] + m["completion_tokens"]  # noqa: E731
        flops = lambda m: (n_flops * m["completion_tokens"]  # noqa: E731
                           + 3 * n_flops * train_tokens(m) * args.num_iterations
                           + n_flops * train_tokens(m) * extra_forwards)
        rows[name] = {
            "step time (s)": med(lambda m: m["step_time"]),
            "generation tok/s": med(lambda m: m["completion_tokens"] / m["generation_time"]),
            "training tok/s": med(lambda m: train_tokens(m) / (m["step_time"] - m["generation_time"])),
            "peak RSS (MB)": max(m["rss"] for m in ms),
            "model FLOP/s / peak": med(lambda m: flops(m) / m["step_time"] / peak),
        }
    return rows


def print_rows(rows: dict[str, dict], args, peak: float, steps: int, warmup: int) -> None:
    mode = "natural" if args.natural else "fixed-length"
    print(f"machine: {args.threads} threads, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; {mode} mode; G={args.G}, "
          f"{args.batch} completions/step, max {args.max_completion_length} new tokens, beta={args.beta}, "
          f"num_iterations={args.num_iterations}, {args.dtype} weights; medians of {steps} steps after {warmup} "
          f"warm-up{', sides one at a time' if args.one_at_a_time else ''}")
    ours = [n for n in rows if n != "trl"]
    theirs = ours if "trl" in rows else []
    print(f"{'metric':<22}" + "".join(f"{n:>12}" for n in rows) + "".join(f"{n + '/TRL':>16}" for n in theirs))
    for key in rows["r1kit"]:
        fmt = "{:>12.1%}" if "peak" in key and "FLOP" in key else "{:>12.1f}"
        line = f"{key:<22}" + "".join(fmt.format(rows[n][key]) for n in rows)
        for n in theirs:
            a, b = rows[n][key], rows["trl"][key]
            line += f"{(b / a if key in ('step time (s)', 'peak RSS (MB)') else a / b):>15.2f}x"
        print(line, flush=True)
    if theirs:
        print("(ratios: > 1 means r1kit is better; for time and memory it is TRL / r1kit)")


if __name__ == "__main__":
    main()
