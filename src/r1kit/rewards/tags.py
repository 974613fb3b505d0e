"""What a tagged response is: ``<think>..</think> <answer>..</answer>``, its parts, and the R1-Zero
template's own example ("reasoning process here", "answer here"), which the format rewards refuse to pay
for and the trainer counts as ``template_copy_rate``."""

from __future__ import annotations

import re

from r1kit.data.templates import R1_ZERO_TEMPLATE
from r1kit.rewards.answers import ANSWER_CLOSE, ANSWER_OPEN, R1_TAGS, THINK_CLOSE, THINK_OPEN, extract_answer


def is_well_formed(text: str) -> bool:
    """Exactly ``<think>..</think> <answer>..</answer>`` with only whitespace around."""
    if any(text.count(tag) != 1 for tag in R1_TAGS):
        return False
    positions = [text.index(tag) for tag in R1_TAGS]
    if positions != sorted(positions):
        return False
    think_close_end = positions[1] + len(THINK_CLOSE)
    answer_close_end = positions[3] + len(ANSWER_CLOSE)
    return (
        text[: positions[0]].strip() == ""
        and text[think_close_end : positions[2]].strip() == ""
        and text[answer_close_end:].strip() == ""
    )


# The template's example contents, read from the verbatim R1-Zero template so there is one source:
# "i.e., <think> reasoning process here </think> <answer> answer here </answer>".
_EXAMPLE_RE = re.compile(r"i\.e\., <think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>", re.S)


def _canonical(text: str) -> str:
    """Lower case, every run of characters other than letters and digits one space: the form in which
    "Reasoning process here.", " reasoning   process here " and "**answer here**" are the same text."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


_m = _EXAMPLE_RE.search(R1_ZERO_TEMPLATE)
TEMPLATE_EXAMPLES: tuple[str, ...] = tuple(_canonical(_m.group(k)) for k in ("think", "answer"))  # canonical form
del _m

# Words a block may be made of and still be the example: the examples' own words plus the fillers and
# near-synonyms that policies were seen to swap in ("reason process here", "<think> here </think>",
# "Your thinking process here").
_EXAMPLE_WORDS = frozenset(" ".join(TEMPLATE_EXAMPLES).split()) | {
    "the", "your", "my", "final", "reason", "think", "thinking", "thought", "thoughts"}


def is_template_example(text: str, whole: bool = True) -> bool:
    """True if ``text`` is (``whole``) or contains (not ``whole``) the template's example content.

    The examples are the think and answer contents of the R1-Zero template's own illustration,
    "reasoning process here" and "answer here", compared in ``_canonical`` form, so case, whitespace and
    punctuation do not matter. ``whole``: text made only of the examples' words and a few fillers
    (``_EXAMPLE_WORDS``: "Reasoning process:", "reason here", "here", "Your thinking process here") is
    the example too, as policies learn those variations within a few steps once the exact text pays
    nothing. Not ``whole``, the exact example must appear as whole words, so
    "the answer here is 12" contains it and "answer heres" does not. One check serves the ``format`` and
    ``tag_count`` rewards (which pay nothing for an example) and ``template_copy_rate`` (which counts
    completions that copy one).
    """
    canon = _canonical(text)
    if whole:
        return bool(canon) and all(word in _EXAMPLE_WORDS for word in canon.split())
    return any(f" {ex} " in f" {canon} " for ex in TEMPLATE_EXAMPLES)


NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def is_real_content(text: str) -> bool:
    """Content a tag pair may be paid for: not blank (punctuation only is blank) and not the template's example."""
    return bool(_canonical(text)) and not is_template_example(text)


def think_content(text: str) -> str | None:
    """The text between the first ``<think>`` and the first ``</think>`` after it; None without that pair."""
    start = text.find(THINK_OPEN)
    end = text.find(THINK_CLOSE, start + len(THINK_OPEN)) if start != -1 else -1
    return None if end == -1 else text[start + len(THINK_OPEN) : end]


def copies_template(text: str) -> bool:
    """True if ``text`` contains the template's example anywhere, or its think or answer block is one
    (``is_template_example``; a blank block is no copy)."""
    if is_template_example(text, whole=False):
        return True
    return any(block is not None and is_template_example(block) for block in (think_content(text), extract_answer(text)))


def template_copy_rate(completions: list[str]) -> float:
    """Share of ``completions`` that copy the template's example (``copies_template``; 0.0 for none).

    A run whose format credit rises with this rate is being paid for copying the prompt, not for the
    task; format and tag_count pay nothing for it, so a high rate means another reward (accuracy on a
    copied think) still pays for it. Completions with a partial copy ("answer here: 12") count too.
    """
    if not completions:
        return 0.0
    return sum(copies_template(c) for c in completions) / len(completions)


THINK_STATES = ("closed", "empty", "unclosed", "none")


def think_span(text: str) -> tuple[str, str]:
    """(the think's text, its state), one of THINK_STATES: "closed" (``<think>..</think>`` around some
    text), "empty" (closed around blank text), "unclosed" (never closed: the think is what follows
    ``<think>`` up to an ``<answer>`` or the end), "none" (no think at all). A ``</think>`` without an
    opening tag closes a think that starts the text (the prompt may have opened it).

    >>> think_span("<think> 3 + 1 = 4 </think> <answer>4</answer>")
    (' 3 + 1 = 4 ', 'closed')
    >>> think_span("<think>\\n<answer>5</answer>")
    ('\\n', 'unclosed')
    """
    start = text.find(THINK_OPEN)
    begin = start + len(THINK_OPEN) if start != -1 else 0
    close = text.find(THINK_CLOSE, begin)
    if close != -1:
        content = text[begin:close]
        return content, "closed" if content.strip() else "empty"
    if start == -1:
        return "", "none"
    end = text.find(ANSWER_OPEN, begin)
    return text[begin: end if end != -1 else len(text)], "unclosed"


def is_guess(text: str) -> bool:
    """An answer given without a think that closed around some working: the shortcut of a policy that
    learned the think does not pay (an unclosed or empty think, or none, then ``<answer>``)."""
    return extract_answer(text) is not None and think_span(text)[1] != "closed"


def copies_example(text: str, examples: tuple[str, ...]) -> bool:
    """True if the think of ``text`` is, in canonical form, the think of one of the worked example
    responses shown in the prompt (``prompt_examples``): the example copied instead of the question worked.

    >>> copies_example("<think> 2 + 5 = 7, 7 + 4 = 11 </think> <answer>11</answer>",
    ...                ("<think>2+5 = 7, 7+4 = 11</think> <answer> 11 </answer>",))
    True
    """
    think, state = think_span(text)
    return state == "closed" and any(_canonical(think) == _canonical(think_span(ex)[0]) for ex in examples)
