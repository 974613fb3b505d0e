"""Test fixture written for r1kit: a user's `rewards.py` in the shape open-r1's rule rewards have.

What it mirrors is open-r1's calling convention (src/open_r1/rewards.py), not its code:
- `accuracy_reward(completions, solution, **kwargs)`, `format_reward(completions, **kwargs)` and
  `tag_count_reward(completions, **kwargs)`, called by TRL's GRPOTrainer with keyword arguments;
- each completion is a conversation of one assistant message, read as `completion[0]["content"]`, so a
  plain-text completion fails with `TypeError: string indices must be integers` (what r1kit used to pass);
- the gold answer comes from the dataset's `solution` column, written in LaTeX as OpenR1-Math-220k has it;
- an answer is read only from LaTeX (`\\boxed{...}` or `$...$`), a bare `4` scores 0;
- `None` for a sample whose gold answer cannot be parsed: TRL leaves it out of the mean;
- the format rules want `<think>`, `</think>`, `<answer>`, `</answer>` each on a line of their own.
"""

import re

from math_verify import parse, verify

TAG_LINES = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
LAYOUT = re.compile(r"<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>", re.DOTALL)
BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")  # one level of inner braces, as in \frac{1}{3}
INLINE_MATH = re.compile(r"\$([^$]+)\$")


def _text(completion) -> str:
    return completion[0]["content"]


def _latex_answer(text: str) -> str | None:
    """The last boxed expression, else the last inline formula; None when the text has no LaTeX."""
    for pattern in (BOXED, INLINE_MATH):
        found = pattern.findall(text)
        if found:
            return found[-1]
    return None


def accuracy_reward(completions, solution, **kwargs):
    scores = []
    for completion, gold_text in zip(completions, solution):
        gold = parse(gold_text)
        if not gold:
            scores.append(None)
            continue
        answer = _latex_answer(_text(completion))
        scores.append(float(answer is not None and verify(gold, parse(f"${answer}$"))))
    return scores


def format_reward(completions, **kwargs):
    return [1.0 if LAYOUT.fullmatch(_text(c)) else 0.0 for c in completions]


def tag_count_reward(completions, **kwargs):
    """A quarter for each tag line found exactly once."""
    return [float(sum(0.25 for tag in TAG_LINES if _text(c).count(tag) == 1)) for c in completions]
