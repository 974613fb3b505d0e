"""How a batch is scored: every reward called (in the worker under a time limit, or in this process), its
scores checked (one finite number per completion; None from a TRL-style reward means "does not apply"),
and a failure policy applied: "abort" raises RewardError naming the reward and the first failing sample,
"zero" scores that sample 0 and reports it. After a failed batch call the reward is re-run one sample at
a time, so only the samples that fail on their own lose their score. Matching never raises: a grader
crash costs one sample its reward, not a run."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

from r1kit.core.errors import RewardError
from r1kit.rewards.options import FAILURE_POLICIES
from r1kit.rewards.registry import RewardFn, RewardLog, extra_rows, invoke_reward, is_trl_style, resolve_rewards
from r1kit.rewards.worker import call_in_worker


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


@dataclass(frozen=True)
class _Call:
    """How a reward is called: its time limit, the keyword data of the batch (``extra``: one value per
    completion; ``shared``: the same for all) and where what it logs goes (kept for calls that succeed)."""

    timeout: float
    extra: dict[str, list] | None = None
    shared: dict | None = None
    log: RewardLog | None = None


def _call(fn: RewardFn, completions: list[str], answers: list[str], how: _Call,
          extra: dict[str, list] | None) -> tuple[str, object, Exception | None]:
    """One reward call; never raises. Outcomes: ("ok", list of raw scores), ("type", type name of
    what came back instead of a list), ("error", message) or ("timeout", None), plus the exception
    object when the call ran in this process. What an ok call logged is added to ``how.log``."""
    if how.timeout > 0:
        status, value, logged = call_in_worker(fn, list(completions), list(answers), how.timeout, extra, how.shared)
        exc = None
    else:
        logged = RewardLog()
        try:
            scores = invoke_reward(fn, list(completions), list(answers), extra, how.shared, logged)
        except Exception as e:  # noqa: BLE001 - the caller applies the failure policy
            return "error", f"{type(e).__name__}: {e}", e
        status, value, exc = ("ok", scores, None) if isinstance(scores, (list, tuple)) else \
            ("type", type(scores).__name__, None)
    if status == "ok" and how.log is not None:
        how.log.merge(logged)
    return status, value, exc


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


def _score_each(name: str, fn: RewardFn, completions: list[str], answers: list[str], how: _Call,
                on_failure: str, batch_error: str, batch_kind: str,
                batch_exc: Exception | None) -> tuple[list[float], list[RewardFailure]]:
    """After a failed batch call: score one sample at a time; only the samples that fail alone fail."""
    scores, failures = [], []
    allow_none = is_trl_style(fn)
    for i, (completion, gold) in enumerate(zip(completions, answers)):
        status, value, exc = _call(fn, [completion], [gold], how, extra_rows(how.extra, i))
        if status == "ok" and len(value) == 1 and _usable(value[0], allow_none):
            scores.append(_score(value[0]))
            continue
        message = _describe(status, value, 1, how.timeout, allow_none)
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


def _score_reward(name: str, fn: RewardFn, completions: list[str], answers: list[str], how: _Call,
                  on_failure: str) -> tuple[list[float], list[RewardFailure]]:
    """One reward on the batch: its scores (0.0 where it failed, policy "zero"; NaN where it returned
    None) and its failures."""
    n = len(completions)
    allow_none = is_trl_style(fn)
    status, value, exc = _call(fn, completions, answers, how, how.extra)
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
    message = _describe(status, value, n, how.timeout, allow_none)
    if on_failure == "abort" and status in ("ok", "type"):
        raise RewardError(f"reward '{name}' {message}")
    return _score_each(name, fn, completions, answers, how, on_failure, message,
                       "timeout" if status == "timeout" else "error", exc)


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
    trainer_state: object = None,
    log: RewardLog | None = None,
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
    (``{column: one value per completion}``), each only when given, plus
    ``trainer_state`` and the ``log_metric`` / ``log_extra`` callables, whose
    entries go to ``log``. A TRL-style reward may return None for a sample:
    its score there is NaN and, as in TRL, it is left out of that sample's
    total. ``async def`` rewards are awaited.

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
    resolved = resolve_rewards(reward_funcs)
    how = _Call(timeout, extra, {"trainer_state": trainer_state}, log)
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
        scores, failed = _score_reward(name, fn, completions, answers, how, on_failure)
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
