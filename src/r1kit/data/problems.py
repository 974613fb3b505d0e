"""The one record type of a problem: its question (or chat messages), its gold answer and how it is scored.

Training prompts, held-out evaluation sets and the pipeline's data all use `Problem`: a `kind` of
"reasoning" is scored by rule rewards against `answer`; "general" (R1 stage 4) by reward models, with no
gold. The record's other columns travel with it to TRL-style rewards, and `groups` (MATH-500's subject
and level, say) give per-group pass@1 in evaluation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    question: str
    answer: str  # the gold answer ("" for general prompts)
    id: str
    kind: str = "reasoning"  # "reasoning": scored by rule rewards; "general": scored by reward models (stage 4)
    # chat messages [{"role", "content"}, ...] of a conversational record (question: the last user turn)
    messages: list[dict] | None = field(default=None, hash=False)
    # the record's other columns (the gold answer's column included), passed by name to TRL-style rewards
    columns: dict[str, Any] = field(default_factory=dict, hash=False)
    # evaluation: the groups it belongs to, for per-group pass@1 (MATH-500: subject, level)
    groups: dict[str, str] = field(default_factory=dict, hash=False)


Example = Problem  # the name training code used before the two record types were one


def default_data_dir() -> str:
    """R1KIT_DATA_DIR if set, else ../shared/data (relative to the working directory)."""
    return os.environ.get("R1KIT_DATA_DIR", "../shared/data")


GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_gold(solution: str) -> str | None:
    """The number after '####' in a GSM8K worked solution, commas removed."""
    m = GSM8K_GOLD.search(solution)
    return m.group(1).replace(",", "").strip() if m else None


def reward_keywords(batch: list[Example], num_generations: int, completion_ids: list[list[int]] | None = None,
                    rows: list[int] | None = None, prompts: list | None = None) -> dict[str, Any]:
    """The keyword data TRL-style rewards get, for ``score_completions(..., **reward_keywords(...))``.

    Completions are prompt-major (rows [b*G, (b+1)*G) continue batch[b]). ``prompts``: one per example, the
    prompt as TRL would pass it (the chat messages it was rendered from, whose completions rewards then get
    as messages), by default as the dataset gave it (chat messages, or the question text); ``columns``:
    every column of any example in the batch, None where an example lacks it; ``completion_ids`` as given
    (unpadded token ids). ``rows`` keeps only those completions (e.g. the reasoning rows of a mixed batch).
    """
    if prompts is None:
        prompts = [e.messages if e.messages is not None else e.question for e in batch]
    per_row = [b for b in range(len(batch)) for _ in range(num_generations)]
    keep = range(len(per_row)) if rows is None else rows
    names = list(dict.fromkeys(k for e in batch for k in e.columns))
    out: dict[str, Any] = {
        "prompts": [prompts[per_row[i]] for i in keep],
        "columns": {k: [batch[per_row[i]].columns.get(k) for i in keep] for k in names},
    }
    if completion_ids is not None:
        out["completion_ids"] = [completion_ids[i] for i in keep]
    return out
