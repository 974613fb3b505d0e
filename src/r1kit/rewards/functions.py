"""The built-in rule rewards: what is scored, as small pure functions over a batch.

A reward is ``fn(completions, answers) -> list[float]``: ``completions[i]`` (the prefill included, so it
starts with ``<think>`` when the prompt prefilled one) is judged against the gold ``answers[i]``. Each is
registered by name (``register_reward``), so configs name them; a user's reward is registered, or named by
a dotted path or a file, the same way (rewards/registry.py). How scoring runs (the worker, the time
limit, the failure policy) is rewards/worker.py and rewards/scoring.py.

Answer extraction and equivalence are ``rewards.answers``; what a tagged response and the template's
example are, ``rewards.tags``; the readable format and language consistency, ``rewards.readable``.
"""

from __future__ import annotations

from r1kit.rewards.answers import answers_match, extract_answer, is_final_number, normalize_number
from r1kit.rewards.readable import (
    DEFAULT_SPECIAL_TOKEN,
    final_answer,
    language_consistency,
    parse_readable,
    split_reasoning,
)
from r1kit.rewards.registry import register_reward
from r1kit.rewards.tags import NUMBER_RE, R1_TAGS, copies_template, is_real_content, is_well_formed, think_content

# --------------------------------------------------------------------------
# Built-in rewards
# --------------------------------------------------------------------------


@register_reward("template_penalty")
def template_penalty_reward(completions: list[str], answers: list[str]) -> list[float]:
    """-1.0 for a completion that copies the template's example (``copies_template``), else 0.0.

    ``format`` and ``tag_count`` pay nothing for a copy, but ``accuracy`` still pays a right number
    after "<think> reasoning process here </think>", and a weak model finds that within five steps
    (measured on the embedded model, 1-digit addition). Weighted like ``accuracy``, the penalty makes
    a copied think worth no more than no answer, so the group's advantage goes to real working.

    >>> template_penalty_reward(["<think> reasoning process here </think> <answer>4</answer>",
    ...                          "<think>2 + 2 = 4</think> <answer>4</answer>"], ["4", "4"])
    [-1.0, 0.0]
    """
    return [-1.0 if copies_template(c) else 0.0 for c in completions]


@register_reward("format")
def format_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1.0 for exactly ``<think>...</think><answer>...</answer>`` (whitespace-only gaps) with real
    content, else 0.0.

    Real content: neither block is blank or the template's example (``is_template_example``); a policy
    learns to copy "<think> reasoning process here </think> <answer> answer here </answer>" within ten
    steps when that is paid. When the gold is a plain number, the answer must be written as a number
    (``is_final_number``, as ``accuracy`` demands), so a word in the answer block earns no format credit,
    and the think block must engage with the question by working with at least two numbers:
    "<think> calculation </think>" was the next cheapest format a policy found once the example paid
    nothing, and "<think>7</think>" (a lone guess) the one after that, in the demo at step 15.

    >>> format_reward(["<think>2 + 2 = 4</think>\\n<answer>4</answer>",  # works with the numbers
    ...                "<think>4</think><answer>4</answer>",  # a lone guess in the think
    ...                "<answer>4</answer>"], ["4"] * 3)
    [1.0, 0.0, 0.0]
    """
    scores = []
    for text, gold in zip(completions, answers, strict=True):
        ok = is_well_formed(text)
        if ok:
            pred = extract_answer(text) or ""
            ok = is_real_content(think_content(text) or "") and is_real_content(pred)
            numeric = normalize_number(gold) is not None
            ok = ok and (not numeric or (is_final_number(pred) and len(NUMBER_RE.findall(think_content(text))) >= 2))
        scores.append(1.0 if ok else 0.0)
    return scores


def _tag_score(text: str) -> float:
    """0.25 per tag that occurs exactly once and after its predecessor.

    "Predecessor" is the nearest earlier tag in ``<think>, </think>, <answer>,
    </answer>`` that itself occurs exactly once; a missing or doubled tag is
    skipped over rather than zeroing everything after it, so ``</think>``
    followed by a proper answer block still earns 0.75 without ``<think>``.
    A think or answer block that is present but blank or the template's
    example scores 0.0 for the whole text: partial credit is for attempts.
    """
    think, answer = think_content(text), extract_answer(text)
    if any(block is not None and not is_real_content(block) for block in (think, answer)):
        return 0.0
    score = 0.0
    anchor_end = 0  # end of the last uniquely-occurring tag seen so far
    for tag in R1_TAGS:
        if text.count(tag) != 1:
            continue
        pos = text.index(tag)
        if pos >= anchor_end:
            score += 0.25
        anchor_end = pos + len(tag)
    return score


@register_reward("tag_count")
def tag_count_reward(completions: list[str], answers: list[str]) -> list[float]:
    """Partial format credit in [0, 1], so a weak model gets signal from step one; nothing for blank
    or template-example blocks (see ``_tag_score``).

    >>> tag_count_reward(["<think>2 + 2</think><answer>4</answer>", "</think><answer>4</answer>",
    ...                   "<think> </think><answer>4</answer>"], ["4"] * 3)
    [1.0, 0.75, 0.0]
    """
    return [_tag_score(c) for c in completions]


@register_reward("accuracy")
def accuracy_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1.0 if the last ``<answer>`` block matches the gold answer, else 0.0.

    >>> accuracy_reward(["<think>2 + 2</think><answer>4</answer>", "<answer>4.0</answer>", "<answer>5</answer>",
    ...                  "The answer is 4."], ["4"] * 4)
    [1.0, 1.0, 0.0, 0.0]
    """
    scores = []
    for completion, gold in zip(completions, answers, strict=True):
        pred = extract_answer(completion)
        scores.append(1.0 if pred is not None and answers_match(pred, gold) else 0.0)
    return scores


# --------------------------------------------------------------------------
# The R1 readable format and language consistency (r1kit.rewards.readable)
# --------------------------------------------------------------------------
# These rewards take keyword options (the target language, the separator token). score_completions calls
# a reward with (completions, answers) only, so a run binds its options first with bind_reward_options.


@register_reward("language_consistency")
def language_consistency_reward(completions: list[str], answers: list[str], language: str = "en",
                                special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """Share of target-language words in the chain of thought only (the R1 paper's language reward).

    The chain of thought is ``split_reasoning(completion)[0]``: the reasoning of
    the readable format or the ``<think>`` content. A completion without one
    (plain text, a truncated ``<think>``) scores 0.0, as does a chain of thought
    with no language-bearing word (see ``r1kit.rewards.readable``).

    >>> language_consistency_reward(["<think>two plus two is four</think><answer>4</answer>", "4"], ["4", "4"])
    [1.0, 0.0]
    """
    return [language_consistency(split_reasoning(c, special_token)[0], language) for c in completions]


@register_reward("readable_format")
def readable_format_reward(completions: list[str], answers: list[str],
                           special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """1.0 for exactly ``TOK reasoning TOK summary`` with both parts non-empty, else 0.0.

    >>> readable_format_reward(["|special_token|2 + 2 = 4|special_token|The answer is 4.", "The answer is 4."],
    ...                        ["4", "4"])
    [1.0, 0.0]
    """
    return [1.0 if parse_readable(c, special_token) is not None else 0.0 for c in completions]


@register_reward("readable_accuracy")
def readable_accuracy_reward(completions: list[str], answers: list[str],
                             special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float]:
    """1.0 if the answer stated in the final part (the summary) matches the gold, else 0.0.

    The answer is ``r1kit.readable.final_answer``; matching is ``answers_match``,
    so a numeric gold needs a final number, as for ``accuracy``.

    >>> readable_accuracy_reward(["|special_token|2 + 2 = 4|special_token|The answer is 4.",
    ...                           "|special_token|2 + 2 = 5|special_token|The answer is 5."], ["4", "4"])
    [1.0, 0.0]
    """
    scores = []
    for completion, gold in zip(completions, answers, strict=True):
        pred = final_answer(completion, special_token)
        scores.append(1.0 if pred is not None and answers_match(pred, gold) else 0.0)
    return scores
