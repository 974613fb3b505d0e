"""Best-of-N with a process reward model: of a problem's k samples, keep the one the PRM scores highest (the
use of a PRM that DeepSeek-R1 section 4.2 found worth having: "reranking the top-N responses").

`prm_rerank(records, ...)` scores the records of `evaluate` (k consecutive samples per problem), adds each
sample's step scores and solution score, and returns `prm@k`: the share of problems whose top-scored sample
is correct, next to pass@1 (a random sample) and cons@k (majority vote) of the same samples. Ties go to the
sample drawn first, so the result is deterministic.
"""

from __future__ import annotations

from r1kit.data.problems import Problem
from r1kit.models.process_reward_model import ProcessRewardModel, aggregate
from r1kit.rewards.steps import split_steps


def prm_rerank(records: list[dict], problems: list[Problem], prm: ProcessRewardModel, num_samples: int,
               aggregation: str = "min", batch_size: int = 16) -> dict:
    """Score every sample with the PRM (records gain "prm_steps" and "prm_score") and pick one per problem;
    returns {"prm@k": share of problems whose pick is correct, "prm_picked_length": its mean length}."""
    questions = {p.id: p.question for p in problems}
    records = [r for r in records if r.get("mode", "think") == "think"]  # not the think-removed resamples
    steps = [split_steps(r["completion"], prm.step_mode, prm.special_token) for r in records]
    scores = prm.score([questions[r["problem_id"]] for r in records], steps, batch_size=batch_size)
    for r, s in zip(records, scores):
        r["prm_steps"], r["prm_score"] = s, aggregate(s, aggregation)
    picks = []
    for start in range(0, len(records), num_samples):
        group = records[start:start + num_samples]
        picks.append(max(group, key=lambda r: r["prm_score"]))  # max keeps the first of equal scores
    for r in picks:
        r["prm_pick"] = True
    n = max(len(picks), 1)
    return {f"prm@{num_samples}": sum(r["correct"] for r in picks) / n,
            "prm_picked_length": sum(r["length"] for r in picks) / n}
