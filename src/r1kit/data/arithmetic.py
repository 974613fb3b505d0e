"""Synthetic arithmetic problems: deterministic, seeded, any number of terms, range and operators."""

from __future__ import annotations

import random

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
