"""Training prompts: a synthetic arithmetic task, GSM8K in its original format, and any JSONL file.

Every source yields `Example(question, answer, id)`; the answer is the gold string the accuracy reward
compares against. Bad input raises DataError naming the file and line; with skip_bad_data the caller
passes a `skipped` list instead, and bad lines are recorded there and left out. The order of prompts is a pure
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
from typing import Iterator

from .errors import DataError  # noqa: F401 - re-exported: its old home


@dataclass(frozen=True)
class Example:
    question: str
    answer: str
    id: str
    kind: str = "reasoning"  # "reasoning": scored by rule rewards; "general": scored by reward models (stage 4)


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


def _reject(message: str, lineno: int, bad: list[tuple[int, str]] | None) -> None:
    """Raise DataError, or with a `bad` list (skip_bad_data) record the line and carry on."""
    if bad is None:
        raise DataError(message)
    bad.append((lineno, message))


def _read_rows(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, dict]]:
    """(line number, record) as the file is read, so errors found by the caller come in line order too."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = 0
    # bytes decoded line by line, so invalid UTF-8 is reported (or skipped) with its line
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _reject(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line", lineno, bad)
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                _reject(f"{path}:{lineno}: malformed JSON ({e.msg})", lineno, bad)
                continue
            if not isinstance(rec, dict):
                _reject(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}", lineno, bad)
                continue
            rows += 1
            yield lineno, rec
    if not rows and not bad:
        raise DataError(f"{path}: no records (empty file)")
    return rows


def _no_usable_records(path: Path, bad: list[tuple[int, str]]) -> DataError:
    return DataError(f"{path}: no usable records ({len(bad)} bad lines skipped; first: {min(bad)[1]})")


def read_jsonl(path: str | Path, skipped: list[str] | None = None) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; DataError names file and line on bad input.

    With a `skipped` list, a bad line (malformed JSON, not an object, invalid UTF-8) is appended to it
    as "file:line: reason" and left out instead. A missing file, an empty one, or one with no good
    line is an error either way.
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    rows = list(_read_rows(path, bad))
    if bad and not rows:
        raise _no_usable_records(path, bad)
    if skipped is not None:
        skipped.extend(message for _, message in bad)
    return rows


def _field_text(rec: dict, field: str, where: str, lineno: int, bad: list[tuple[int, str]] | None) -> str | None:
    """The field as text (unstripped); None, after raising or recording why, when missing, blank or not text."""
    value = rec.get(field)
    if value is None:
        _reject(f"{where}: missing field '{field}' (set question_field/answer_field)", lineno, bad)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _reject(f"{where}: field '{field}' is a {type(value).__name__}, expected text or a number", lineno, bad)
        return None
    text = str(value)
    if not text.strip():
        _reject(f"{where}: field '{field}' is empty", lineno, bad)
        return None
    return text


def jsonl_examples(path: str | Path, question_field: str = "question", answer_field: str = "answer",
                   gsm8k_answers: bool = False, skipped: list[str] | None = None) -> list[Example]:
    """Examples from a JSONL file with a field mapping; `gsm8k_answers` takes the gold after '####'.

    A record without a usable question or gold answer raises DataError naming file and line, or with a
    `skipped` list is recorded there (in line order, with the lines read_jsonl rejects) and left out.
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    examples = []
    for lineno, rec in _read_rows(path, bad):
        where = f"{path}:{lineno}"
        question = _field_text(rec, question_field, where, lineno, bad)
        answer = _field_text(rec, answer_field, where, lineno, bad) if question is not None else None
        if answer is None:
            continue
        if gsm8k_answers:
            answer = gsm8k_gold(answer)
            if not answer:
                _reject(f"{where}: field '{answer_field}' has no '#### <answer>' line", lineno, bad)
                continue
        examples.append(Example(question=question, answer=answer.strip(),
                                id=str(rec.get("id", rec.get("unique_id", f"{path.name}:{lineno}")))))
    if not examples:
        raise _no_usable_records(path, bad)
    if skipped is not None:
        skipped.extend(message for _, message in sorted(bad))
    return examples


def load_examples(dataset: str, *, data_dir: str | None = None, split: str = "train",
                  question_field: str = "question", answer_field: str = "answer", seed: int = 0,
                  num_examples: int = 10000, num_terms: int = 2, max_value: int = 99, ops: str = "+",
                  skipped: list[str] | None = None) -> list[Example]:
    """Resolve the `dataset` option: 'arithmetic', 'gsm8k' (from data_dir) or a path to a .jsonl file.

    With a `skipped` list, bad lines are recorded there and left out rather than raising (skip_bad_data).
    """
    if dataset == "arithmetic":
        return arithmetic_examples(num_examples, seed, num_terms=num_terms, max_value=max_value, ops=ops)
    if dataset == "gsm8k":
        path = Path(data_dir or default_data_dir()) / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"dataset=gsm8k: {path} not found (set data_dir or R1KIT_DATA_DIR)")
        return jsonl_examples(path, "question", "answer", gsm8k_answers=True, skipped=skipped)
    if dataset.endswith((".jsonl", ".json")) or Path(dataset).exists():
        return jsonl_examples(dataset, question_field, answer_field, skipped=skipped)
    raise DataError(f"dataset={dataset!r}: not 'arithmetic', 'gsm8k' or a path to a .jsonl file")


def general_examples(path: str | Path, prompt_field: str = "prompt", skipped: list[str] | None = None) -> list[Example]:
    """General (non-reasoning) prompts for all-scenario RL: a JSONL of records with a prompt field.

    They have no gold answer; reward models score their responses (Example.kind == "general").
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    examples = []
    for lineno, rec in _read_rows(path, bad):
        prompt = _field_text(rec, prompt_field, f"{path}:{lineno}", lineno, bad)
        if prompt is not None:
            examples.append(Example(question=prompt, answer="", id=str(rec.get("id", f"{path.name}:{lineno}")),
                                    kind="general"))
    if not examples:
        raise _no_usable_records(path, bad or [(0, "no records")])
    if skipped is not None:
        skipped.extend(message for _, message in sorted(bad))
    return examples


@functools.lru_cache(maxsize=4)
def _epoch_permutation(num_examples: int, seed: int, epoch: int) -> tuple[int, ...]:
    perm = list(range(num_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(perm)
    return tuple(perm)


def prompt_indices(num_examples: int, start: int, count: int, seed: int) -> list[int]:
    """Indices of prompts start..start+count of an endless stream of seeded per-epoch shuffles."""
    return [_epoch_permutation(num_examples, seed, pos // num_examples)[pos % num_examples]
            for pos in range(start, start + count)]
