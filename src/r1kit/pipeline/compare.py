"""`r1kit distill-compare`: the R1 paper's Table 6 at small scale.

Distilling a strong reasoner into a small student beats large-scale RL on that student: the paper compares
DeepSeek-R1-Distill-Qwen-32B with Qwen-32B trained by RL (R1-Zero recipe, 10K+ steps). Here both arms get
the same prompts:
- distillation: the teacher samples `num_samples` answers per prompt, filtered as in stage 3 (correct,
  readable, one language, deduplicated), and the student is fine-tuned on what survives;
- RL: GRPO on the student over the same prompts, each seen once (max_steps x prompts per step = the budget).
Teacher, student and both results are evaluated the same way.

Design decision: the experiment is a pipeline config written next to its outputs (table6_pipeline.yaml)
and run by r1kit.pipeline, so it is resumable, inspectable and re-runnable stage by stage like any other
pipeline; this module only builds that config and prints the table.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml

from r1kit.core.errors import ConfigError
from r1kit.core.files import jsonl_text, write_atomic


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="the teacher: a checkpoint or model folder, or 'embedded'")
    p.add_argument("--student", required=True, help="the student model, or the model to cut it from with --student_layers")
    p.add_argument("--student_layers", type=int, default=None, help="cut the student from --student, keeping N layers")
    p.add_argument("--dataset", default="arithmetic", help="training prompts: arithmetic, gsm8k or a .jsonl")
    p.add_argument("--question_field", default="question")
    p.add_argument("--answer_field", default="answer")
    p.add_argument("--num_prompts", type=int, default=32, help="the prompt budget both arms get")
    p.add_argument("--num_samples", type=int, default=4, help="teacher samples per prompt (distillation)")
    p.add_argument("--num_generations", type=int, default=8, help="G for RL on the student")
    p.add_argument("--prompts_per_step", type=int, default=2, help="RL prompts per step (steps = budget / this)")
    p.add_argument("--template", default="plain", help="prompt template of both arms (plain, r1zero, chat)")
    p.add_argument("--prefill", default="", help="response prefill of both arms")
    p.add_argument("--max_new_tokens", type=int, default=128, help="teacher samples and RL completions")
    p.add_argument("--sft_learning_rate", type=float, default=2e-5)
    p.add_argument("--sft_epochs", type=int, default=2)
    p.add_argument("--rl_learning_rate", type=float, default=2e-5)
    p.add_argument("--reward_funcs", nargs="+", default=["readable_accuracy", "readable_format"],
                   help="RL rewards (the teacher's data is filtered for correctness and readability)")
    p.add_argument("--eval_benchmark", default="arithmetic")
    p.add_argument("--eval_limit", type=int, default=16)
    p.add_argument("--eval_num_samples", type=int, default=4)
    p.add_argument("--eval_max_new_tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch_threads", type=int, default=None)
    p.add_argument("--output_dir", default="runs/table6")
    p.add_argument("--from", dest="start_from", metavar="STAGE", default=None, help="rerun from this stage")


def write_prompts(args: argparse.Namespace, path: Path) -> int:
    """The prompt budget, drawn once (seeded) and shared by both arms; returns how many."""
    from r1kit.data.sources import load_examples

    examples = load_examples(args.dataset, question_field=args.question_field, answer_field=args.answer_field,
                             seed=args.seed)
    if len(examples) < args.num_prompts:
        raise ConfigError(f"--num_prompts {args.num_prompts}: dataset {args.dataset} has only {len(examples)} prompts")
    chosen = random.Random(args.seed).sample(examples, args.num_prompts)
    write_atomic(path, jsonl_text([{"question": e.question, "answer": e.answer, "id": e.id} for e in chosen]))
    return len(chosen)


def build_config(args: argparse.Namespace, prompts: Path) -> dict:
    """The Table 6 experiment as a pipeline config."""
    if args.num_prompts % args.prompts_per_step:
        raise ConfigError(f"--num_prompts {args.num_prompts} must be a multiple of --prompts_per_step {args.prompts_per_step}")
    student = ({"name": "student", "type": "student", "model": args.student, "num_layers": args.student_layers}
               if args.student_layers else {"name": "student", "type": "model", "model": args.student})
    common = {"template": args.template}
    return {
        "output_dir": args.output_dir,
        "eval": {"benchmark": args.eval_benchmark, "limit": args.eval_limit, "num_samples": args.eval_num_samples,
                 "max_new_tokens": args.eval_max_new_tokens, "template": args.template, "prefill": args.prefill,
                 "seed": args.seed},
        "defaults": {"seed": args.seed, "torch_threads": args.torch_threads, "save_steps": 0,
                     "log_completions_steps": 0, "write_report": False},
        "stages": [
            {"name": "teacher", "type": "model", "model": args.teacher},
            student,
            {"name": "teacher_data", "type": "rejection", "model": "@teacher", "dataset": str(prompts),
             "question_field": "question", "answer_field": "answer", "num_samples": args.num_samples,
             "max_new_tokens": args.max_new_tokens, "prefill": args.prefill, **common},
            {"name": "distilled", "type": "sft", "model": "@student", "dataset": "@teacher_data",
             "learning_rate": args.sft_learning_rate, "num_train_epochs": args.sft_epochs, **common},
            {"name": "student_rl", "type": "grpo", "model": "@student", "dataset": str(prompts),
             "num_generations": args.num_generations,
             "per_device_train_batch_size": args.num_generations * args.prompts_per_step,
             "max_steps": args.num_prompts // args.prompts_per_step, "max_completion_length": args.max_new_tokens,
             "learning_rate": args.rl_learning_rate, "reward_funcs": args.reward_funcs, "prefill": args.prefill,
             "stop_strings": [], **common},
        ],
    }


def table6(manifest: dict, budget: int) -> str:
    """The comparison as a Markdown table."""
    rows = [("teacher", "teacher"), ("student", "student (before)"),
            ("distilled", f"student distilled from the teacher ({budget} prompts)"),
            ("student_rl", f"student trained with GRPO ({budget} prompts)")]
    lines = ["| model | pass@1 | cons@k | format |", "| --- | --- | --- | --- |"]
    for name, label in rows:
        ev = manifest["stages"].get(name, {}).get("eval") or {}
        k = ev.get("samples_per_problem")
        f = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"| {label} | {f(ev.get('pass@1'))} | {f(ev.get(f'cons@{k}'))} | {f(ev.get('format_rate'))} |")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    from r1kit.pipeline.pipeline import run_pipeline

    for name in ("num_prompts", "num_samples", "prompts_per_step", "eval_limit", "eval_num_samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be >= 1")
    if args.num_generations < 2:
        raise ConfigError("--num_generations must be >= 2 (GRPO compares completions within a group)")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / "prompts.jsonl"
    budget = write_prompts(args, prompts)
    config = build_config(args, prompts.resolve())
    path = out / "table6_pipeline.yaml"
    write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    manifest = run_pipeline(path, start_from=args.start_from)
    text = table6(manifest, budget)
    write_atomic(out / "table6.md", text + "\n")
    print(text)
    print(f"r1kit: Table 6 comparison in {out / 'table6.md'} (pipeline: {path})")
    return 0
