"""Naming rewards: the registry of built-ins (``REWARDS``, ``register_reward``), reward specs (a name,
a dotted path ``my_pkg.rewards.fn``, or ``path/to/file.py:fn``), TRL's calling convention
(``fn(completions, **kwargs)`` with prompts, completion ids and dataset columns by keyword), and options
such as the target language bound to the rewards that take them."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
import zlib
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


@functools.lru_cache(maxsize=None)
def load_reward_spec(spec: str) -> RewardFn:
    """The function a reward spec names: a registered name, a dotted path (``my_pkg.rewards.fn``) or
    ``path/to/file.py:fn``; ValueError (one line) otherwise.

    Cached, so a spec always gives the same function object: the reward worker knows its functions by
    identity, and a file loaded afresh on every call would fork a new worker each time.
    """
    if spec in REWARDS:
        return REWARDS[spec]
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


def _trl_kwargs(fn: RewardFn, answers: list[str], extra: dict[str, list]) -> dict[str, list]:
    """The keywords a TRL-style reward gets: prompts, completion_ids and every column (and ``answers``),
    only those it names unless it takes ``**kwargs``."""
    kwargs = {"answers": answers, **{k: v for k, v in extra.items() if k != "completions"}}
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def invoke_reward(fn: RewardFn, completions: list[str], answers: list[str], extra: dict[str, list] | None) -> object:
    """Call a reward the way it expects: r1kit's ``fn(completions, answers)`` or TRL's keywords.

    A TRL-style reward on a conversational batch (prompts given as chat messages) gets each completion
    as ``[{"role": "assistant", "content": text}]``, as TRL passes them.
    """
    if not is_trl_style(fn):
        return fn(completions, answers)
    extra = extra or {}
    prompts = extra.get("prompts")
    if prompts and isinstance(prompts[0], list):
        completions = [[{"role": "assistant", "content": c}] for c in completions]
    return fn(completions=completions, **_trl_kwargs(fn, answers, extra))


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
