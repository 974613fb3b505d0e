"""The `r1kit` command line.

    r1kit grpo  [--config FILE.yaml] [--option value ...]   GRPO from any model (alias: r1kit zero)
    r1kit eval  --model M --benchmark gsm8k math500 ...      pass@1 over k samples, pass@k, cons@k
    r1kit model [NAME]                                      resolve a model; converts the embedded one once

Every training option is a field of GRPOConfig and appears here as --field_name (booleans also as
--no-field_name); a config file is read first and command-line options override it. Expected failures
(bad options, missing files, bad data, a failing reward) print one line `r1kit: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from .config import FIELDS, ConfigError, GRPOConfig, make_config
from .data import DataError
from .models import ModelError
from .rewards import RewardError

EXPECTED_ERRORS = (ConfigError, DataError, ModelError, RewardError)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per GRPOConfig field; unset options stay absent so the config file's values stand."""
    group = parser.add_argument_group("training options (also valid as keys of the YAML config)")
    for f in dataclasses.fields(GRPOConfig):
        ftype, help_text = str(f.type), f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{help_text} (default: {default})"}
        if ftype.startswith("bool"):
            group.add_argument(f"--{f.name}", action=argparse.BooleanOptionalAction, **kw)
            continue
        if ftype.startswith("list"):
            kw["nargs"] = "+"
            kw["type"] = float if "float" in ftype else str
        elif ftype.startswith("int"):
            kw["type"] = int
        elif ftype.startswith("float"):
            kw["type"] = float
        group.add_argument(f"--{f.name}", metavar=f.name.upper(), **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="r1kit", description="DeepSeek-R1 style reasoning RL (GRPO) for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    grpo = sub.add_parser("grpo", aliases=["zero"], help="train with GRPO (R1-Zero: RL straight from a model)",
                          description="Train a model with GRPO and rule-based rewards.")
    grpo.add_argument("--config", help="YAML file of options; command-line options override it")
    _add_config_options(grpo)
    ev = sub.add_parser("eval", help="evaluate a model: pass@1 over k samples, pass@k, cons@k",
                        description="Evaluate as the R1 paper reports it: pass@1 averaged over k samples "
                                    "(temperature 0.6, top-p 0.95), the unbiased pass@k, and majority vote cons@k.")
    ev.add_argument("--model", default="embedded", help="local HF folder, cached hub id, or 'embedded'")
    ev.add_argument("--benchmark", nargs="+", required=True,
                    help="gsm8k, math500, aime24, aime25, amc23, or a .jsonl file (several allowed)")
    ev.add_argument("--num_samples", "-k", type=int, default=4, help="k samples per problem (default 4)")
    ev.add_argument("--temperature", type=float, default=0.6, help="default 0.6, as in the paper")
    ev.add_argument("--top_p", type=float, default=0.95, help="default 0.95, as in the paper")
    ev.add_argument("--max_new_tokens", type=int, default=512)
    ev.add_argument("--prompt_style", default="r1zero", choices=["r1zero", "r1chat", "chat", "fewshot"],
                    help="r1zero (answer in <answer>), chat (chat template + \\boxed{} instruction), fewshot (base models)")
    ev.add_argument("--prefill", default="<think>", help="response prefill for the r1zero style")
    ev.add_argument("--limit", type=int, default=None, help="evaluate only this many problems")
    ev.add_argument("--subset", default="first", choices=["first", "random"], help="which problems --limit keeps")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--batch_size", type=int, default=8, help="problems per generation batch")
    ev.add_argument("--pass_k", type=int, nargs="*", default=None, help="also report pass@k for these k (default: k)")
    ev.add_argument("--data_dir", default=None, help="benchmark data folder (default $R1KIT_DATA_DIR or ../shared/data)")
    ev.add_argument("--question_field", default="question", help="question field of a .jsonl benchmark")
    ev.add_argument("--answer_field", default="answer", help="gold answer field of a .jsonl benchmark")
    ev.add_argument("--output_dir", default="runs/eval", help="writes OUTPUT_DIR/BENCHMARK/{summary.json,samples.jsonl}")
    ev.add_argument("--trust_remote_code", action="store_true")
    model = sub.add_parser("model", help="resolve a model name to a local folder (converts the embedded model once)")
    model.add_argument("name", nargs="?", default="embedded")
    return parser


def cmd_grpo(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
    config = make_config(args.config, overrides)
    from .trainer import train  # heavy imports only once the config is valid

    history = train(config)
    last = history[-1] if history else {}
    if last:
        print(f"r1kit: done: step {last['step']}, reward {last['reward']:.3f}, format {last['format_rate']:.2f}, "
              f"accuracy {last['accuracy']:.2f}; outputs in {config.output_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import load_benchmark, select_problems, evaluate, format_table, write_outputs

    if args.num_samples < 1 or args.batch_size < 1:
        raise ConfigError("--num_samples and --batch_size must be >= 1")
    if not 0 < args.top_p <= 1 or args.temperature < 0:
        raise ConfigError("--top_p must be in (0, 1] and --temperature >= 0")
    # every benchmark is read and checked before the model loads
    suites = {name: select_problems(load_benchmark(name, args.data_dir, args.question_field, args.answer_field),
                                    args.limit, args.subset, args.seed)
              for name in args.benchmark}
    import torch
    from tqdm.auto import tqdm
    from .models import load_model, load_tokenizer

    tokenizer = load_tokenizer(args.model, args.trust_remote_code)
    model = load_model(args.model, trust_remote_code=args.trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    pass_k = tuple(args.pass_k) if args.pass_k is not None else (args.num_samples,)
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "benchmark")}
    for name, problems in suites.items():
        label = Path(name).stem if name.endswith(".jsonl") else name
        with tqdm(total=len(problems), desc=f"eval {label}", unit="problem") as bar:
            summary, records = evaluate(model, tokenizer, problems, num_samples=args.num_samples,
                                        temperature=args.temperature, top_p=args.top_p,
                                        max_new_tokens=args.max_new_tokens, prompt_style=args.prompt_style,
                                        prefill=args.prefill, batch_size=args.batch_size, seed=args.seed,
                                        pass_k=pass_k, progress=bar.update)
        write_outputs(Path(args.output_dir) / label, label, summary, records, settings)
        print(format_table(label, summary))
        print(f"  -> {Path(args.output_dir) / label}/summary.json, samples.jsonl")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    from .models import resolve_model_path

    print(resolve_model_path(args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("grpo", "zero"):
            return cmd_grpo(args)
        if args.command == "eval":
            return cmd_eval(args)
        return cmd_model(args)
    except EXPECTED_ERRORS as e:
        print(f"r1kit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1kit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
