"""What a model's answer is, and when two answers are the same: the one module for both.

Rewards (``r1kit.rewards``), evaluation (``r1kit.evaluation``), the readable format's summary
(``r1kit.readable.final_answer``) and rejection sampling all read answers through these functions, so a
completion is graded the same way in training, in evaluation and in data filtering.

Design decisions:

* Extraction has one documented order (``extract_final_answer``): the last ``<answer>`` tag (and a
  ``\\boxed{}`` inside it), then the last ``\\boxed{}``, then GSM8K's ``####``, then "The answer is", and
  the last number only when asked (the few-shot style, where a base model has no other way to mark its
  answer). The accuracy reward reads only the ``<answer>`` tag (``extract_answer``).
* Answer matching is two-tier. ``normalize_number`` is a small, conservative,
  exact canonicaliser for the very common "the answer is a number" case
  (GSM8K-style golds): it is fast, deterministic and independent of sympy.
  Everything else goes to ``math_verify``, which does symbolic equality
  (``\\frac{1}{2}`` vs ``0.5``, ``x^2+2x+1`` vs ``(x+1)^2``). When both sides
  are plain numbers that differ we still ask math_verify, as the spec of
  ``answers_match`` says; it agrees in practice (``41`` vs ``42`` is False)
  and it knows a few extra equivalences, e.g. ``50%`` vs ``0.5`` is True.
* A numeric gold demands a final numeric prediction. math_verify evaluates
  whatever it is given, so ``39 + 87`` "matched" ``126`` and a policy learned
  to restate the question instead of answering it (a real reward hack). When
  ``normalize_number(gold)`` succeeds, the prediction must itself be written
  as a number (``is_final_number``) before math_verify may see it: a plain
  number, a reduced fraction, or normalised scientific notation. Radicals,
  powers, reducible fractions and any other operation score False, because
  ``\\sqrt{16}`` for ``4`` or ``\\frac{252}{2}`` for ``126`` is the same hack;
  the price is that an exact surd against a rounded decimal gold (``\\sqrt{2}``
  vs ``1.41421356``) scores False too. Symbolic golds are unaffected.
* Numbers are canonicalised by exact string arithmetic on the digits (no
  float, no Decimal context precision), so arbitrarily long numbers never get
  rounded into each other and Python's int-to-str digit limit never bites.
* Matching never raises: a reward that crashes mid-training on one odd
  completion would kill a long run, so every math_verify failure is a False.
* math_verify guards sympy with ``signal.alarm`` timeouts, which only work in
  the main thread; off the main thread we disable them rather than have every
  call fail.
"""

from __future__ import annotations

import functools
import math
import re
import threading

from math_verify import parse, verify

from r1kit.data.problems import gsm8k_gold

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
R1_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)  # in the order a well-formed response has them

# Seconds math_verify may spend on one parse / comparison (main thread only).
MATH_VERIFY_TIMEOUT_S = 5


def extract_answer(text: str) -> str | None:
    """Return the stripped content of the last ``<answer>...</answer>`` pair.

    The pair is found from the end: the last ``</answer>`` and the nearest
    ``<answer>`` before it, so nested or repeated opening tags resolve to the
    innermost, latest answer. A trailing unclosed ``<answer>`` after a closed
    pair is ignored (the closed pair wins); text with no closed pair gives None.
    """
    end = text.rfind(ANSWER_CLOSE)
    if end == -1:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start == -1:
        return None
    return text[start + len(ANSWER_OPEN) : end].strip()


# Formatting-only LaTeX commands whose argument is kept as plain text.
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textrm|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_ASSIGNMENT_RE = re.compile(r"[A-Za-z]\s*=\s*(.+)", re.S)
_NUMBER_RE = re.compile(
    r"""
    (?P<sign1>[+-])?\s*
    (?:[$€£¥]\s*)?                      # leading currency symbol
    (?P<sign2>[+-])?\s*                 # sign may also follow the currency: $-5
    (?P<num>
        [0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?   # 1,000 / 1,000.50
      | [0-9]+(?:\.[0-9]*)?                     # 1000 / 1000. / 1000.5
      | \.[0-9]+                                # .5
    )
    \s*(?P<pct>%)?
    (?P<unit>(?:\s+[A-Za-z]+(?:\^\{?[0-9]\}?)?(?:/[A-Za-z]+)?){1,3})?
    """,
    re.X,
)
# Words that join two quantities rather than name a unit ("2 or more").
_NOT_UNITS = {"and", "or", "plus", "minus"}


def _unwrap_braced(s: str, prefix: str) -> str | None:
    """If ``s`` is exactly ``prefix{...}`` with balanced braces, return the inside."""
    if not (s.startswith(prefix) and s.endswith("}")):
        return None
    depth = 0
    for i in range(len(prefix) - 1, len(s)):
        if s[i] == "{":
            depth += 1
        elif s[i] == "}":
            depth -= 1
            if depth == 0:
                # The opening brace must close at the very end, otherwise this
                # is e.g. "\boxed{1}+\boxed{2}" and not a single wrapper.
                return s[len(prefix) : -1] if i == len(s) - 1 else None
    return None


def _strip_decoration(text: str) -> str:
    """Peel wrappers and decoration off ``text`` until nothing changes."""
    s = text.strip()
    while True:
        prev = s
        s = s.replace("−", "-")  # unicode minus sign
        s = _TEXT_CMD_RE.sub(lambda m: f" {m.group(1)} ", s)
        s = s.replace("{,}", ",").replace("\\,", "").replace("\\!", "").replace("\\ ", " ")
        s = s.replace("\\$", "$").replace("\\%", "%")
        s = _DEGREE_RE.sub("", s)
        s = s.strip().rstrip(".").strip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : -len(right)].strip()
                break
        for cmd in ("\\boxed", "\\fbox"):
            inner = _unwrap_braced(s, cmd + "{")
            if inner is not None:
                s = inner.strip()
        m = _ASSIGNMENT_RE.fullmatch(s)
        if m:
            s = m.group(1).strip()
        if s == prev:
            return s


def normalize_number(text: str) -> str | None:
    """Canonical decimal string for a decorated plain number, else None.

    Accepted decoration: surrounding whitespace, ``$...$`` / ``$$...$$`` /
    ``\\(...\\)`` / ``\\[...\\]``, ``\\boxed{}``, ``\\text{}``-like commands,
    a trailing period, thousands commas (``1,000``, ``1{,}000``, ``1\\,000``),
    a leading currency sign (``$``, ``\\$``, ``€``, ``£``, ``¥``), a leading
    ``+``/``-``, trailing zeros after the decimal point, a degree sign, and a
    trailing ``%`` — which is simply dropped: ``50%`` gives ``"50"``, not
    ``"0.5"``, because golds for percentage questions are written without it.

    Up to three trailing unit words (``18 dollars``, ``5 cm``, ``3 km/h``,
    ``12 cm^2``) are dropped, but they must be separated from the number by
    whitespace and at least one must be two or more letters long. So ``2x``,
    ``2 x`` and ``5cm`` are None (they may be algebra; math_verify gets them).

    A single-letter variable assignment is read as its right-hand side:
    ``x = 3`` gives ``"3"``. Anything else (``\\frac``, several numbers,
    scientific notation, ``1,00``) gives None.

    Output: optional ``-``, integer part without leading zeros, then ``.`` and
    the fractional digits without trailing zeros if any remain
    (``0.50`` -> ``"0.5"``, ``.5`` -> ``"0.5"``, ``7.00`` -> ``"7"``, ``-0`` -> ``"0"``).
    """
    s = _strip_decoration(text)
    m = _NUMBER_RE.fullmatch(s)
    if m is None or (m.group("sign1") and m.group("sign2")):
        return None
    unit = m.group("unit")
    if unit:
        words = [w for w in re.split(r"[\s/^{}0-9]+", unit) if w]
        if not any(len(w) >= 2 for w in words) or any(w.lower() in _NOT_UNITS for w in words):
            return None
    sign = m.group("sign1") or m.group("sign2") or ""
    int_part, _, frac_part = m.group("num").replace(",", "").partition(".")
    int_part = int_part.lstrip("0") or "0"
    frac_part = frac_part.rstrip("0")
    if int_part == "0" and not frac_part:
        return "0"
    number = int_part + (f".{frac_part}" if frac_part else "")
    return f"-{number}" if sign == "-" else number


# Final numeric forms other than plain numbers, matched after _strip_decoration.
# Fraction arguments follow TeX: braced, or a single digit (\tfrac12).
_FRACTION_RE = re.compile(
    r"""
    (?P<sign>[+-])?\s*
    (?:
        \\[dt]?frac\s*
        (?:\{\s*(?P<bnum>[+-]?[0-9]+)\s*\}|(?P<dnum>[0-9]))\s*
        (?:\{\s*(?P<bden>[0-9]+)\s*\}|(?P<dden>[0-9]))
      | (?P<pnum>[+-]?[0-9]+)\s*/\s*(?P<pden>[0-9]+)
    )
    """,
    re.X,
)
# Mantissa restricted to [1, 10) so "39 \times 10^{3}" cannot restate a product.
_SCIENTIFIC_RE = re.compile(
    r"""
    [+-]?\s*[1-9](?:\.[0-9]+)?
    (?:
        \s*(?:\\times|\\cdot|×|·)\s*10\s*\^\s*(?:\{\s*[+-]?[0-9]+\s*\}|[+-]?[0-9]+)
      | [eE][+-]?[0-9]+
    )
    """,
    re.X,
)


def is_final_number(text: str) -> bool:
    """True if ``text`` is written as a number, not as a computation to perform.

    Guards numeric golds against reward hacking: math_verify evaluates its
    input, so ``39 + 87`` equals ``126`` to it, and a policy trained on that
    learns to copy the question into ``<answer>``. Accepted: anything
    ``normalize_number`` reads; a single fraction of integers in lowest terms
    with denominator >= 2 (``\\frac{1}{2}``, ``\\dfrac{3}{4}``, ``\\tfrac12``,
    ``1/2``, ``-\\frac{1}{2}``); scientific notation with mantissa in [1, 10)
    (``1.26 \\times 10^{2}``, ``1.5E3``); each possibly decorated as for
    ``normalize_number`` (``$...$``, ``\\boxed{}``) and followed by ``%``.
    A leading sign is not an operation. Everything else is False, including
    ``\\sqrt{16}``, ``2^3`` and ``\\frac{252}{2}``: an unreduced fraction still
    has a division left to do.
    """
    if normalize_number(text) is not None:
        return True
    s = _strip_decoration(text)
    s = s[:-1].rstrip() if s.endswith("%") else s
    if _SCIENTIFIC_RE.fullmatch(s):
        return True
    m = _FRACTION_RE.fullmatch(s)
    if m is None:
        return False
    num = m.group("bnum") or m.group("dnum") or m.group("pnum")
    den = int(m.group("bden") or m.group("dden") or m.group("pden"))
    if m.group("sign") and num[0] in "+-":
        return False  # "-\frac{-1}{2}": two signs is sign arithmetic
    return den >= 2 and math.gcd(int(num), den) == 1


@functools.lru_cache(maxsize=4096)
def _mv_parse_one(text: str, timeout: int | None) -> tuple:
    # Cached because a GRPO group scores many completions against one gold.
    return tuple(parse(text, parsing_timeout=timeout))


def mv_parse(text: str, timeout: int | None) -> list:
    """math_verify parse; bare text is tried wrapped in ``$...$`` first.

    math_verify only reads LaTeX inside math delimiters (``x^2+2x+1`` bare
    parses to nothing), so undelimited text is wrapped; the other form is the
    fallback when the first attempt finds nothing.
    """
    delimited = any(d in text for d in ("$", "\\(", "\\[", "\\boxed"))
    attempts = (text, f"${text}$") if delimited else (f"${text}$", text)
    for attempt in attempts:
        parsed = _mv_parse_one(attempt, timeout)
        if parsed:
            return list(parsed)
    return []


def answers_match(pred: str, gold: str) -> bool:
    """True if ``pred`` is the same answer as ``gold``; never raises.

    First both are compared with ``normalize_number`` (``1,000`` == ``1000``,
    ``$18`` == ``18 dollars`` == ``\\boxed{18}``). Otherwise math_verify decides
    with ``verify(parse(gold), parse(pred))``: symbolic equality, so
    ``\\frac{1}{2}`` == ``0.5`` and ``x^2+2x+1`` == ``(x+1)^2``. math_verify
    compares floats with a small relative tolerance, but ``0.3333`` vs
    ``\\frac{1}{3}`` is outside it and is False. When the gold is a plain
    number the prediction must be a final number (``is_final_number``), so
    ``39 + 87`` vs ``126`` is False. An empty prediction, an unparsable side,
    a timeout or any exception inside math_verify is False.
    """
    try:
        if not pred or not pred.strip():
            return False
        pred_num, gold_num = normalize_number(pred), normalize_number(gold)
        if pred_num is not None and pred_num == gold_num:
            return True
        if gold_num is not None and not is_final_number(pred):
            return False  # a computation, not an answer: see is_final_number
        in_main = threading.current_thread() is threading.main_thread()
        timeout = MATH_VERIFY_TIMEOUT_S if in_main else None
        gold_parsed = mv_parse(gold, timeout)
        pred_parsed = mv_parse(pred, timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - a grader crash must cost a reward, not a run
        return False


def last_boxed(text: str) -> str | None:
    r"""Content of the last \boxed{...} (or \fbox{...}) with balanced braces."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start == -1:
        return None
    i = text.find("{", start)
    if i == -1:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1: j].strip()
    return None


ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n]+?)\$?\s*(?:\.\s|\.$|$|\n)", re.I)
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_final_answer(text: str, allow_last_number: bool = False) -> str | None:
    """The model's final answer, looked for in this order:

    1. the content of the last <answer>...</answer> (and a \\boxed{} inside it, if any);
    2. the last \\boxed{...};
    3. GSM8K's "#### <answer>";
    4. "The answer is <answer>";
    5. only with allow_last_number (the few-shot style): the last number in the text.
    """
    tagged = extract_answer(text)
    if tagged is not None:
        return last_boxed(tagged) or tagged
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    hashes = gsm8k_gold(text) if "####" in text else None
    if hashes:
        return hashes
    said = ANSWER_IS.findall(text)
    if said:
        return said[-1].strip()
    if allow_last_number:
        numbers = _LAST_NUMBER.findall(text)
        if numbers:
            return numbers[-1].replace(",", "")
    return None
