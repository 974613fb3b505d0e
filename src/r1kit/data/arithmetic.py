"""Synthetic arithmetic problems: deterministic, seeded, any number of terms, range and operators."""

from __future__ import annotations

import random
import re

from r1kit.core.errors import DataError
from r1kit.data.problems import Problem


def arithmetic_examples(num_examples: int, seed: int, num_terms: int = 2, max_value: int = 99,
                        ops: str = "+") -> list[Problem]:
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
        examples.append(Problem(question=f"What is {expr}?", answer=str(eval(expr)), id=f"arith-{i}"))
    return examples


_QUESTION = re.compile(r"What is (-?\d+(?: [+-] -?\d+)+)\?")
_LINE = re.compile(r"(-?\d+) ([+-]) (-?\d+) = (-?\d+)")


def worked_lines(question: str) -> list[str] | None:
    """The worked solution of an addition/subtraction question as a running total, one line per operation
    ("What is 47 + 38 + 25?" -> ["47 + 38 = 85", "85 + 25 = 110"]): steps that can each be wrong. None for a
    question of another shape (or with *, whose precedence a running total would ignore).

    >>> worked_lines("What is 47 + 38 + 25?")
    ['47 + 38 = 85', '85 + 25 = 110']
    """
    m = _QUESTION.fullmatch(question.strip())
    if not m:
        return None
    tokens = m.group(1).split(" ")
    total, lines = int(tokens[0]), []
    for op, term in zip(tokens[1::2], tokens[2::2]):
        new = total + int(term) if op == "+" else total - int(term)
        lines.append(f"{total} {op} {term} = {new}")
        total = new
    return lines


def line_is_right(line: str) -> bool | None:
    """Whether a written step "a + b = c" (or "a - b = c") is true arithmetic; None when the line is not of
    that shape. The ground truth against which automatic step labels can be checked on this task.

    >>> line_is_right("85 + 25 = 110"), line_is_right("85 + 25 = 100"), line_is_right("so the sum is 110")
    (True, False, None)
    """
    m = _LINE.search(line)
    if not m:
        return None
    a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
    return (a + b if op == "+" else a - b) == c
