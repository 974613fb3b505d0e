"""Readability and quality filters for reasoning data (R1 cold start and rejection sampling).

The R1 paper keeps only samples that are correct and readable: it filters out
"chain-of-thought with mixed languages, long paragraphs, and code blocks", and
its rejection sampling keeps correct responses only. ``filter_samples`` applies
those rules in a fixed order and reports what each one dropped.

Design decisions:

* Each rule is a small named function: a per-sample predicate ``keep_*``
  (True: keep) or, for the two rules that look at the set, a function from
  samples to kept samples (``deduplicate``, ``cap_per_prompt``). ``RULES`` lists
  them in the order they run; the report has one row per rule, always, with a
  rule disabled by the settings showing 0 dropped, so reports of different runs
  line up.
* Rule order: correct, reasoning, summary, length, repetition, language,
  code_blocks, deduplicate, max_per_prompt. Correctness first, since it is the
  main reason a sample goes; the per-sample rules next; the two set rules last,
  so a per-prompt slot is never spent on a sample that a later rule would drop.
* correct: runs only when some sample has the key ``"correct"``; then only
  ``correct is True`` is kept (None means "could not be checked" and is dropped).
* The chain of thought and the final part come from
  ``r1kit.readable.split_reasoning``: the readable format or the R1-Zero tags.
* Lengths are in characters, not tokens, so filtering needs no tokenizer and
  gives the same result for every model.
* repetition: the words of the whole response are its runs of letters or digits
  (lowercased) and each CJK/kana/Hangul character (scripts written without
  spaces); over its word 4-grams, repetition = 1 - distinct 4-grams / 4-grams,
  i.e. the share of 4-gram occurrences that repeat an earlier one (0.0 with
  fewer than 4 words). A loop that says the same sentence five times scores
  about 0.8; ordinary reasoning scores near 0. max_repetition >= 1 disables it.
* language: the share of target-language words in the chain of thought
  (``r1kit.readable.language_consistency``) must be at least
  min_language_consistency. A chain of thought with no language-bearing word at
  all (``38 + 18 = 56``) has no foreign word and passes: this rule is about
  mixing languages; an empty chain of thought is the reasoning rule's business.
  (The language-consistency *reward* scores such text 0.0, for a different
  reason: see r1kit.rewards.readable.) 0 disables the rule.
* code_blocks: a code block is a pair of ``` fences in the chain of thought,
  an unclosed fence counting as one block; -1 disables the rule.
* max_response_chars 0 and max_per_prompt 0 disable their rules.
* deduplicate and max_per_prompt keep the first samples in input order; a
  caller that wants a random choice shuffles (with its seed) before filtering.
* Samples are returned as the same dict objects, unchanged, in input order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Callable

from r1kit.core.errors import ConfigError
from r1kit.rewards.readable import (
    DEFAULT_SPECIAL_TOKEN,
    TARGET_LANGUAGES,
    language_consistency,
    split_reasoning,
    word_languages,
)


@dataclass
class FilterSettings:
    special_token: str = DEFAULT_SPECIAL_TOKEN
    language: str = "en"
    min_language_consistency: float = 0.95  # chains of thought with more foreign words are "mixed language"
    max_response_chars: int = 8000  # overlong responses dropped (characters; tokenizer-free on purpose)
    max_repetition: float = 0.5  # share of repeated word 4-grams above which a response is dropped
    max_code_blocks: int = 0  # chains of thought with more ``` code blocks than this are dropped (-1: no limit)
    require_summary: bool = True  # the response must have a non-empty final part after the chain of thought
    require_reasoning: bool = True  # ... and a non-empty chain of thought
    deduplicate: bool = True  # identical responses (whitespace-normalised) to the same prompt kept once
    max_per_prompt: int = 4  # at most this many kept responses per prompt (0: no cap)


# Help text for each setting, for configs that expose them as options (r1kit.pipeline.coldstart, rejection sampling).
FILTER_HELP = {
    "special_token": "the readable format's separator: TOKEN reasoning TOKEN summary",
    "language": "target language of the chain of thought (en, zh, ...; see r1kit.readable.TARGET_LANGUAGES)",
    "min_language_consistency": "drop chains of thought with a smaller share of target-language words (mixed language; 0: off)",
    "max_response_chars": "drop responses longer than this many characters (0: no limit)",
    "max_repetition": "drop responses whose share of repeated word 4-grams is above this (runaway repetition; 1: off)",
    "max_code_blocks": "drop chains of thought with more ``` code blocks than this (-1: no limit)",
    "require_summary": "drop responses without a non-empty summary after the chain of thought",
    "require_reasoning": "drop responses without a non-empty chain of thought",
    "deduplicate": "keep identical responses (whitespace-normalised) to the same prompt once",
    "max_per_prompt": "keep at most this many responses per prompt (0: no cap)",
}


def validate_filter_settings(s: FilterSettings) -> None:
    """Raise ConfigError naming the first setting that cannot work."""
    checks = [
        (bool(s.special_token.strip()), "special_token must not be blank"),
        (s.language in TARGET_LANGUAGES,
         f"language={s.language!r}: unsupported; choose one of {', '.join(TARGET_LANGUAGES)}"),
        (0.0 <= s.min_language_consistency <= 1.0,
         f"min_language_consistency={s.min_language_consistency}: must be in [0, 1]"),
        (s.max_response_chars >= 0, f"max_response_chars={s.max_response_chars}: must be >= 0 (0: no limit)"),
        (0.0 <= s.max_repetition <= 1.0, f"max_repetition={s.max_repetition}: must be in [0, 1]"),
        (s.max_code_blocks >= -1, f"max_code_blocks={s.max_code_blocks}: must be >= -1 (-1: no limit)"),
        (s.max_per_prompt >= 0, f"max_per_prompt={s.max_per_prompt}: must be >= 0 (0: no cap)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def settings_from(obj: object) -> FilterSettings:
    """FilterSettings from any object (a flat config) with attributes of the same names."""
    return FilterSettings(**{f.name: getattr(obj, f.name) for f in fields(FilterSettings)})


# --------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------

# scripts written without spaces: each character is one word
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_REPETITION_WORD = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


def repetition_fraction(text: str, n: int = 4) -> float:
    """1 - distinct word n-grams / word n-grams (the share of n-grams that repeat an earlier one)."""
    words = _REPETITION_WORD.findall(text.lower())
    grams = [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def count_code_blocks(text: str) -> int:
    """Pairs of ``` fences, an unclosed fence counting as one block."""
    return (text.count("```") + 1) // 2


def _normalized(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------


def keep_correct(sample: dict, s: FilterSettings) -> bool:
    """Correct responses only (``sample["correct"] is True``)."""
    return sample.get("correct") is True


def keep_reasoning(sample: dict, s: FilterSettings) -> bool:
    """A non-empty chain of thought (readable format or <think> tags)."""
    return not s.require_reasoning or bool(split_reasoning(sample["response"], s.special_token)[0])


def keep_summary(sample: dict, s: FilterSettings) -> bool:
    """A non-empty final part after the chain of thought."""
    return not s.require_summary or bool(split_reasoning(sample["response"], s.special_token)[1])


def keep_length(sample: dict, s: FilterSettings) -> bool:
    """At most max_response_chars characters."""
    return not s.max_response_chars or len(sample["response"]) <= s.max_response_chars


def keep_repetition(sample: dict, s: FilterSettings) -> bool:
    """Repeated word 4-grams at most max_repetition of all."""
    return repetition_fraction(sample["response"]) <= s.max_repetition


def keep_language(sample: dict, s: FilterSettings) -> bool:
    """Chain of thought in one language: target-language share >= min_language_consistency."""
    if s.min_language_consistency <= 0:
        return True
    cot = split_reasoning(sample["response"], s.special_token)[0]
    if not word_languages(cot):
        return True  # no word at all, so nothing foreign (see the module docstring)
    return language_consistency(cot, s.language) >= s.min_language_consistency


def keep_code_blocks(sample: dict, s: FilterSettings) -> bool:
    """At most max_code_blocks ``` blocks in the chain of thought."""
    if s.max_code_blocks < 0:
        return True
    return count_code_blocks(split_reasoning(sample["response"], s.special_token)[0]) <= s.max_code_blocks


def deduplicate(samples: list[dict], s: FilterSettings) -> list[dict]:
    """The first of each identical (whitespace-normalised) response to the same prompt."""
    if not s.deduplicate:
        return list(samples)
    seen: set[tuple[str, str]] = set()
    kept = []
    for sample in samples:
        key = (str(sample["prompt_id"]), _normalized(sample["response"]))
        if key not in seen:
            seen.add(key)
            kept.append(sample)
    return kept


def cap_per_prompt(samples: list[dict], s: FilterSettings) -> list[dict]:
    """The first max_per_prompt samples of each prompt."""
    if not s.max_per_prompt:
        return list(samples)
    counts: dict[str, int] = {}
    kept = []
    for sample in samples:
        pid = str(sample["prompt_id"])
        counts[pid] = counts.get(pid, 0) + 1
        if counts[pid] <= s.max_per_prompt:
            kept.append(sample)
    return kept


def _per_sample(predicate: Callable[[dict, FilterSettings], bool]) -> Callable[[list[dict], FilterSettings], list[dict]]:
    return lambda samples, s: [x for x in samples if predicate(x, s)]


def _describe(rule: str, s: FilterSettings, checked: bool) -> str:
    """What the rule kept, with the settings it ran under."""
    return {
        "correct": "correct responses only" if checked else "not checked (no sample has 'correct')",
        "reasoning": "non-empty chain of thought" if s.require_reasoning else "off (require_reasoning=false)",
        "summary": "non-empty summary after the chain of thought" if s.require_summary else "off (require_summary=false)",
        "length": f"at most {s.max_response_chars} characters" if s.max_response_chars else "off (max_response_chars=0)",
        "repetition": f"repeated word 4-grams <= {s.max_repetition:g}",
        "language": (f"chain of thought >= {s.min_language_consistency:g} {s.language} words"
                     if s.min_language_consistency > 0 else "off (min_language_consistency=0)"),
        "code_blocks": (f"at most {s.max_code_blocks} ``` blocks in the chain of thought"
                        if s.max_code_blocks >= 0 else "off (max_code_blocks=-1)"),
        "deduplicate": "identical responses to a prompt kept once" if s.deduplicate else "off (deduplicate=false)",
        "max_per_prompt": f"at most {s.max_per_prompt} per prompt" if s.max_per_prompt else "off (max_per_prompt=0)",
    }[rule]


# (report name, function from samples to kept samples), in the order they run
RULES: list[tuple[str, Callable[[list[dict], FilterSettings], list[dict]]]] = [
    ("correct", _per_sample(keep_correct)),
    ("reasoning", _per_sample(keep_reasoning)),
    ("summary", _per_sample(keep_summary)),
    ("length", _per_sample(keep_length)),
    ("repetition", _per_sample(keep_repetition)),
    ("language", _per_sample(keep_language)),
    ("code_blocks", _per_sample(keep_code_blocks)),
    ("deduplicate", deduplicate),
    ("max_per_prompt", cap_per_prompt),
]


def filter_samples(samples: list[dict], settings: FilterSettings,
                   check_correct: bool | None = None) -> tuple[list[dict], list[dict]]:
    """samples: dicts with at least "prompt_id" and "response" (and "correct": bool | None when correctness
    is checked). Returns (kept samples in input order, report), report = one dict per rule in the order
    applied: {"rule": name, "description": str, "in": n_in, "dropped": n_dropped, "out": n_out}.
    Rule order: correct (only when any sample has the key "correct": keeps correct is True), reasoning,
    summary, length, repetition, language, code_blocks, deduplicate, max_per_prompt.

    check_correct: True or False forces the correct rule on or off (None: on when a sample has the key),
    so that a caller that checks correctness gets a truthful report even for an empty list.
    Raises ValueError for a sample without "prompt_id" or a text "response", ConfigError for bad settings.
    """
    validate_filter_settings(settings)
    for i, sample in enumerate(samples):
        if "prompt_id" not in sample or not isinstance(sample.get("response"), str):
            raise ValueError(f"sample {i}: needs 'prompt_id' and a text 'response', got keys {sorted(sample)}")
    if check_correct is None:
        check_correct = any("correct" in sample for sample in samples)
    kept, report = list(samples), []
    for rule, apply in RULES:
        before = len(kept)
        if rule != "correct" or check_correct:
            kept = apply(kept, settings)
        report.append({"rule": rule, "description": _describe(rule, settings, check_correct),
                       "in": before, "dropped": before - len(kept), "out": len(kept)})
    return kept, report


def format_report(report: list[dict]) -> str:
    """The report as an aligned text table: rule, in, dropped, out, description."""
    header = ("rule", "in", "dropped", "out", "kept by")
    rows = [(r["rule"], str(r["in"]), str(r["dropped"]), str(r["out"]), r["description"]) for r in report]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [row[i].rjust(widths[i]) for i in (1, 2, 3)] + [row[4]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
