"""`r1kit distill-compare`: the R1 paper's Table 6 at small scale.

Distilling a strong reasoner into a small student beats large-scale RL on that student: the paper compares
DeepSeek-R1-Distill-Qwen-32B with Qwen-32B trained by RL (R1-Zero recipe, 10K+ steps). Here both arms get
the same prompts:
- distillation: the teacher samples `num_samples` answers per prompt, filtered as in stage 3 (correct,
  readable, one language, deduplicated), and the student is fine-tuned on what survives;
- RL: GRPO on the student over the same prompts, each seen once (max_steps x prompts per step = the budget).
Teacher, student and both results are evaluated the same way. With `--seeds`, both arms run once per seed
on the same prompt budget (drawn with --seed), and the table gives each figure's mean ± sd over the seeds and
every seed's pass@1: at small scale one run's margin is mostly noise.

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
    p.add_argument("--student_template", default=None, help="the untrained student and its RL arm: prompt template "
                                                                "(default --template)")
    p.add_argument("--student_prefill", default=None, help="the untrained student and its RL arm: prefill "
                                                           "(default --prefill)")
    p.add_argument("--student_prompt_examples", default=None,
                   help="--student_template chat: worked exchanges shown before each question to the untrained "
                        "student and its RL arm (a base model that answers only after a shown exchange)")
    p.add_argument("--student_system_prompt", default=None, help="--student_template chat: the system message")
    p.add_argument("--student_reward_funcs", nargs="+", default=None,
                   help="rewards of the RL arm (default --reward_funcs; e.g. format accuracy for the paper's tags)")
    p.add_argument("--eval_benchmark", default="arithmetic")
    p.add_argument("--eval_limit", type=int, default=16)
    p.add_argument("--eval_num_samples", type=int, default=4)
    p.add_argument("--eval_max_new_tokens", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="draws the prompt budget; without --seeds, also the runs' seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="N",
                   help="run both arms once per seed (OUTPUT_DIR/seed<N>, the same prompt budget); the table gives "
                        "the seeds' mean ± sd and every seed's pass@1")
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
    # the student's own prompt (RL arm and its evaluation before training); the distilled student learns the teacher's
    prompt = {"template": args.student_template or args.template,
              "prefill": args.prefill if args.student_prefill is None else args.student_prefill,
              **({"prompt_examples": str(Path(args.student_prompt_examples).resolve())}
                 if args.student_prompt_examples else {}),
              **({"system_prompt": args.student_system_prompt} if args.student_system_prompt is not None else {})}
    tags = "<think>" in prompt["prefill"] and prompt["template"] in ("r1zero", "chat")
    student["eval"] = {**prompt, "style": ("r1zero" if prompt["template"] == "r1zero" else "r1chat") if tags
                       else "readable"}
    rl_stops = {} if tags else {"stop_strings": []}  # the tags' own stop ("</answer>") ends a tagged answer
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
             "learning_rate": args.rl_learning_rate, "reward_funcs": args.student_reward_funcs or args.reward_funcs,
             **rl_stops, **prompt},
        ],
    }


ROWS = (("teacher", "teacher"), ("student", "student (before)"), ("distilled", "student distilled from the teacher"),
        ("student_rl", "student trained with GRPO"))
METRICS = (("pass@1", 3, False), ("pass@k", 3, False), ("think_gain", 3, True), ("format_rate", 2, False))


def table6(manifests: dict[int, dict], budget: int) -> str:
    """The comparison as a Markdown table: with one run its figures; with several seeds each figure's
    mean ± sd over the seeds, then every seed's pass@1 and the lowest."""
    from r1kit.pipeline.summary import eval_row, spread, spread_cell

    seeds = list(manifests)
    rows = {name: [eval_row(m["stages"].get(name, {}).get("eval") or {}) for m in manifests.values()]
            for name, _ in ROWS}
    k = next((r["k"] for rs in rows.values() for r in rs if r.get("k")), "k")
    heads = [key.replace("@k", f"@{k}").replace("format_rate", "format") for key, *_ in METRICS]
    lines = ([f"Seeds {', '.join(map(str, seeds))}: mean ± sd over the seeds (each seed's run in seed<N>/).", ""]
             if len(seeds) > 1 else [])
    lines += ["| model | " + " | ".join(heads) + " |", "| --- |" + " ---: |" * len(heads)]
    labels = {name: label + (f" ({budget} prompts)" if name in ("distilled", "student_rl") else "") for name, label in ROWS}
    for name, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(spread_cell(spread([r.get(key) for r in rows[name]]), d, s)
                                                  for key, d, s in METRICS) + " |")
    if len(seeds) > 1:
        lines += ["", "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | min |",
                  "| --- |" + " ---: |" * (len(seeds) + 1)]
        for name, label in labels.items():
            vals = [r.get("pass@1") for r in rows[name]]
            lines.append(f"| {label} | " + " | ".join(spread_cell(spread([v])) for v in vals) +
                         f" | {spread_cell(spread([min((v for v in vals if v is not None), default=None)]))} |")
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    from r1kit.pipeline.pipeline import run_pipeline, run_seeds

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
    if args.seeds:
        manifests = run_seeds(path, args.seeds, start_from=args.start_from)
    else:
        manifests = {args.seed: run_pipeline(path, start_from=args.start_from)}
    text = table6(manifests, budget)
    write_atomic(out / "table6.md", text + "\n")
    print(text)
    print(f"r1kit: Table 6 comparison in {out / 'table6.md'} (pipeline: {path})")
    return 0
