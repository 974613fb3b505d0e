"""DeepSeek-R1's readable output format and its language-consistency measure.

The R1 paper (section 2.3.1) fixes the cold-start output format as
``|special_token|<reasoning_process>|special_token|<summary>``: the chain of
thought between two separator tokens, then a summary for the reader. R1-Zero
writes ``<think>...</think> <answer>...</answer>`` instead. This module builds,
parses and splits both, and measures how much of a chain of thought is in the
target language (the paper's language-consistency reward, section 2.3.2).

Design decisions:

* Whitespace: ``to_readable`` strips both parts and puts nothing around the
  separator (``TOKreasoningTOKsummary``), so the text a model learns has one
  canonical form. ``parse_readable`` is lenient in return: whitespace around
  the whole text and around each part is ignored, because generated text often
  ends with a newline.
* The separator is configurable (``special_token``); a tokenizer that has it as
  one added token sees one token, any other tokenizer sees plain text.
* ``split_reasoning`` knows three shapes: the readable format; the R1-Zero tags
  (``<think>`` may be missing at the start, since prompts often prefill it, but
  ``</think>`` must occur exactly once); anything else is all final part and no
  chain of thought.
* ``final_answer`` reads the answer from the final part only (the summary, or
  what follows ``</think>``), with the last-number fallback of the few-shot
  style. A text that uses the separator or the think tags but does not split
  (a truncated chain of thought, a third separator) has no final part and so
  no answer: otherwise a half-written reasoning would be graded on its last
  number. Plain text without any marker is all final part.
* Languages are told apart by script, which is all a tokenizer-free, model-free
  reward can afford: every Latin-script word counts as "en" (French is not told
  from English), each Han ideograph is one "zh" word, each kana one "ja" word,
  each Hangul syllable one "ko" word; runs of Cyrillic ("ru"), Greek ("el"),
  Hebrew ("he"), Arabic ("ar"), Devanagari ("hi") and Thai ("th") letters are
  one word each; letters of any other script are "other" (always foreign).
  Digits, punctuation, math symbols and LaTeX commands (``\\frac``, ``\\boxed``)
  carry no language. Single Latin or Greek letters are not words either: they
  are variables (``x``, ``π``), and a Chinese chain of thought that writes
  ``x = 3`` is not mixing languages. (This drops the English words "a" and "I";
  a pure English text still scores 1.0.)
* Japanese writes Han ideographs too, so target "ja" accepts "zh" words as well
  (``TARGET_LANGUAGES``). To support another language add its script ranges to
  ``_SCRIPTS`` (with a label) and its accepted labels to ``TARGET_LANGUAGES``.
* A text without any language-bearing word scores 0.0: the reward is the share
  of target-language words, and an empty (or all-digits) chain of thought has
  earned none; paying it the full reward would teach the policy to stop
  reasoning in words. (The cold-start filters treat such a chain of thought as
  not mixed, see ``r1kit.pipeline.filters``.)
"""

from __future__ import annotations

import bisect
import re
import unicodedata

from r1kit.rewards.answers import THINK_CLOSE, THINK_OPEN, extract_final_answer

DEFAULT_SPECIAL_TOKEN = "|special_token|"


# (first code point, last code point, label, one word per character); sorted by first code point.
# Only letters (Unicode category L*) inside a range count; marks (M*) extend the current word.
_SCRIPTS = sorted([
    (0x0041, 0x005A, "en", False), (0x0061, 0x007A, "en", False),  # ASCII letters
    (0x00C0, 0x024F, "en", False),  # Latin-1 letters, Latin Extended-A/B (x and / signs are not letters)
    (0x1E00, 0x1EFF, "en", False),  # Latin Extended Additional
    (0xFF21, 0xFF3A, "en", False), (0xFF41, 0xFF5A, "en", False),  # fullwidth Latin
    (0x0370, 0x03FF, "el", False), (0x1F00, 0x1FFF, "el", False),  # Greek
    (0x0400, 0x052F, "ru", False),  # Cyrillic
    (0x0590, 0x05FF, "he", False),  # Hebrew
    (0x0600, 0x06FF, "ar", False), (0x0750, 0x077F, "ar", False),  # Arabic
    (0x0900, 0x097F, "hi", False),  # Devanagari
    (0x0E00, 0x0E7F, "th", False),  # Thai (no spaces between words: a run is one "word")
    (0x1100, 0x11FF, "ko", True), (0x3130, 0x318F, "ko", True), (0xAC00, 0xD7AF, "ko", True),  # Hangul
    (0x3040, 0x30FF, "ja", True), (0x31F0, 0x31FF, "ja", True), (0xFF66, 0xFF9F, "ja", True),  # kana
    (0x3400, 0x4DBF, "zh", True), (0x4E00, 0x9FFF, "zh", True), (0xF900, 0xFAFF, "zh", True),  # Han
    (0x20000, 0x3134F, "zh", True),  # Han extensions B-G
])
_STARTS = [start for start, _, _, _ in _SCRIPTS]
# Scripts whose single letters are variables in mathematics rather than words.
_SYMBOL_SCRIPTS = ("en", "el")

# Word labels each target language accepts.
TARGET_LANGUAGES: dict[str, frozenset[str]] = {
    "en": frozenset({"en"}),
    "zh": frozenset({"zh"}),
    "ja": frozenset({"ja", "zh"}),  # kanji are Han ideographs
    "ko": frozenset({"ko"}),
    "ru": frozenset({"ru"}),
    "el": frozenset({"el"}),
    "he": frozenset({"he"}),
    "ar": frozenset({"ar"}),
    "hi": frozenset({"hi"}),
    "th": frozenset({"th"}),
}

_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")


# --------------------------------------------------------------------------
# The readable format
# --------------------------------------------------------------------------


def to_readable(reasoning: str, summary: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
    """``TOKreasoningTOKsummary`` with both parts stripped and nothing around the separators.

    Empty parts are allowed (the result then fails ``parse_readable`` and the
    filters drop it); a part that contains the separator raises ValueError,
    since the result could not be split back.
    """
    reasoning, summary = reasoning.strip(), summary.strip()
    if special_token in reasoning or special_token in summary:
        raise ValueError(f"reasoning or summary contains the separator {special_token!r}")
    return f"{special_token}{reasoning}{special_token}{summary}"


def parse_readable(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> tuple[str, str] | None:
    """(reasoning, summary), both stripped, if ``text`` is exactly TOK reasoning TOK summary; else None.

    Whitespace around the whole text and around each part is ignored. Both
    parts must be non-empty and the separator must occur exactly twice.
    """
    body = text.strip()
    if not special_token or not body.startswith(special_token) or body.count(special_token) != 2:
        return None
    reasoning, summary = body[len(special_token):].split(special_token)
    reasoning, summary = reasoning.strip(), summary.strip()
    return (reasoning, summary) if reasoning and summary else None


def split_tags(text: str) -> tuple[str, str] | None:
    """(think content, rest) for ``[<think>] ... </think> rest``; None if the tags do not fit that shape."""
    if text.count(THINK_CLOSE) != 1 or text.count(THINK_OPEN) > 1:
        return None
    close = text.index(THINK_CLOSE)
    start = 0
    if THINK_OPEN in text:
        start = text.index(THINK_OPEN)
        if start > close or text[:start].strip():
            return None
        start += len(THINK_OPEN)
    return text[start:close].strip(), text[close + len(THINK_CLOSE):].strip()


def split_reasoning(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> tuple[str, str]:
    """(chain of thought, final part), both stripped.

    The readable format gives (reasoning, summary); the R1-Zero tags give (the
    ``<think>`` content, everything after ``</think>``), the opening tag being
    optional; anything else gives ``("", text)``.
    """
    parsed = parse_readable(text, special_token)
    if parsed is not None:
        return parsed
    tagged = split_tags(text)
    if tagged is not None:
        return tagged
    return "", text


def final_answer(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str | None:
    """The answer stated in the final part (the summary), or None.

    Extraction is ``r1kit.answers.extract_final_answer(final, allow_last_number=True)``.
    A text with the separator or a think tag that does not split has no final
    part and gives None (see the module docstring).
    """
    cot, final = split_reasoning(text, special_token)
    if not cot and any(marker in text for marker in (special_token, THINK_OPEN, THINK_CLOSE)):
        return None
    if not final:
        return None
    return extract_final_answer(final, allow_last_number=True)


# --------------------------------------------------------------------------
# Language consistency
# --------------------------------------------------------------------------


def _script(ch: str) -> tuple[str, bool]:
    """(label, one word per character) of a letter."""
    code = ord(ch)
    i = bisect.bisect_right(_STARTS, code) - 1
    if i >= 0:
        _, end, label, per_char = _SCRIPTS[i]
        if code <= end:
            return label, per_char
    return "other", False


def word_languages(text: str) -> list[str]:
    """The language label of each word of ``text``, in order (see the module docstring for what a word is)."""
    text = _LATEX_COMMAND.sub(" ", text)
    words: list[str] = []
    run_label, run_len = None, 0

    def close_run() -> None:
        if run_label is not None and not (run_len == 1 and run_label in _SYMBOL_SCRIPTS):
            words.append(run_label)

    for ch in text:
        category = unicodedata.category(ch)
        if category[0] == "M" and run_label is not None:
            continue  # a combining accent or vowel sign belongs to the word it follows
        if category[0] != "L":
            close_run()
            run_label, run_len = None, 0
            continue
        label, per_char = _script(ch)
        if per_char:
            close_run()
            run_label, run_len = None, 0
            words.append(label)
        elif label == run_label:
            run_len += 1
        else:
            close_run()
            run_label, run_len = label, 1
    close_run()
    return words


def check_language(language: str) -> None:
    """Raise ValueError unless ``language`` is a supported target."""
    if language not in TARGET_LANGUAGES:
        raise ValueError(f"language={language!r}: unsupported; choose one of {', '.join(TARGET_LANGUAGES)}")


def language_consistency(text: str, language: str = "en") -> float:
    """Share of the words of ``text`` that are in ``language``; 0.0 when it has no language-bearing word.

    This is the R1 paper's language-consistency reward: the proportion of
    target-language words. Raises ValueError for an unsupported target.
    """
    check_language(language)
    words = word_languages(text)
    if not words:
        return 0.0
    accepted = TARGET_LANGUAGES[language]
    return sum(label in accepted for label in words) / len(words)
