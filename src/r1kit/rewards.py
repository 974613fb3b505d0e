"""Rule-based rewards for GRPO training.

A reward is a plain function ``fn(completions, answers) -> list[float]`` that
scores a whole batch at once; ``completions[i]`` is judged against
``answers[i]``. Completions already start with whatever the prompt prefilled
(typically ``"<think>"``), so the format checks look at the completion alone.

Design decisions:

* Rewards live in a module-level registry (``REWARDS``) filled by the
  ``register_reward`` decorator. Config files can then name rewards by string,
  and users add their own without subclassing anything.
* Answer extraction and matching (``extract_answer``, ``normalize_number``,
  ``answers_match``) live in ``r1kit.answers`` and are re-exported here.
  Matching never raises: a grader crash costs one sample its reward, not a run.
  A *user* reward that raises or returns garbage is a bug. ``score_completions``
  either fails loudly, naming the reward and the sample (policy "abort", the
  library default), or scores that sample 0.0 and reports it (policy "zero",
  the training default, so one odd sample does not end a long run).
* math_verify's alarms cannot stop code that hangs inside C (sympy, regex, gmpy), and a
  thread cannot be interrupted at all, so a time limit (``timeout`` of
  ``score_completions``) runs the rewards in a forked worker process that is
  killed and replaced when a call overruns. Fork, not spawn: rewards
  registered or defined in the parent need no pickling or importing. The
  worker stays up between calls, so the normal case costs one pipe round trip
  per reward and batch. On a failure the reward is re-run one sample at a
  time, so only the samples that fail on their own lose their score, and the
  scores do not depend on timing unless a reward's scores depend on the batch
  as a whole.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import importlib.util
import inspect
import math
import multiprocessing
import numbers
import os
import random
import re
import signal
import sys
import threading
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .answers import (  # noqa: F401 - re-exported: answer extraction and matching used to live here
    ANSWER_CLOSE, ANSWER_OPEN, MATH_VERIFY_TIMEOUT_S, _is_final_number, answers_match, extract_answer, normalize_number)
from .errors import RewardError  # noqa: F401 - re-exported: its old home
from .readable import DEFAULT_SPECIAL_TOKEN, final_answer, language_consistency, parse_readable, split_reasoning
from .templates import R1_ZERO_TEMPLATE

RewardFn = Callable[[list[str], list[str]], list[float]]

REWARDS: dict[str, RewardFn] = {}

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)


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


# --------------------------------------------------------------------------
# Built-in rewards
# --------------------------------------------------------------------------


def _is_well_formed(text: str) -> bool:
    """Exactly ``<think>..</think> <answer>..</answer>`` with only whitespace around."""
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    positions = [text.index(tag) for tag in _TAGS]
    if positions != sorted(positions):
        return False
    think_close_end = positions[1] + len(THINK_CLOSE)
    answer_close_end = positions[3] + len(ANSWER_CLOSE)
    return (
        text[: positions[0]].strip() == ""
        and text[think_close_end : positions[2]].strip() == ""
        and text[answer_close_end:].strip() == ""
    )


# The template's example contents, read from the verbatim R1-Zero template so there is one source:
# "i.e., <think> reasoning process here </think> <answer> answer here </answer>".
_EXAMPLE_RE = re.compile(r"i\.e\., <think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>", re.S)


def _canonical(text: str) -> str:
    """Lower case, every run of characters other than letters and digits one space: the form in which
    "Reasoning process here.", " reasoning   process here " and "**answer here**" are the same text."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


_m = _EXAMPLE_RE.search(R1_ZERO_TEMPLATE)
TEMPLATE_EXAMPLES: tuple[str, ...] = tuple(_canonical(_m.group(k)) for k in ("think", "answer"))  # canonical form
del _m
# Words a block may be made of and still be the example: the examples' own words plus the fillers and
# near-synonyms that policies were seen to swap in ("reason process here", "<think> here </think>",
# "Your thinking process here").
_EXAMPLE_WORDS = frozenset(" ".join(TEMPLATE_EXAMPLES).split()) | {
    "the", "your", "my", "final", "reason", "think", "thinking", "thought", "thoughts"}


def is_template_example(text: str, whole: bool = True) -> bool:
    """True if ``text`` is (``whole``) or contains (not ``whole``) the template's example content.

    The examples are the think and answer contents of the R1-Zero template's own illustration,
    "reasoning process here" and "answer here", compared in ``_canonical`` form, so case, whitespace and
    punctuation do not matter. ``whole``: text made only of the examples' words and a few fillers
    (``_EXAMPLE_WORDS``: "Reasoning process:", "reason here", "here", "Your thinking process here") is
    the example too, as policies learn those variations within a few steps once the exact text pays
    nothing. Not ``whole``, the exact example must appear as whole words, so
    "the answer here is 12" contains it and "answer heres" does not. One check serves the ``format`` and
    ``tag_count`` rewards (which pay nothing for an example) and ``template_copy_rate`` (which counts
    completions that copy one).
    """
    canon = _canonical(text)
    if whole:
        return bool(canon) and all(word in _EXAMPLE_WORDS for word in canon.split())
    return any(f" {ex} " in f" {canon} " for ex in TEMPLATE_EXAMPLES)


_NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _is_real_content(text: str) -> bool:
    """Content a tag pair may be paid for: not blank (punctuation only is blank) and not the template's example."""
    return bool(_canonical(text)) and not is_template_example(text)


def _think_content(text: str) -> str | None:
    """The text between the first ``<think>`` and the first ``</think>`` after it; None without that pair."""
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE, start + len(THINK_OPEN)) if start != -1 else -1
    return None if end == -1 else text[start + len(THINK_OPEN) : end]


def copies_template(text: str) -> bool:
    """True if ``text`` contains the template's example anywhere, or its think or answer block is one
    (``is_template_example``; a blank block is no copy)."""
    if is_template_example(text, whole=False):
        return True
    return any(block is not None and is_template_example(block) for block in (_think_content(text), extract_answer(text)))


def template_copy_rate(completions: list[str]) -> float:
    """Share of ``completions`` that copy the template's example (``copies_template``; 0.0 for none).

    A run whose format credit rises with this rate is being paid for copying the prompt, not for the
    task; format and tag_count pay nothing for it, so a high rate means another reward (accuracy on a
    copied think) still pays for it. Completions with a partial copy ("answer here: 12") count too.
    """
    if not completions:
        return 0.0
    return sum(copies_template(c) for c in completions) / len(completions)


@register_reward("template_penalty")
def template_penalty_reward(completions: list[str], answers: list[str]) -> list[float]:
    """-1.0 for a completion that copies the template's example (``copies_template``), else 0.0.

    ``format`` and ``tag_count`` pay nothing for a copy, but ``accuracy`` still pays a right number
    after "<think> reasoning process here </think>", and a weak model finds that within five steps
    (measured on the embedded model, 1-digit addition). Weighted like ``accuracy``, the penalty makes
    a copied think worth no more than no answer, so the group's advantage goes to real working.
    """
    return [-1.0 if copies_template(c) else 0.0 for c in completions]


@register_reward("format")
def format_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1.0 for exactly ``<think>...</think><answer>...</answer>`` (whitespace-only gaps) with real
    content, else 0.0.

    Real content: neither block is blank or the template's example (``is_template_example``); a policy
    learns to copy "<think> reasoning process here </think> <answer> answer here </answer>" within ten
    steps when that is paid. When the gold is a plain number, the answer must be written as a number
    (``_is_final_number``, as ``accuracy`` demands), so a word in the answer block earns no format credit,
    and the think block must engage with the question by working with at least two numbers:
    "<think> calculation </think>" was the next cheapest format a policy found once the example paid
    nothing, and "<think>7</think>" (a lone guess) the one after that, in the demo at step 15.
    """
    scores = []
    for text, gold in zip(completions, answers, strict=True):
        ok = _is_well_formed(text)
        if ok:
            pred = extract_answer(text) or ""
            ok = _is_real_content(_think_content(text) or "") and _is_real_content(pred)
            numeric = normalize_number(gold) is not None
            ok = ok and (not numeric or (_is_final_number(pred) and len(_NUMBER_RE.findall(_think_content(text))) >= 2))
        scores.append(1.0 if ok else 0.0)
    return scores


def _tag_score(text: str) -> float:
    """0.25 per tag that occurs exactly once and after its predecessor.

    "Predecessor" is the nearest earlier tag in ``<think>, </think>, <answer>,
    </answer>`` that itself occurs exactly once; a missing or doubled tag is
    skipped over rather than zeroing everything after it, so ``</think>``
    followed by a proper answer block still earns 0.75 without ``<think>``.
    A think or answer block that is present but blank or the template's
    example scores 0.0 for the whole text: partial credit is for attempts.
    """
    think, answer = _think_content(text), extract_answer(text)
    if any(block is not None and not _is_real_content(block) for block in (think, answer)):
        return 0.0
    score = 0.0
    anchor_end = 0  # end of the last uniquely-occurring tag seen so far
    for tag in _TAGS:
        if text.count(tag) != 1:
            continue
        pos = text.index(tag)
        if pos >= anchor_end:
            score += 0.25
        anchor_end = pos + len(tag)
    return score


@register_reward("tag_count")
def tag_count_reward(completions: list[str], answers: list[str]) -> list[float]:
    """Partial format credit in [0, 1], so a weak model gets signal from step one; nothing for blank
    or template-example blocks (see ``_tag_score``)."""
    return [_tag_score(c) for c in completions]


@register_reward("accuracy")
def accuracy_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1.0 if the last ``<answer>`` block matches the gold answer, else 0.0."""
    scores = []
    for completion, gold in zip(completions, answers, strict=True):
        pred = extract_answer(completion)
        scores.append(1.0 if pred is not None and answers_match(pred, gold) else 0.0)
    return scores


# --------------------------------------------------------------------------
# Naming rewards
# --------------------------------------------------------------------------


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


def _resolve(reward_funcs: list[str] | list[Callable]) -> list[tuple[str, RewardFn]]:
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


def _invoke(fn: RewardFn, completions: list[str], answers: list[str], extra: dict[str, list] | None) -> object:
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


def _rows(extra: dict[str, list] | None, i: int) -> dict[str, list] | None:
    """The keyword data of sample i alone (for re-running a reward one sample at a time)."""
    return None if extra is None else {k: v[i:i + 1] for k, v in extra.items()}


# --------------------------------------------------------------------------
# The worker process that runs rewards under a time limit
# --------------------------------------------------------------------------

FAILURE_POLICIES = ("zero", "abort")


@dataclass(frozen=True)
class RewardFailure:
    """A sample that one reward could not score: ``kind`` is "timeout" or "error".

    ``index`` is the sample's position in the batch, or -1 when the call on the
    whole batch failed but every sample scored on its own.
    """

    reward: str
    index: int
    kind: str
    error: str


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: object  # multiprocessing.connection.Connection
    fns: tuple[RewardFn, ...]


_WORKER: _Worker | None = None
# Every function the worker must know; a replacement worker is forked with all of them.
_WORKER_FNS: tuple[RewardFn, ...] = ()
_ATEXIT_REGISTERED = False


def _die_with_parent() -> None:
    """Have Linux kill the worker when its parent dies, even while it hangs in C code."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere the worker still exits when the pipe closes, unless it is hung


def _input_seed(completions: list[str], answers: list[str]) -> int:
    """A seed that depends only on the batch, so a reward that draws random numbers is repeatable."""
    crc = 0
    for text in (*completions, "\0", *answers):
        crc = zlib.crc32(text.encode("utf-8", "surrogatepass") + b"\0", crc)
    return crc


def _worker_main(conn, parent_end, fns: tuple[RewardFn, ...], parent_pid: int) -> None:
    """Worker loop: receive (function index, completions, answers, keyword data), send back the outcome."""
    parent_end.close()  # otherwise the worker would never see EOF when the parent goes away
    # Ctrl-C reaches the whole process group; stopping is the trainer's decision, which kills us with SIGKILL
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent_pid:
        return  # the parent died before prctl took effect
    while True:
        try:
            index, completions, answers, extra = conn.recv()
        except (EOFError, OSError):
            return
        seed = _input_seed(completions, answers)
        random.seed(seed)
        np.random.seed(seed)
        try:
            scores = _invoke(fns[index], completions, answers, extra)
            reply = ("ok", list(scores)) if isinstance(scores, (list, tuple)) else ("type", type(scores).__name__)
        except Exception as e:  # noqa: BLE001 - reported to the parent, which applies the failure policy
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except Exception as e:  # noqa: BLE001 - e.g. scores that cannot be pickled
            conn.send(("error", f"scores could not be sent back ({type(e).__name__}: {e})"))


def _start_worker(fns: tuple[RewardFn, ...]) -> _Worker:
    global _ATEXIT_REGISTERED
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    # tokenizers prints a warning at every fork once its thread pool has run, unless this is set
    os.environ["TOKENIZERS_PARALLELISM"] = saved or "false"
    try:
        process = ctx.Process(target=_worker_main, args=(child_end, parent_end, fns, os.getpid()),
                              name="r1kit-reward-worker", daemon=True)
        process.start()
    finally:
        if saved is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
    child_end.close()
    if not _ATEXIT_REGISTERED:
        # registered after multiprocessing's own exit hook, so it runs first: that hook would wait
        # for a worker that ignores SIGTERM
        atexit.register(close_reward_worker)
        _ATEXIT_REGISTERED = True
    return _Worker(process, parent_end, fns)


def close_reward_worker() -> None:
    """Stop the reward worker process, if any; the next call with a time limit starts a new one."""
    global _WORKER
    worker, _WORKER = _WORKER, None
    if worker is None:
        return
    worker.conn.close()
    worker.process.kill()
    worker.process.join(5)


def start_reward_worker(reward_funcs: list[str] | list[Callable]) -> None:
    """Fork the reward worker now, knowing these rewards (a fork is cheapest before a model is loaded)."""
    global _WORKER_FNS, _WORKER
    fns = [fn for item in reward_funcs for _, fn in _resolve([item])]  # repeats allowed here
    missing = tuple(dict.fromkeys(fn for fn in fns if fn not in _WORKER_FNS))
    if missing or _WORKER is None or not _WORKER.process.is_alive():
        _WORKER_FNS = _WORKER_FNS + missing
        close_reward_worker()
        _WORKER = _start_worker(_WORKER_FNS)


def _call_in_worker(fn: RewardFn, completions: list[str], answers: list[str], timeout: float,
                    extra: dict[str, list] | None = None) -> tuple[str, object]:
    """One reward call in the worker, waiting at most `timeout` seconds; a worker that overran is killed."""
    if _WORKER is None or fn not in _WORKER.fns or not _WORKER.process.is_alive():
        start_reward_worker([fn])
    worker = _WORKER
    try:
        worker.conn.send((worker.fns.index(fn), completions, answers, extra))
        if worker.conn.poll(timeout):
            return worker.conn.recv()
        outcome = ("timeout", None)
    except (EOFError, OSError):  # killed, crashed in C code, out of memory
        worker.process.join(1)
        outcome = ("error", f"reward worker process died (exit code {worker.process.exitcode})")
    except BaseException:
        close_reward_worker()  # e.g. Ctrl-C while waiting: a reply may still be in flight
        raise
    close_reward_worker()
    return outcome


def _call(fn: RewardFn, completions: list[str], answers: list[str],
          timeout: float, extra: dict[str, list] | None = None) -> tuple[str, object, Exception | None]:
    """One reward call; never raises. Outcomes: ("ok", list of raw scores), ("type", type name of
    what came back instead of a list), ("error", message) or ("timeout", None), plus the exception
    object when the call ran in this process."""
    if timeout > 0:
        return (*_call_in_worker(fn, list(completions), list(answers), timeout, extra), None)
    try:
        scores = _invoke(fn, list(completions), list(answers), extra)
    except Exception as e:  # noqa: BLE001 - the caller applies the failure policy
        return "error", f"{type(e).__name__}: {e}", e
    if not isinstance(scores, (list, tuple)):
        return "type", type(scores).__name__, None
    return "ok", scores, None


def _valid(value: object) -> bool:
    """A finite real number (an int too large for a float is not)."""
    try:
        return isinstance(value, numbers.Real) and math.isfinite(float(value))
    except (OverflowError, ValueError, TypeError):
        return False


def _usable(value: object, allow_none: bool = True) -> bool:
    """A valid score, or (for a TRL-style reward) None: "this reward does not apply to this sample".

    Only TRL-style rewards may return None: r1kit's contract is one float per completion, and a None
    from such a reward is more likely a bug than a deliberate "not applicable"."""
    return (allow_none and value is None) or _valid(value)


def _score(value: object) -> float:
    """A usable value as a float; None becomes NaN, which score_completions leaves out of the total."""
    return math.nan if value is None else float(value)


def _describe(status: str, value: object, n: int, timeout: float, allow_none: bool = True) -> str:
    """Why a call did not give n valid scores."""
    if status == "timeout":
        return f"timed out after {timeout:g} s"
    if status == "type":
        return f"returned {value}, expected a list of floats"
    if status == "ok" and len(value) != n:
        return f"returned {len(value)} scores for {n} completions"
    if status == "ok":
        return f"returned invalid value {next(v for v in value if not _usable(v, allow_none))!r}"
    return str(value)


# --------------------------------------------------------------------------
# Combining rewards
# --------------------------------------------------------------------------


def _score_each(name: str, fn: RewardFn, completions: list[str], answers: list[str], timeout: float,
                on_failure: str, batch_error: str, batch_kind: str,
                batch_exc: Exception | None,
                extra: dict[str, list] | None = None) -> tuple[list[float], list[RewardFailure]]:
    """After a failed batch call: score one sample at a time; only the samples that fail alone fail."""
    scores, failures = [], []
    allow_none = is_trl_style(fn)
    for i, (completion, gold) in enumerate(zip(completions, answers)):
        status, value, exc = _call(fn, [completion], [gold], timeout, _rows(extra, i))
        if status == "ok" and len(value) == 1 and _usable(value[0], allow_none):
            scores.append(_score(value[0]))
            continue
        message = _describe(status, value, 1, timeout, allow_none)
        if on_failure == "abort":
            err = RewardError(f"reward '{name}' failed on sample {i}: {message}; completion={completion[:200]!r}")
            raise err from exc
        scores.append(0.0)
        failures.append(RewardFailure(name, i, "timeout" if status == "timeout" else "error", message))
    if not failures:
        # e.g. a reward that mishandles batch size, or a batch too slow for the limit as a whole
        if on_failure == "abort":
            err = RewardError(f"reward '{name}' failed on the batch but on no single sample: {batch_error}")
            raise err from batch_exc
        failures.append(RewardFailure(name, -1, batch_kind, batch_error))
    return scores, failures


def _score_reward(name: str, fn: RewardFn, completions: list[str], answers: list[str], timeout: float,
                  on_failure: str, extra: dict[str, list] | None = None) -> tuple[list[float], list[RewardFailure]]:
    """One reward on the batch: its scores (0.0 where it failed, policy "zero"; NaN where it returned
    None) and its failures."""
    n = len(completions)
    allow_none = is_trl_style(fn)
    status, value, exc = _call(fn, completions, answers, timeout, extra)
    if status == "ok" and len(value) == n:
        scores, failures = [], []
        for i, v in enumerate(value):
            if _usable(v, allow_none):
                scores.append(_score(v))
                continue
            if on_failure == "abort":
                raise RewardError(f"reward '{name}' returned invalid value {v!r} on sample {i}; "
                                  f"completion={completions[i][:200]!r}")
            scores.append(0.0)
            failures.append(RewardFailure(name, i, "error", f"returned invalid value {v!r}"))
        return scores, failures
    message = _describe(status, value, n, timeout, allow_none)
    if on_failure == "abort" and status in ("ok", "type"):
        raise RewardError(f"reward '{name}' {message}")
    return _score_each(name, fn, completions, answers, timeout, on_failure, message,
                       "timeout" if status == "timeout" else "error", exc, extra)


def score_completions(
    reward_funcs: list[str] | list[Callable],
    reward_weights: list[float] | None,
    completions: list[str],
    answers: list[str],
    *,
    timeout: float = 0.0,
    on_failure: str = "abort",
    prompts: list | None = None,
    completion_ids: list[list[int]] | None = None,
    columns: dict[str, list] | None = None,
) -> tuple[list[float], dict[str, list[float]], list[RewardFailure]]:
    """Score a batch with several rewards and combine them, under a time limit and a failure policy.

    ``reward_funcs`` holds registered names or callables (named by
    ``__name__``). Weights default to 1.0 each. Returns the weighted total per
    completion, ``{name: per-completion scores}`` and the failures.

    ``timeout`` > 0 runs each reward call in a forked worker process for at
    most that many seconds (0: in this process, no limit). A call that raises,
    overruns, or returns something other than one finite number per completion
    is re-run one sample at a time. ``on_failure="abort"`` raises RewardError
    naming the reward and the first failing sample; ``"zero"`` scores each
    failing sample 0.0 for that reward and reports it in the failures.

    TRL-style rewards (see ``is_trl_style``) get ``completions`` and, by
    keyword, ``prompts`` (text, or chat messages for a conversational
    dataset), ``completion_ids`` and every dataset column in ``columns``
    (``{column: one value per completion}``), each only when given. A
    TRL-style reward may return None for a sample: its score there is NaN
    and, as in TRL, it is left out of that sample's total.

    Raises ValueError for an unknown name, duplicate names, a weights list of
    the wrong length, mismatched batch lengths or an unknown policy.
    """
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
    extra = {k: list(v) for k, v in (columns or {}).items()}
    extra.update({k: list(v) for k, v in (("prompts", prompts), ("completion_ids", completion_ids)) if v is not None})
    for key, values in extra.items():
        if len(values) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(values)} values of {key!r}")
    if on_failure not in FAILURE_POLICIES:
        raise ValueError(f"on_failure must be one of {FAILURE_POLICIES}, got {on_failure!r}")
    resolved = _resolve(reward_funcs)
    if reward_weights is None:
        weights = [1.0] * len(resolved)
    else:
        if len(reward_weights) != len(resolved):
            raise ValueError(
                f"got {len(reward_weights)} reward weights for {len(resolved)} reward functions"
            )
        weights = [float(w) for w in reward_weights]

    per_reward: dict[str, list[float]] = {}
    failures: list[RewardFailure] = []
    totals = [0.0] * len(completions)
    for (name, fn), weight in zip(resolved, weights):
        if not completions:
            per_reward[name] = []
            continue
        scores, failed = _score_reward(name, fn, completions, answers, timeout, on_failure, extra)
        per_reward[name] = scores
        failures.extend(failed)
        for i, score in enumerate(scores):
            if not math.isnan(score):  # None: this reward does not apply to this sample
                totals[i] += weight * score
    return totals, per_reward, failures


def compute_rewards(
    reward_funcs: list[str] | list[Callable],
    reward_weights: list[float] | None,
    completions: list[str],
    answers: list[str],
    *,
    timeout: float = 0.0,
    on_failure: str = "abort",
) -> tuple[list[float], dict[str, list[float]]]:
    """Score a batch with several rewards and combine them: ``score_completions`` without the failures.

    By default (no time limit, policy "abort") a reward that raises, returns a
    wrong-length list or a non-finite / non-number score raises RewardError
    naming the reward and the first failing sample.
    """
    totals, per_reward, _ = score_completions(reward_funcs, reward_weights, completions, answers,
                                              timeout=timeout, on_failure=on_failure)
    return totals, per_reward


# --------------------------------------------------------------------------
# The R1 readable format and language consistency (r1kit.readable)
# --------------------------------------------------------------------------
# These rewards take keyword options (the target language, the separator token). score_completions calls
# a reward with (completions, answers) only, so a run binds its options first with bind_reward_options.


@register_reward("language_consistency")
def language_consistency_reward(completions: list[str], answers: list[str], language: str = "en",
                                special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """Share of target-language words in the chain of thought only (the R1 paper's language reward).

    The chain of thought is ``split_reasoning(completion)[0]``: the reasoning of
    the readable format or the ``<think>`` content. A completion without one
    (plain text, a truncated ``<think>``) scores 0.0, as does a chain of thought
    with no language-bearing word (see ``r1kit.readable``).
    """
    return [language_consistency(split_reasoning(c, special_token)[0], language) for c in completions]


@register_reward("readable_format")
def readable_format_reward(completions: list[str], answers: list[str],
                           special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """1.0 for exactly ``TOK reasoning TOK summary`` with both parts non-empty, else 0.0."""
    return [1.0 if parse_readable(c, special_token) is not None else 0.0 for c in completions]


@register_reward("readable_accuracy")
def readable_accuracy_reward(completions: list[str], answers: list[str],
                             special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """1.0 if the answer stated in the final part (the summary) matches the gold, else 0.0.

    The answer is ``r1kit.readable.final_answer``; matching is ``answers_match``,
    so a numeric gold needs a final number, as for ``accuracy``.
    """
    scores = []
    for completion, gold in zip(completions, answers, strict=True):
        pred = final_answer(completion, special_token)
        scores.append(1.0 if pred is not None and answers_match(pred, gold) else 0.0)
    return scores


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
    for name, fn in zip(names, (fn for _, fn in _resolve(names))):
        params = inspect.signature(fn).parameters
        accepted = {k: v for k, v in options.items() if k in params and k not in ("completions", "answers")}
        if not accepted:
            bound_rewards.append(name)
            continue
        bound = functools.partial(fn, **accepted)
        bound.__name__ = name if isinstance(name, str) else getattr(fn, "__name__", repr(fn))
        bound_rewards.append(bound)
    return bound_rewards
