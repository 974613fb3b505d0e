"""The "aha moment" tracker: how often completions reflect on their own reasoning, step by step.

The R1 paper (Table 3) shows the model learning to stop and re-check ("Wait, wait. Wait. That's an aha
moment I can flag here."). This module counts such reflection markers in a run's completions.

Matching rules (documented here because the numbers depend on them):
- Case does not matter ("Wait", "WAIT"), and full-width Latin letters count as ASCII ("ＷＡＩＴ").
- A marker that starts or ends with a Latin letter or digit only matches at a word boundary there, so
  "wait" does not count inside "awaiting" or "waiter". Chinese markers ("等等", "重新") match anywhere,
  since Chinese has no spaces between words.
- In a marker, a space matches any run of whitespace, a hyphen matches a hyphen, a space or nothing
  ("re-check" also finds "recheck" and "re check"), and a trailing "*" matches any word ending
  ("verif*" finds verify, verified, verifying, verification).
- A completion is counted once per step however many markers it holds; per-marker counts are kept too.

Correctness of a completion (for "markers in correct answers"): the sample's `correct` field if it has
one (evaluation samples); else its accuracy reward, `rewards["accuracy"] >= 1`; else unknown, and the
sample counts only towards the all-completions share. A total reward is not used, because format
rewards give partial credit to wrong answers.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

DEFAULT_MARKERS: tuple[str, ...] = (
    "wait",
    "let me re-check",
    "re-check",
    "re-evaluate",
    "verif*",
    "double-check",
    "let me check",
    "等等",
    "等一下",
    "重新",
    "验证",
    "检查一下",
)

# full-width ASCII (U+FF01..U+FF5E) and the ideographic space, mapped 1:1 so that spans stay valid
_FULL_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def _is_latin_word_char(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def marker_pattern(marker: str) -> str:
    """The regular expression source for one marker (see the module docstring for the rules)."""
    text = marker.strip().translate(_FULL_WIDTH)
    if not text or text == "*":
        raise ValueError(f"reflection marker {marker!r} is empty")
    wildcard = text.endswith("*")
    text = text.rstrip("*")
    parts = []
    for ch in text:
        if ch.isspace():
            if not parts or parts[-1] != r"\s+":
                parts.append(r"\s+")
        elif ch == "-":
            parts.append(r"[-\s]?")
        else:
            parts.append(re.escape(ch))
    source = "".join(parts)
    if _is_latin_word_char(text[0]):
        source = r"(?<![0-9A-Za-z])" + source
    if wildcard:
        source += r"[0-9A-Za-z]*"
    if wildcard or _is_latin_word_char(text[-1]):
        source += r"(?![0-9A-Za-z])"
    return source


def compile_markers(markers: Iterable[str] | None = None) -> list[tuple[str, re.Pattern]]:
    """(marker, compiled pattern) for each marker; None means DEFAULT_MARKERS."""
    names = list(DEFAULT_MARKERS if markers is None else markers)
    if not names:
        raise ValueError("the reflection marker list is empty")
    return [(m, re.compile(marker_pattern(m), re.IGNORECASE)) for m in dict.fromkeys(names)]


@functools.lru_cache(maxsize=1)
def _default_compiled() -> list[tuple[str, re.Pattern]]:
    return compile_markers(DEFAULT_MARKERS)


def _compiled(markers) -> list[tuple[str, re.Pattern]]:
    """Accept None (the defaults), marker strings, or compile_markers' output (reused as is)."""
    if markers is None:
        return _default_compiled()
    markers = list(markers)
    if markers and isinstance(markers[0], tuple):
        return markers
    return compile_markers(markers)


def find_markers(text: str, markers=None) -> list[str]:
    """The markers (from `markers`, default DEFAULT_MARKERS) that occur in `text`."""
    text = text.translate(_FULL_WIDTH)
    return [name for name, pattern in _compiled(markers) if pattern.search(text)]


def marker_spans(text: str, markers=None) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character spans of marker matches in `text`, sorted, merged."""
    text = text.translate(_FULL_WIDTH)
    spans = sorted(m.span() for _, pattern in _compiled(markers) for m in pattern.finditer(text) if m.end() > m.start())
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def is_correct(sample: dict) -> bool | None:
    """True/False when the sample says whether its answer is right, None when it cannot tell."""
    if isinstance(sample.get("correct"), bool):
        return sample["correct"]
    acc = (sample.get("rewards") or {}).get("accuracy")
    if isinstance(acc, (int, float)):
        return acc >= 1.0
    return None


def track(samples: Iterable[dict], markers=None, first_steps: int = 5, links_per_step: int = 3) -> dict:
    """Reflection statistics of a run's training samples (samples.jsonl records, in file order).

    Returns a JSON-ready dict:
    - markers: the marker list used;
    - steps: per step, n (completions), with_marker, share, n_correct, correct_with_marker,
      share_correct (share of correct completions that reflect), and per_marker counts;
    - per_marker: per marker, total completions holding it, first_step (any completion) and
      first_correct = {step, index} (index: the completion's position within its step in the file);
    - first_correct_steps: the first `first_steps` steps where a marker occurs in a correct answer,
      each with up to `links_per_step` sample indices and the markers found.
    """
    compiled = _compiled(markers)
    names = [name for name, _ in compiled]
    steps: dict[int, dict] = {}
    per_marker = {name: {"total": 0, "first_step": None, "first_correct": None} for name in names}
    first_correct_steps: dict[int, dict] = {}
    for sample in samples:
        step = sample.get("step")
        if not isinstance(step, int):
            continue
        row = steps.setdefault(step, {"step": step, "n": 0, "with_marker": 0, "n_correct": 0,
                                      "correct_with_marker": 0, "per_marker": dict.fromkeys(names, 0)})
        index = row["n"]  # position of this completion within its step
        row["n"] += 1
        found = find_markers(str(sample.get("completion", "")), compiled)
        correct = is_correct(sample)
        row["with_marker"] += bool(found)
        row["n_correct"] += correct is True
        row["correct_with_marker"] += bool(found) and correct is True
        for name in found:
            row["per_marker"][name] += 1
            info = per_marker[name]
            info["total"] += 1
            if info["first_step"] is None or step < info["first_step"]:
                info["first_step"] = step
            if correct and (info["first_correct"] is None or step < info["first_correct"]["step"]):
                info["first_correct"] = {"step": step, "index": index}
        if found and correct:
            entry = first_correct_steps.setdefault(step, {"step": step, "samples": [], "markers": []})
            if len(entry["samples"]) < links_per_step:
                entry["samples"].append(index)
            entry["markers"] = list(dict.fromkeys(entry["markers"] + found))
    rows = [steps[s] for s in sorted(steps)]
    for row in rows:
        row["share"] = row["with_marker"] / row["n"] if row["n"] else 0.0
        row["share_correct"] = row["correct_with_marker"] / row["n_correct"] if row["n_correct"] else None
    return {"markers": names, "steps": rows, "per_marker": per_marker,
            "first_correct_steps": [first_correct_steps[s] for s in sorted(first_correct_steps)][:first_steps]}
