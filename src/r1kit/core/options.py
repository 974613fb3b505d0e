"""GRPO run configuration: one flat dataclass, read from YAML and then overridden from the command line.

Names follow TRL's GRPOConfig where the meaning is the same (num_generations, beta, epsilon,
epsilon_high, loss_type, scale_rewards, num_iterations, max_completion_length,
per_device_train_batch_size, gradient_accumulation_steps, ...), so TRL and open-r1 users can read a
config at a glance. Defaults follow the DeepSeek-R1 paper where it says (beta 0.001, epsilon 0.2,
group-std advantages, per-output token mean). Unknown keys are an error, never ignored, and the whole
config is validated before any model loads. The choice tables that every r1kit config validates
against (DTYPES, SCHEDULERS) live here, so a new choice is added once.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from r1kit.core.errors import ConfigError

# The choices every config validates against, one table each (the commands' configs read them from here).
DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_HELP = f"weights dtype: auto (bfloat16 on a GPU that supports it, else float32), {', '.join(DTYPES[1:])}"
# transformers.get_scheduler names that run with the two arguments r1kit passes (warm-up and total steps);
# the others need more (min_lr, num_decay_steps) or a metric to step on, and would fail once training starts
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")


def opt(default: Any, help: str, **kw):
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})






# --------------------------------------------------------------------------
# TRL / open-r1 recipe keys
# --------------------------------------------------------------------------
# A TRL or open-r1 GRPO recipe runs once its paths are changed. Each key below is one of:
#   an alias: its value is an r1kit option under another name (or another spelling of the value);
#   accepted as a no-op: it changes where/how results are published or how much is printed, never the
#     training itself, so a recipe that sets it still runs (a note says it has no effect here);
#   refused: r1kit cannot do what it asks; the error names the key and what to use instead.
# Keys that are r1kit options with the same name and meaning (learning_rate, beta, num_generations,
# logging_steps, report_to, seed, ...) need no entry. This is the only table of TRL names.
























def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
    return data


def _coerce(name: str, value: Any, source: str, fields: dict[str, dataclasses.Field]) -> Any:
    """Check a YAML value against the field's type (YAML already parsed numbers and booleans)."""
    ftype = str(fields[name].type)
    if value is None:
        if "None" in ftype:
            return None
        raise ConfigError(f"{source}: option '{name}' cannot be null")
    if ftype == "bool | str":  # a switch with named settings (scale_rewards: true, false, group, batch, none)
        return value if isinstance(value, bool) else str(value)
    if ftype.startswith("list"):
        value = value if isinstance(value, list) else [value]
        inner = float if "float" in ftype else str
        try:
            return [inner(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: option '{name}' expects a list of {inner.__name__}") from None
    for typ in (bool, int, float, str):
        if ftype.startswith(typ.__name__):
            if typ is bool and not isinstance(value, bool):
                raise ConfigError(f"{source}: option '{name}' expects true or false, got {value!r}")
            if typ is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{source}: option '{name}' expects an integer, got {value!r}")
            if typ is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    try:
                        return float(value)  # YAML reads 1e-6 as a string
                    except (TypeError, ValueError):
                        raise ConfigError(f"{source}: option '{name}' expects a number, got {value!r}") from None
                return float(value)
            if typ is str:
                return str(value)
            return value
    return value


def build_dataclass(cls: type, sources: list[tuple[str, dict[str, Any]]]) -> Any:
    """An instance of the config dataclass `cls` from (source name, values) pairs applied in order;
    unknown keys and ill-typed values raise ConfigError naming the source and the option."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source, data in sources:
        for key, value in data.items():
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown option '{key}'{hint}")
            values[key] = _coerce(key, value, source, fields)
    return cls(**values)


def load_config(cls: type, validate_fn, yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                translate=None):
    """A config of dataclass `cls`: the YAML file first, then overrides (from the command line) on top,
    then `validate_fn`; unknown keys and bad values are a ConfigError. Every r1kit command builds its
    config this way. `translate(data, source)` rewrites the YAML's keys first (GRPO: TRL recipe keys)."""
    sources = [(str(yaml_path), read_yaml(yaml_path))] if yaml_path else []
    if translate is not None:
        sources = [(source, translate(data, source)) for source, data in sources]
    sources.append(("command line", overrides or {}))
    config = build_dataclass(cls, sources)
    validate_fn(config)
    return config


def need(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok: the one-line checks config validators are made of."""
    if not ok:
        raise ConfigError(message)


def need_choice(name: str, value: Any, choices) -> None:
    """Raise ConfigError unless `value` is one of `choices` (a table), naming the option and the choices."""
    need(value in choices, f"{name}={value!r}: choose {', '.join(choices)}")






