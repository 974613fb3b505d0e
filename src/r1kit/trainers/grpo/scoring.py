"""Scoring a GRPO batch: rule rewards on reasoning prompts, reward models on general prompts (R1 stage 4:
helpfulness on the summary, harmlessness on the whole response), a process reward model on the steps of
reasoning completions (DeepSeek-R1 section 4.2's unsuccessful attempt, reproducible), DAPO's soft overlong
penalty, and the scores of the accuracy and format metrics."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
from dataclasses import dataclass, field

import torch
from transformers import TrainerState

from r1kit.algorithms.advantages import process_advantages
from r1kit.algorithms.corrections import soft_overlong_penalty
from r1kit.core.errors import RewardError
from r1kit.data.problems import Problem, reward_keywords
from r1kit.data.templates import chat_messages
from r1kit.models.process_reward_model import aggregate
from r1kit.rewards.readable import split_reasoning
from r1kit.rewards.registry import RewardLog
from r1kit.rewards.scoring import RewardFailure, score_completions
from r1kit.rewards.steps import step_ends
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
    rows: int = 0  # completions scored by the rule rewards (the reasoning rows)
    metrics: dict[str, list[float]] = field(default_factory=dict)  # what the rewards logged with log_metric
    extra: dict[str, list] = field(default_factory=dict)  # their log_extra columns, one value per row (or None)
    # a process reward model's step scores per row: (character offset in texts[i] where the step ends, the
    # step's probability of leading to the right answer); None without a process reward model
    steps: list[list[tuple[int, float]]] | None = None


def trainer_state(s: GRPOSetup, step: int) -> TrainerState:
    """The `trainer_state` TRL gives rewards (transformers' TrainerState): the step about to be taken,
    the run's length and the epoch reached, for rewards that change with training progress."""
    prompts_per_step = s.prompts_local * s.run.world
    return TrainerState(global_step=step, max_steps=s.run.o.max_steps, epoch=step * prompts_per_step /
                        max(1, len(s.reasoning)), num_train_epochs=math.ceil(s.run.o.max_steps * prompts_per_step /
                                                                             max(1, len(s.reasoning))),
                        is_world_process_zero=s.run.is_main, is_local_process_zero=s.run.is_main)


def score_rollout(s: GRPOSetup, batch: list[Problem], rollout: Rollout, step: int = 0) -> Scores:
    G, c = s.G, s.c
    texts = [c.prefill + comp for comp in rollout.completions]
    answers = [e.answer for e in batch for _ in range(G)]
    kinds = [e.kind for e in batch for _ in range(G)]
    questions = [e.question for e in batch for _ in range(G)]
    ids = [r[m.bool()].tolist() for r, m in zip(rollout.completion_ids, rollout.completion_mask)]  # unpadded
    # the prompt as TRL-style rewards get it: the messages it was rendered from, if any (completions then come
    # as messages too), else the record's own
    prompts = [chat_messages(e.question, c.template, e.messages, c.system_prompt, s.examples) or e.messages or e.question
               for e in batch]
    log = RewardLog()
    totals, per_fn, failures = score_batch(c, s.rewards, texts, answers, kinds, questions, s.judges, batch=batch,
                                           completion_ids=ids, prompts=prompts, log=log,
                                           trainer_state=trainer_state(s, step))
    if s.c.overlong_buffer_length > 0:  # DAPO's soft overlong punishment, by length in tokens
        penalty = [s.c.overlong_penalty_factor * p for p in
                   soft_overlong_penalty(rollout.lengths.tolist(), s.c.max_completion_length, s.c.overlong_buffer_length)]
        per_fn["soft_overlong"] = penalty
        totals = [t + p for t, p in zip(totals, penalty)]
    steps = None
    if "process" in s.judges:
        totals, steps = score_steps(s.c, s.judges["process"], texts, questions, kinds, totals, per_fn)
    return Scores(texts, answers, kinds, totals, per_fn, failures, sum(k != "general" for k in kinds), log.metrics,
                  log.columns, steps)


def score_steps(c: GRPOConfig, prm, texts: list[str], questions: list[str], kinds: list[str], totals: list[float],
                per_fn: dict[str, list[float]]) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """The process reward model on the steps of the reasoning rows: per_fn["prm"] gets each completion's
    score (its steps' probabilities by prm_aggregation) and, with prm_mode=outcome, the totals get
    prm_weight times it (step rewards summed into the outcome). Returns (totals, each row's steps)."""
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    ends = [step_ends(texts[i], prm.step_mode, prm.special_token) for i in rows]
    split = [[texts[i][a:b] for a, b in zip([0, *e], e)] for i, e in zip(rows, ends)]
    probs = prm.score([questions[i] for i in rows], split)
    steps: list[list[tuple[int, float]]] = [[] for _ in texts]
    per_fn["prm"] = [math.nan] * len(texts)
    per_fn["prm_min_step"] = [math.nan] * len(texts)  # the PRM's verdict: every step likely right (>= 0.5)
    totals = list(totals)
    for i, e, p in zip(rows, ends, probs):
        steps[i] = list(zip(e, p))
        per_fn["prm"][i] = aggregate(p, c.prm_aggregation)
        per_fn["prm_min_step"][i] = min(p) if p else 0.0
        if c.prm_mode == "outcome":
            totals[i] += c.prm_weight * per_fn["prm"][i]
    return totals, steps


def step_advantages(s: GRPOSetup, scores: Scores, rollout: Rollout, advantages: torch.Tensor) -> torch.Tensor:
    """The step's advantages: as given [N], or with prm_mode=steps [N, T], each token's outcome advantage plus
    prm_weight times its process advantage (algorithms.advantages.process_advantages)."""
    if scores.steps is None or s.c.prm_mode != "steps":
        return advantages
    ends = []
    for i, row in enumerate(scores.steps):
        ids = rollout.completion_ids[i][rollout.completion_mask[i].bool()].tolist()
        offset = len(scores.texts[i]) - len(rollout.completions[i])  # the prefill, which the tokens do not hold
        ends.append(token_ends(s.tokenizer, ids, [e - offset for e, _ in row]))
    process = process_advantages([[p for _, p in row] for row in scores.steps], ends, s.G,
                                 rollout.completion_mask.shape[1]).to(advantages.device)  # [N, T]
    return advantages[:, None] + s.c.prm_weight * process  # [N, T]


def token_ends(tokenizer, ids: list[int], char_ends: list[int]) -> list[int]:
    """The index of the token in which each character offset of the decoded text falls (its last character
    included), so a step's reward lands on the token that completes it; offsets past the text get the last
    token. A binary search over decoded prefixes: a few decodes per step, not one per token."""
    decoded = functools.lru_cache(maxsize=None)(lambda j: len(tokenizer.decode(ids[:j + 1], skip_special_tokens=True)))
    return [min(bisect.bisect_left(range(len(ids)), e, key=decoded), len(ids) - 1) for e in char_ends]


def process_metrics(scores: Scores, accuracy: torch.Tensor, gather) -> dict:
    """How the process reward model judged the step's completions against the rules (reward hacking shows as
    a PRM that accepts wrong answers): the share of rule-wrong completions whose every step it scored
    >= 0.5, and of rule-right ones it did not. `accuracy` is the gathered rule accuracy per completion."""
    if "prm_min_step" not in scores.per_fn:
        return {}
    accepts = gather(scores.per_fn["prm_min_step"]) >= 0.5  # [N_all] (NaN rows compare False)
    scored = ~torch.isnan(gather(scores.per_fn["prm_min_step"]))
    wrong, right = scored & (accuracy == 0), scored & (accuracy == 1)
    return {"prm/accepts_wrong": (accepts & wrong).sum().item() / max(wrong.sum().item(), 1),
            "prm/rejects_right": (~accepts & right).sum().item() / max(right.sum().item(), 1)}


def pick_scores(picks: list[tuple[Scores, list[int]]]) -> Scores:
    """Rows `rows` of each Scores, one after the other; failures re-indexed into the result (those of
    rows left out are dropped)."""
    out = Scores([], [], [], [], {n: [] for n in picks[0][0].per_fn}, [],
                 steps=[] if picks[0][0].steps is not None else None)
    for sc, rows in picks:
        where = {r: len(out.texts) + i for i, r in enumerate(rows)}
        if out.steps is not None:
            out.steps.extend(sc.steps[r] for r in rows)
        for name, values in (("texts", sc.texts), ("answers", sc.answers), ("kinds", sc.kinds), ("totals", sc.totals)):
            getattr(out, name).extend(values[r] for r in rows)
        for n, v in sc.per_fn.items():
            out.per_fn[n].extend(v[r] for r in rows)
        for column in [*out.extra, *(c for c in sc.extra if c not in out.extra)]:  # None where a round lacks it
            values = sc.extra.get(column)
            out.extra.setdefault(column, [None] * (len(out.texts) - len(rows)))
            out.extra[column].extend(values[r] if values else None for r in rows)
        for n, v in sc.metrics.items():
            out.metrics.setdefault(n, []).extend(v)
        out.rows += sum(sc.kinds[r] != "general" for r in rows)
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
                completion_ids: list[list[int]] | None = None, prompts: list | None = None,
                log: RewardLog | None = None, trainer_state: object = None,
                ) -> tuple[list[float], dict[str, list[float]], list[RewardFailure]]:
    """Rewards of one batch: rule rewards for reasoning prompts; for general prompts (R1 stage 4)
    helpfulness of the summary plus harmlessness of the whole response, as reward models judge them.

    Returns the total per completion, {reward name: per-completion scores, NaN where it does not apply}
    and the rule rewards' failures (indices into the batch). `prompts` (one per problem of `batch`) are the
    prompts TRL-style rewards get; what they log goes to `log`, log_extra columns laid out per completion.
    """
    n = len(texts)
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    general = [i for i, k in enumerate(kinds) if k == "general"]
    totals = [0.0] * n
    per_fn: dict[str, list[float]] = {}
    # called even with no reasoning rows, so every process reports the same reward names
    sub_log = RewardLog()
    sub_totals, sub_per, sub_failures = score_completions(
        rewards_used, c.reward_weights, [texts[i] for i in rows], [answers[i] for i in rows],
        timeout=c.reward_timeout, on_failure=c.reward_failure, trainer_state=trainer_state, log=sub_log,
        # what TRL-style rewards read besides the completions: prompts, completion ids, dataset columns
        **(reward_keywords(batch, n // len(batch), completion_ids, rows, prompts) if batch else {}))
    if log is not None:
        log.metrics.update(sub_log.metrics)
        for column, values in sub_log.columns.items():  # one value per reasoning row, as TRL's log_extra takes
            log.columns[column] = [None] * n
            for i, v in zip(rows, values):
                log.columns[column][i] = v
    for name, scores in sub_per.items():
        per_fn[name] = [math.nan] * n
        for i, v in zip(rows, scores):
            per_fn[name][i] = v
    for i, v in zip(rows, sub_totals):
        totals[i] = v
    failures = [dataclasses.replace(f, index=rows[f.index] if f.index >= 0 else -1) for f in sub_failures]
    if "helpfulness" in judges:
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


def stop_on_failing_rewards(s: GRPOSetup, scores: Scores) -> None:
    """Raise RewardError, naming the reward and its first error, once one reward has failed on every sample
    it scored (over all processes) for reward_failure_steps steps in a row: a reward that cannot run at all
    (written for other arguments, say) would otherwise have the run train on zeros. Called before the
    update, by every process (the counts are summed, so all of them stop together)."""
    if not s.c.reward_failure_steps:
        return
    names = list(scores.per_fn)  # the same on every process, so the sums below match
    failed = {n: len({f.index for f in scores.failures if f.reward == n and f.index >= 0}) for n in names}
    sums = s.run.reduce_sums({"rows": scores.rows, **{f"failed/{n}": v for n, v in failed.items()}})
    for name in names:
        if not sums["rows"] or sums[f"failed/{name}"] < sums["rows"]:
            s.failing.pop(name, None)
            continue
        first = next((f.error for f in scores.failures if f.reward == name), "failed in another process")
        steps, error = s.failing.get(name, (0, first))
        s.failing[name] = (steps + 1, error)
        if steps + 1 >= s.c.reward_failure_steps:
            error = " ".join(error.split())[:300]
            raise RewardError(f"reward '{name}' failed on every sample for {steps + 1} steps in a row (first error: "
                              f"{error}); the run would train on zeros. Fix the reward, or set "
                              f"reward_failure_steps: 0 to keep going")
