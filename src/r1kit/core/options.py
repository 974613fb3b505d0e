"""Options: groups of settings owned by the layer that reads them, and how a config is read.

A lower layer declares the options it reads as one small `Options` dataclass next to its code (the rollout
engine's `EngineOptions`, the alerts' `AlertOptions`, ...), with their defaults, help and checks. A
trainer's config is the union of the groups it uses, by dataclass inheritance over the trainers' shared
base, so a YAML file and the command line stay flat (TRL's names) while each option is declared once. The trainer hands each layer its own group, built by name with
`Group.from_config(config)`, never its whole config.

Every command reads its config the same way: the YAML file, then the command line on top, then the checks
of every group (`Options.validate`); unknown keys and ill-typed values are a ConfigError naming the file
or the option. The choice tables every config validates against (DTYPES, SCHEDULERS) live here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from r1kit.core.errors import ConfigError

DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_HELP = f"weights dtype: auto (bfloat16 on a GPU that supports it, else float32), {', '.join(DTYPES[1:])}"
# transformers.get_scheduler names that run with the two arguments r1kit passes (warm-up and total steps);
# the others need more (min_lr, num_decay_steps) or a metric to step on, and would fail once training starts
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")

G = TypeVar("G", bound="Options")


def opt(default: Any, help: str, **kw):
    """A dataclass field with its help text (shown by `r1kit CMD --help`)."""
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Options:
    """A group of options. Subclasses declare fields with `opt` and may define `check` (their own rules)."""

    @classmethod
    def from_config(cls: type[G], source: Any, /, **given: Any) -> G:
        """This group's options taken by name from `source` (a config, any object or a dict that has them; a
        field it lacks keeps this group's default), with `given` on top."""
        get = source.get if isinstance(source, dict) else lambda name, default: getattr(source, name, default)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in given or not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            values[f.name] = get(f.name, default)
        return cls(**values, **given)

    def check(self) -> None:
        """Raise ConfigError, naming the option, for a setting of this group that cannot work."""

    def validate(self) -> None:
        """Every group's `check` that this object's class inherits, base groups first."""
        for klass in reversed(type(self).__mro__):
            own = vars(klass).get("check")
            if own is not None:
                own(self)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file; ConfigError naming the file (and line) otherwise: a file that
    is missing, a folder, not UTF-8, not YAML, or that gives a key twice."""
    path = Path(path)
    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as e:
        raise ConfigError(f"{path}:{e.line}: key '{e.key}' given twice (first at line {e.first}); keep one") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
    return data


def _read_text(path: Path) -> str:
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.y*ml"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise ConfigError(f"config file {path}: a folder, not a YAML file{hint}")
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, except that a key given twice in one mapping is an error: PyYAML keeps the
    last one silently, so `learning_rate` set twice in a long file would hide the first."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults` may be overridden key by key, as YAML intends
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in first_line:
                raise _DuplicateKey(key, line, first_line[key])
            first_line[key] = line
        except TypeError:
            continue  # an unhashable key: PyYAML reports it itself
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def coerce(name: str, value: Any, source: str, fields: dict[str, dataclasses.Field]) -> Any:
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
        keep = callable if "Callable" in ftype else (lambda v: False)  # reward_funcs: functions given in Python
        try:
            return [v if keep(v) else inner(v) for v in value]
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


@dataclass
class Reading:
    """How a config class reads its sources (`Options.read_sources`): the sources in its own option names,
    values that hold only where no source sets the option, and the one-line notices to print once the
    config is built and valid."""

    sources: list[tuple[str, dict[str, Any]]]
    implied: dict[str, Any] = field(default_factory=dict)
    notices: Callable[[Any, set[str]], list[str]] | None = None  # (config, options the sources set) -> lines


def build_dataclass(cls: type, sources: list[tuple[str, dict[str, Any]]], notices: list[str] | None = None) -> Any:
    """An instance of the config dataclass `cls` from (source name, values) pairs applied in order, read
    as the class reads them (`read_sources`: GRPO's also take TRL / open-r1 recipe keys); unknown keys and
    ill-typed values raise ConfigError naming the source and the option. The class's notices for the
    user (keys without effect, defaults that differ from TRL's) are appended to `notices`."""
    reading = cls.read_sources(sources) if hasattr(cls, "read_sources") else Reading(sources)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for source, data in reading.sources:
        for key, value in data.items():
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown option '{key}'{hint}")
            values[key] = coerce(key, value, source, fields)
    given = set(values)
    for key, value in reading.implied.items():
        values.setdefault(key, value)
    config = cls(**values)
    if reading.notices is not None and notices is not None:
        notices.extend(reading.notices(config, given))
    return config


def print_notices(lines: list[str]) -> None:
    """Each notice as one line on stderr, from the first process only (a launcher starts several)."""
    if os.environ.get("RANK", "0") == "0":
        for line in lines:
            print(f"r1kit: {line}", file=sys.stderr)


def load_config(cls: type, validate_fn=None, yaml_path: str | Path | None = None,
                overrides: dict[str, Any] | None = None):
    """A config of dataclass `cls`: the YAML file first, then overrides (from the command line) on top,
    both read the same way (`build_dataclass`), then its checks (`validate_fn`, or the groups' own
    `validate`); unknown keys and bad values are a ConfigError. Once the config is valid, the class's
    notices are printed (a TRL recipe: keys without effect, defaults that differ from TRL's)."""
    sources = [(str(yaml_path), read_yaml(yaml_path))] if yaml_path else []
    sources.append(("command line", overrides or {}))
    notices: list[str] = []
    config = build_dataclass(cls, sources, notices)
    (validate_fn or cls.validate)(config)
    print_notices(notices)
    return config


def need(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok: the one-line checks config validators are made of."""
    if not ok:
        raise ConfigError(message)


def need_choice(name: str, value: Any, choices) -> None:
    """Raise ConfigError unless `value` is one of `choices` (a table), naming the option and the choices."""
    need(value in choices, f"{name}={value!r}: choose {', '.join(choices)}")
