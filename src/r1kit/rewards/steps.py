"""A solution as a sequence of steps: where each step ends, for step labels, process reward models and tree
search (DeepSeek-R1 section 4.2: "it is hard to define a fine-grained step in general reasoning"; r1kit
fixes two definitions and says which one a run used).

A step ends at the end of a line (`lines`) or of a sentence or line (`sentences`, for the readable
format's prose chains of thought) inside the chain of thought: the readable format's reasoning between
the two separators, the `<think>` content, or the whole text when it has neither. The final part (the
summary, the answer block) is one last step, so the last step is the one that states the answer.

Steps are contiguous slices of the text: `"".join(split_steps(t)) == t`. Each step keeps what comes
before its content (the opening separator, the newline of the line before), so the step ends where its
content ends and a prefix cut at a step end is the text up to and including that step.

>>> split_steps("|special_token|47 + 38 = 85\\n85 + 25 = 110|special_token|The answer is 110.")
['|special_token|47 + 38 = 85', '\\n85 + 25 = 110', '|special_token|The answer is 110.']
>>> split_steps("Tens: 40 + 30 = 70. Ones: 7 + 8 = 15. So 85.", mode="sentences")
['Tens: 40 + 30 = 70.', ' Ones: 7 + 8 = 15.', ' So 85.']
"""

from __future__ import annotations

import re

from r1kit.rewards.answers import THINK_CLOSE, THINK_OPEN
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN, parse_readable, split_tags

STEP_MODES = ("lines", "sentences")
# a sentence ends at . ! or ? followed by whitespace or the end (so 0.5 and 3.14 stay whole)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


def reasoning_span(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> tuple[int, int]:
    """(start, end) character offsets of the chain of thought: the readable format's reasoning, the
    `<think>` content (the opening tag optional), or the whole text when it has neither."""
    if parse_readable(text, special_token) is not None:
        first = text.index(special_token) + len(special_token)
        return first, text.index(special_token, first)
    if split_tags(text) is not None:
        start = text.index(THINK_OPEN) + len(THINK_OPEN) if THINK_OPEN in text else 0
        return start, text.index(THINK_CLOSE)
    return 0, len(text)


def _content_ends(chunk: str, mode: str) -> list[int]:
    """Offsets in `chunk` where a line's (or a sentence's) content ends, trailing whitespace excluded."""
    ends = []
    for line in re.finditer(r"[^\n]+", chunk):
        body = line.group().rstrip()
        if not body.strip():
            continue
        if mode == "sentences":
            ends += [line.start() + m.end() for m in _SENTENCE_END.finditer(body)]
        end = line.start() + len(body)
        if not ends or ends[-1] != end:
            ends.append(end)
    return ends


def step_ends(text: str, mode: str = "lines", special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[int]:
    """Character offsets where each step of `text` ends, increasing, the last one len(text); [] for a
    blank text."""
    if mode not in STEP_MODES:
        raise ValueError(f"step mode {mode!r}: choose {' or '.join(STEP_MODES)}")
    if not text.strip():
        return []
    start, end = reasoning_span(text, special_token)
    ends = [start + e for e in _content_ends(text[start:end], mode)]
    if not text[ends[-1] if ends else 0:].strip() and ends:
        ends[-1] = len(text)  # nothing but whitespace after the last line: it is the final step
    elif not ends or ends[-1] < len(text):
        ends.append(len(text))
    return ends


def split_steps(text: str, mode: str = "lines", special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[str]:
    """The steps of `text` as contiguous slices that join back to it (see the module docstring)."""
    bounds = [0, *step_ends(text, mode, special_token)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:])]
