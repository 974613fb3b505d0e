"""Naming rewards: the registry of built-ins (``REWARDS``, ``register_reward``), reward specs (a name,
a dotted path ``my_pkg.rewards.fn``, or ``path/to/file.py:fn``), TRL's calling convention
(``fn(completions, **kwargs)`` with prompts, completion ids and dataset columns by keyword), and options
such as the target language bound to the rewards that take them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib
import importlib.util
import inspect
import os
import sys
import zlib
from dataclasses import dataclass, field
from typing import Callable

RewardFn = Callable[[list[str], list[str]], list[float]]


REWARDS: dict[str, RewardFn] = {}


def register_reward(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator adding a reward function to ``REWARDS`` under ``name``.

    Raises ValueError if ``name`` is already registered, so a user reward can
    never silently shadow a built-in one.
    """

    def decorator(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = fn
        return fn

    return decorator


# The reward names of TRL's `trl grpo` script and of open-r1's recipes (their registries), with what each
# names: (whose, the function, whether it is a factory that makes a reward from arguments). A name r1kit
# does not register runs theirs when it can be imported; a name that is also r1kit's runs r1kit's reward,
# and loading a config that names it says so (`reward_name_notice`).
FOREIGN_REWARDS: dict[str, tuple[str, str, bool]] = {
    "accuracy_reward": ("TRL", "trl.rewards.accuracy_reward", False),
    "reasoning_accuracy_reward": ("TRL", "trl.rewards.reasoning_accuracy_reward", False),
    "think_format_reward": ("TRL", "trl.rewards.think_format_reward", False),
    "get_soft_overlong_punishment": ("TRL", "trl.rewards.get_soft_overlong_punishment", True),
    "accuracy": ("open-r1", "open_r1.rewards.accuracy_reward", False),
    "format": ("open-r1", "open_r1.rewards.format_reward", False),
    "tag_count": ("open-r1", "open_r1.rewards.tag_count_reward", False),
    "reasoning_steps": ("open-r1", "open_r1.rewards.reasoning_steps_reward", False),
    "length": ("open-r1", "open_r1.rewards.len_reward", False),
    "cosine": ("open-r1", "open_r1.rewards.get_cosine_scaled_reward", True),
    "repetition_penalty": ("open-r1", "open_r1.rewards.get_repetition_penalty_reward", True),
    "code": ("open-r1", "open_r1.rewards.code_reward", False),
    "binary_code": ("open-r1", "open_r1.rewards.binary_code_reward", False),
    "ioi_code": ("open-r1", "open_r1.rewards.ioi_code_reward", False),
    "cf_code": ("open-r1", "open_r1.rewards.cf_code_reward", False),
    "code_format": ("open-r1", "open_r1.rewards.get_code_format_reward", True),
    "soft_overlong_punishment": ("open-r1", "open_r1.rewards.get_soft_overlong_punishment", True),
}


def reward_name_notice(names: list) -> str | None:
    """One line saying which reward runs for names that are both r1kit's and TRL's or open-r1's; None
    when there are none."""
    shared = [n for n in names if isinstance(n, str) and n in REWARDS and n in FOREIGN_REWARDS]
    if not shared:
        return None
    theirs = ", ".join(f"{FOREIGN_REWARDS[n][0]}'s {FOREIGN_REWARDS[n][1].rsplit('.', 1)[1]}" for n in shared)
    return (f"reward_funcs: {', '.join(shared)} run r1kit's rewards of these names (r1kit.rewards.REWARDS), not "
            f"{theirs}, which score differently (docs/trl.md#rewards); to run theirs, name the function: "
            f"{FOREIGN_REWARDS[shared[0]][1]} or path/to/rewards.py:{FOREIGN_REWARDS[shared[0]][1].rsplit('.', 1)[1]}")


def _foreign_reward(spec: str) -> RewardFn:
    """TRL's or open-r1's reward of that name, imported; ValueError saying how to get it otherwise."""
    whose, path, factory = FOREIGN_REWARDS[spec]
    if factory:
        raise ValueError(f"reward {spec!r} is {whose}'s {path}, which makes a reward from its arguments: call it in "
                         f"a file of yours and name the result (path/to/file.py:name)")
    try:
        return load_reward_spec(path)
    except ValueError as e:
        raise ValueError(f"reward {spec!r} is {whose}'s {path}, which cannot be imported here ({e}); install "
                         f"{'trl' if whose == 'TRL' else 'open-r1'}, or name the function by file: "
                         f"path/to/rewards.py:{path.rsplit('.', 1)[1]}") from None


@functools.lru_cache(maxsize=None)
def load_reward_spec(spec: str) -> RewardFn:
    """The function a reward spec names: a registered name, a dotted path (``my_pkg.rewards.fn``) or
    ``path/to/file.py:fn``; ValueError (one line) otherwise.

    Cached, so a spec always gives the same function object: the reward worker knows its functions by
    identity, and a file loaded afresh on every call would fork a new worker each time.
    """
    if spec in REWARDS:
        return REWARDS[spec]
    if spec in FOREIGN_REWARDS:
        return _foreign_reward(spec)
    if ":" in spec and spec.rsplit(":", 1)[0].endswith(".py"):
        file, name = spec.rsplit(":", 1)
        path = os.path.abspath(file)
        if not os.path.isfile(path):
            raise ValueError(f"reward {spec!r}: {file}: no such file")
        module_name = f"r1kit_user_rewards_{zlib.crc32(path.encode()):08x}"
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - the user's file; reported in one line
            raise ValueError(f"reward {spec!r}: {file} failed to import ({type(e).__name__}: {e})") from None
    elif "." in spec and all(part.isidentifier() for part in spec.split(".")):
        module_path, name = spec.rsplit(".", 1)
        if os.getcwd() not in sys.path and "" not in sys.path:
            # the `r1kit` console script, unlike `python -m`, does not put the working directory on the path
            sys.path.append(os.getcwd())
        try:
            module = importlib.import_module(module_path)
        except Exception as e:  # noqa: BLE001 - ImportError or an error inside the user's module
            raise ValueError(f"reward {spec!r}: cannot import {module_path} ({type(e).__name__}: {e})") from None
    else:
        raise ValueError(f"unknown reward {spec!r}; known rewards: {', '.join(sorted(REWARDS))} "
                         f"(or a dotted path my_pkg.module.fn, or path/to/file.py:fn)")
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"reward {spec!r}: {module.__name__ if ':' not in spec else file} has no function {name!r}")
    return fn


def resolve_rewards(reward_funcs: list[str] | list[Callable]) -> list[tuple[str, RewardFn]]:
    """Turn names, reward specs and callables into ``(name, fn)`` pairs with unique names.

    A registered reward is named by its registry name; one given by a dotted path or a file, like a
    callable, by its ``__name__`` (as TRL names rewards in its logs).
    """
    resolved: list[tuple[str, RewardFn]] = []
    for item in reward_funcs:
        if isinstance(item, str):
            fn = load_reward_spec(item)
            resolved.append((item if item in REWARDS else getattr(fn, "__name__", item), fn))
        elif callable(item):
            resolved.append((getattr(item, "__name__", repr(item)), item))
        else:
            raise ValueError(f"reward must be a name or a callable, got {type(item).__name__}")
    names = [name for name, _ in resolved]
    # Scores are reported per name, so a repeat would silently overwrite one.
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate reward names: {duplicates}")
    return resolved


def is_trl_style(fn: RewardFn) -> bool:
    """Whether a reward takes TRL's calling convention (everything by keyword) rather than r1kit's
    ``fn(completions, answers)``.

    Decided from the signature: a ``**kwargs`` parameter, or a parameter named after one of TRL's
    keywords (``prompts``, ``completion_ids``) or anything but ``answers`` after ``completions``, makes it
    TRL-style; two positional parameters otherwise (``lambda c, a: ...``) are r1kit's.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False  # a builtin without a signature: called the r1kit way
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    names = list(params)
    if "prompts" in names or "completion_ids" in names:
        return True
    return bool(names) and names[0] == "completions" and len(names) > 1 and names[1] != "answers"


@dataclass
class RewardLog:
    """What TRL-style rewards logged during calls, through the ``log_metric(name, value)`` and
    ``log_extra(column, values)`` keywords TRL gives them: scalar metrics (averaged into the step's
    metrics) and extra columns (one value per completion, kept with each sample)."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    columns: dict[str, list] = field(default_factory=dict)

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(str(name), []).append(float(value))

    def log_extra(self, column: str, values: list) -> None:
        self.columns.setdefault(str(column), []).extend(values)

    def merge(self, other: "RewardLog | None") -> None:
        for name, values in (other.metrics.items() if other else ()):
            self.metrics.setdefault(name, []).extend(values)
        for column, values in (other.columns.items() if other else ()):
            self.columns.setdefault(column, []).extend(values)


def _trl_kwargs(fn: RewardFn, answers: list[str], extra: dict[str, list], shared: dict, log: RewardLog) -> dict:
    """The keywords a TRL-style reward gets, as TRL's GRPOTrainer gives them: prompts, completion_ids, every
    dataset column (and r1kit's ``answers``), ``trainer_state``, ``log_extra`` and ``log_metric``; only those
    it names unless it takes ``**kwargs``. ``completions_ids``, the spelling of TRL's documentation examples,
    goes to a reward that names it."""
    kwargs = {"answers": answers, **{k: v for k, v in extra.items() if k != "completions"}, **shared,
              "log_extra": log.log_extra, "log_metric": log.log_metric}
    params = inspect.signature(fn).parameters
    if "completions_ids" in params and "completion_ids" in kwargs:
        kwargs["completions_ids"] = kwargs["completion_ids"]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _awaited(result: object) -> object:
    """An async reward's scores: its coroutine run to the end (in a thread when this thread already runs an
    event loop, as in a notebook); any other result as it is."""
    if not inspect.isawaitable(result):
        return result

    async def wait():
        return await result

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()


def invoke_reward(fn: RewardFn, completions: list[str], answers: list[str], extra: dict[str, list] | None,
                  shared: dict | None = None, log: RewardLog | None = None) -> object:
    """Call a reward the way it expects: r1kit's ``fn(completions, answers)`` or TRL's keywords (``extra``:
    one value per completion; ``shared``: the same for all, e.g. ``trainer_state``; ``log`` collects what it
    logs). An ``async def`` reward is awaited.

    A TRL-style reward on a conversational batch (prompts given as chat messages) gets each completion
    as ``[{"role": "assistant", "content": text}]``, as TRL passes them.
    """
    if not is_trl_style(fn):
        return _awaited(fn(completions, answers))
    extra = extra or {}
    prompts = extra.get("prompts")
    if prompts and isinstance(prompts[0], list):
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    kwargs = _trl_kwargs(fn, answers, extra, shared or {}, log if log is not None else RewardLog())
    return _awaited(fn(completions=completions, **kwargs))


def extra_rows(extra: dict[str, list] | None, i: int) -> dict[str, list] | None:
    """The keyword data of sample i alone (for re-running a reward one sample at a time)."""
    return None if extra is None else {k: v[i:i + 1] for k, v in extra.items()}


def bind_reward_options(names: list[str] | list[Callable], **options) -> list[str | Callable]:
    """Each reward with the keyword ``options`` its signature accepts bound, for ``score_completions``.

    A bound reward is a ``functools.partial`` whose ``__name__`` is the registry
    name, so its scores are reported under that name. A reward that accepts none
    of the options is returned as it was given (the name itself), and options a
    reward does not accept are not passed to it: ``language`` reaches only
    ``language_consistency``. Callables are bound the same way and keep their
    ``__name__``. Raises ValueError for an unknown name, as ``score_completions`` does.
    """
    bound_rewards: list[str | Callable] = []
    for name, fn in zip(names, (fn for _, fn in resolve_rewards(names))):
        params = inspect.signature(fn).parameters
        accepted = {k: v for k, v in options.items() if k in params and k not in ("completions", "answers")}
        if not accepted:
            bound_rewards.append(name)
            continue
        bound = functools.partial(fn, **accepted)
        bound.__name__ = name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))
        bound_rewards.append(bound)
    return bound_rewards
