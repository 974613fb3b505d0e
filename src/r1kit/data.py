"""Training prompts: a synthetic arithmetic task, GSM8K in its original format, and any JSONL file.

Every source yields `Example(question, answer, id)`; the answer is the gold string the accuracy reward
compares against. Bad input raises DataError naming the file and line. The order of prompts is a pure
function of (seed, position), so a resumed run sees exactly the prompts it would have seen.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path


class DataError(Exception):
    """Bad dataset input; the message names the file and line or the option at fault."""


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    id: str


def default_data_dir() -> str:
    """R1KIT_DATA_DIR if set, else ../shared/data (relative to the working directory)."""
    return os.environ.get("R1KIT_DATA_DIR", "../shared/data")


def arithmetic_examples(num_examples: int, seed: int, num_terms: int = 2, max_value: int = 99,
                        ops: str = "+") -> list[Example]:
    """Deterministic synthetic arithmetic: `num_terms` integers in [0, max_value] joined by ops."""
    if num_terms < 2 or max_value < 1 or not ops or set(ops) - set("+-*"):
        raise DataError("arithmetic task: need num_terms >= 2, max_value >= 1 and ops drawn from '+-*'")
    rng = random.Random(seed)
    examples = []
    for i in range(num_examples):
        terms = [str(rng.randint(0, max_value)) for _ in range(num_terms)]
        expr = terms[0]
        for term in terms[1:]:
            expr += f" {rng.choice(ops)} {term}"
        # eval of a string built only from digits, spaces and +-* above
        examples.append(Example(question=f"What is {expr}?", answer=str(eval(expr)), id=f"arith-{i}"))
    return examples


GSM8K_GOLD = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_gold(solution: str) -> str | None:
    """The number after '####' in a GSM8K worked solution, commas removed."""
    m = GSM8K_GOLD.search(solution)
    return m.group(1).replace(",", "").strip() if m else None


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; DataError names file and line on bad JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
                rows.append((lineno, rec))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    if not rows:
        raise DataError(f"{path}: no records (empty file)")
    return rows


def jsonl_examples(path: str | Path, question_field: str = "question", answer_field: str = "answer",
                   gsm8k_answers: bool = False) -> list[Example]:
    """Examples from a JSONL file with a field mapping; `gsm8k_answers` takes the gold after '####'."""
    examples = []
    for lineno, rec in read_jsonl(path):
        for field in (question_field, answer_field):
            if field not in rec or rec[field] is None:
                raise DataError(f"{path}:{lineno}: missing field '{field}' (set question_field/answer_field)")
        answer = str(rec[answer_field])
        if gsm8k_answers:
            answer = gsm8k_gold(answer)
            if answer is None:
                raise DataError(f"{path}:{lineno}: field '{answer_field}' has no '#### <answer>' line")
        examples.append(Example(question=str(rec[question_field]), answer=answer.strip(),
                                id=str(rec.get("id", rec.get("unique_id", f"{Path(path).name}:{lineno}")))))
    return examples


def load_examples(dataset: str, *, data_dir: str | None = None, split: str = "train",
                  question_field: str = "question", answer_field: str = "answer", seed: int = 0,
                  num_examples: int = 10000, num_terms: int = 2, max_value: int = 99, ops: str = "+") -> list[Example]:
    """Resolve the `dataset` option: 'arithmetic', 'gsm8k' (from data_dir) or a path to a .jsonl file."""
    if dataset == "arithmetic":
        return arithmetic_examples(num_examples, seed, num_terms=num_terms, max_value=max_value, ops=ops)
    if dataset == "gsm8k":
        path = Path(data_dir or default_data_dir()) / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"dataset=gsm8k: {path} not found (set data_dir or R1KIT_DATA_DIR)")
        return jsonl_examples(path, "question", "answer", gsm8k_answers=True)
    if dataset.endswith((".jsonl", ".json")) or Path(dataset).exists():
        return jsonl_examples(dataset, question_field, answer_field)
    raise DataError(f"dataset={dataset!r}: not 'arithmetic', 'gsm8k' or a path to a .jsonl file")


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    perm = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return tuple(perm)


def prompt_indices(num_examples: int, start: int, count: int, seed: int) -> list[int]:
    """Indices of prompts start..start+count of an endless stream of seeded per-epoch shuffles."""
    return [_epoch_permutation(num_examples, seed, pos // num_examples)[pos % num_examples]
            for pos in range(start, start + count)]
