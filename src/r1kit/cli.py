"""The `r1kit` command line.

    r1kit grpo  [--config FILE.yaml] [--option value ...]   GRPO from any model (alias: r1kit zero)
    r1kit model [NAME]                                      resolve a model; converts the embedded one once

Every training option is a field of GRPOConfig and appears here as --field_name (booleans also as
--no-field_name); a config file is read first and command-line options override it. Expected failures
(bad options, missing files, bad data, a failing reward) print one line `r1kit: error: ...` and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
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


def cmd_model(args: argparse.Namespace) -> int:
    from .models import resolve_model_path

    print(resolve_model_path(args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("grpo", "zero"):
            return cmd_grpo(args)
        return cmd_model(args)
    except EXPECTED_ERRORS as e:
        print(f"r1kit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1kit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
