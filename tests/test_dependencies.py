"""The installed environment can do what r1kit relies on: math-verify parses LaTeX (a missing or mismatched
antlr runtime makes it return nothing, silently scoring every LaTeX answer wrong), and the installed
transformers is inside the range pyproject.toml declares."""

import re
from importlib.metadata import version
from pathlib import Path

import sympy
from math_verify import parse

from r1kit.rewards.answers import answers_match

REPO = Path(__file__).resolve().parents[1]


def test_math_verify_parses_latex():
    parsed = parse("$\\frac{1}{2}$")
    assert parsed, "math-verify parsed nothing: its LaTeX parser (antlr4-python3-runtime) is missing or mismatched"
    assert sympy.simplify(parsed[0] - sympy.Rational(1, 2)) == 0
    expr = parse("$\\sqrt{16} + x^2$")[0]
    (x,) = expr.free_symbols  # math-verify's own symbol (it carries assumptions a plain Symbol("x") lacks)
    assert x.name == "x" and sympy.simplify(expr - (4 + x**2)) == 0


def test_answers_match_needs_the_latex_parser():
    assert answers_match("\\frac{1}{2}", "0.5")
    assert answers_match("(x+1)^2", "x^2+2x+1")
    assert answers_match("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2")
    assert not answers_match("\\frac{1}{3}", "0.5")


def _bounds(package: str) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    text = (REPO / "pyproject.toml").read_text()
    spec = re.search(rf'"{package}>=([\d.]+)(?:,<([\d.]+))?"', text)
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    return as_tuple(spec.group(1)), as_tuple(spec.group(2)) if spec.group(2) else None


def test_installed_transformers_is_inside_the_declared_range():
    low, high = _bounds("transformers")
    installed = tuple(int(x) for x in re.match(r"[\d.]+", version("transformers")).group(0).rstrip(".").split("."))
    assert high is not None, "transformers needs an upper bound: 5.40 removes past_key_values"
    assert low <= installed < high
