"""Scoring a GRPO batch: rule rewards on reasoning prompts, reward models on general prompts (R1 stage 4:
helpfulness on the summary, harmlessness on the whole response), DAPO's soft overlong penalty, and the
scores of the accuracy and format metrics."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from r1kit.algorithms.corrections import soft_overlong_penalty
from r1kit.data.problems import Problem, reward_keywords
from r1kit.rewards.readable import split_reasoning
from r1kit.rewards.scoring import RewardFailure, score_completions
from r1kit.rollout.sampling import Rollout
from r1kit.trainers.grpo.config import GRPOConfig
from r1kit.trainers.grpo.setup import GRPOSetup


@dataclass
class Scores:
    """The rewards of one rollout; row i is completion i."""

    texts: list[str]  # prefill + completion: what the rewards read
    answers: list[str]
    kinds: list[str]
    totals: list[float]  # weighted sum of the reward functions
    per_fn: dict[str, list[float]]  # each reward's scores, NaN where it does not apply
    failures: list[RewardFailure]


def score_rollout(s: GRPOSetup, batch: list[Problem], rollout: Rollout) -> Scores:
    G = s.G
    texts = [s.c.prefill + comp for comp in rollout.completions]
    answers = [e.answer for e in batch for _ in range(G)]
    kinds = [e.kind for e in batch for _ in range(G)]
    questions = [e.question for e in batch for _ in range(G)]
    ids = [r[m.bool()].tolist() for r, m in zip(rollout.completion_ids, rollout.completion_mask)]  # unpadded
    totals, per_fn, failures = score_batch(s.c, s.rewards, texts, answers, kinds, questions, s.judges, batch=batch,
                                           completion_ids=ids)
    if s.c.overlong_buffer_length > 0:  # DAPO's soft overlong punishment, by length in tokens
        penalty = [s.c.overlong_penalty_factor * p for p in
                   soft_overlong_penalty(rollout.lengths.tolist(), s.c.max_completion_length, s.c.overlong_buffer_length)]
        per_fn["soft_overlong"] = penalty
        totals = [t + p for t, p in zip(totals, penalty)]
    return Scores(texts, answers, kinds, totals, per_fn, failures)


def pick_scores(picks: list[tuple[Scores, list[int]]]) -> Scores:
    """Rows `rows` of each Scores, one after the other; failures re-indexed into the result (those of
    rows left out are dropped)."""
    out = Scores([], [], [], [], {n: [] for n in picks[0][0].per_fn}, [])
    for sc, rows in picks:
        where = {r: len(out.texts) + i for i, r in enumerate(rows)}
        for name, values in (("texts", sc.texts), ("answers", sc.answers), ("kinds", sc.kinds), ("totals", sc.totals)):
            getattr(out, name).extend(values[r] for r in rows)
        for n, v in sc.per_fn.items():
            out.per_fn[n].extend(v[r] for r in rows)
        out.failures += [dataclasses.replace(f, index=where[f.index]) for f in sc.failures if f.index in where]
    return out


def general_prompts_per_step(prompts: int, fraction: float) -> int:
    """General prompts among a process's `prompts` per step: the nearest count to the fraction, at least one,
    and at least one reasoning prompt left when there are two or more."""
    n = max(1, math.floor(prompts * fraction + 0.5))
    return min(n, prompts - 1) if prompts >= 2 else n


def nanmean_or_zero(x: torch.Tensor) -> float:
    """Mean over the rows a metric applies to (NaN marks the others); 0 when it applies to none."""
    m = x.nanmean().item()
    return m if math.isfinite(m) else 0.0


def metric_scores(names: tuple[str, ...], per_fn: dict[str, list[float]], texts: list[str], answers: list[str],
                   kinds: list[str], timeout: float) -> list[float]:
    """Scores for the accuracy/format metrics: the first of `names` that is a training reward, else the
    built-in names[0] computed here; NaN on general rows, which have no rule-checkable answer."""
    name = next((n for n in names if n in per_fn), None)
    if name is not None:
        return per_fn[name]
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    _, per, _ = score_completions([names[0]], None, [texts[i] for i in rows], [answers[i] for i in rows],
                                  timeout=timeout, on_failure="zero")
    scores = [math.nan] * len(texts)
    for i, v in zip(rows, per[names[0]]):
        scores[i] = v
    return scores


def score_batch(c: GRPOConfig, rewards_used: list, texts: list[str], answers: list[str], kinds: list[str],
                questions: list[str], judges: dict, batch: list[Problem] | None = None,
                completion_ids: list[list[int]] | None = None) -> tuple[list[float], dict[str, list[float]], list[RewardFailure]]:
    """Rewards of one batch: rule rewards for reasoning prompts; for general prompts (R1 stage 4)
    helpfulness of the summary plus harmlessness of the whole response, as reward models judge them.

    Returns the total per completion, {reward name: per-completion scores, NaN where it does not apply}
    and the rule rewards' failures (indices into the batch).
    """
    n = len(texts)
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    general = [i for i, k in enumerate(kinds) if k == "general"]
    totals = [0.0] * n
    per_fn: dict[str, list[float]] = {}
    # called even with no reasoning rows, so every process reports the same reward names
    sub_totals, sub_per, sub_failures = score_completions(
        rewards_used, c.reward_weights, [texts[i] for i in rows], [answers[i] for i in rows],
        timeout=c.reward_timeout, on_failure=c.reward_failure,
        # what TRL-style rewards read besides the completions: prompts, completion ids, dataset columns
        **(reward_keywords(batch, n // len(batch), completion_ids, rows) if batch else {}))
    for name, scores in sub_per.items():
        per_fn[name] = [math.nan] * n
        for i, v in zip(rows, scores):
            per_fn[name][i] = v
    for i, v in zip(rows, sub_totals):
        totals[i] = v
    failures = [dataclasses.replace(f, index=rows[f.index] if f.index >= 0 else -1) for f in sub_failures]
    if judges:
        prompts = [questions[i] for i in general]
        summaries = [split_reasoning(texts[i], c.special_token)[1] for i in general]
        scored = {"helpfulness": judges["helpfulness"].score(prompts, summaries) if general else [],
                  "harmlessness": judges["harmlessness"].score(prompts, [texts[i] for i in general]) if general else []}
        weights = {"helpfulness": c.helpfulness_weight, "harmlessness": c.harmlessness_weight}
        for name, scores in scored.items():
            per_fn[name] = [math.nan] * n
            for i, v in zip(general, scores):
                per_fn[name][i] = float(v)
                totals[i] += weights[name] * float(v)
    return totals, per_fn, failures
