"""Tests for r1kit.rewards: format/tag rewards, answer matching, reward combination."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1kit.core.errors import RewardError
from r1kit.data.templates import R1_ZERO_TEMPLATE
from r1kit.rewards.answers import answers_match, extract_answer, normalize_number
from r1kit.rewards.functions import accuracy_reward, format_reward, tag_count_reward, template_penalty_reward
from r1kit.rewards.registry import REWARDS, register_reward
from r1kit.rewards.scoring import compute_rewards
from r1kit.rewards.tags import TEMPLATE_EXAMPLES, is_template_example, template_copy_rate

PERFECT = "<think>\nLet me add 2 and 2.\n</think>\n<answer>4</answer>"

# (completion, format score, tag_count score)
FORMAT_CASES = [
    pytest.param(PERFECT, 1.0, 1.0, id="perfect"),
    pytest.param("  \n<think>2+2</think>  <answer> 4 </answer>\n\n", 1.0, 1.0, id="perfect-whitespace"),
    pytest.param("<think></think><answer></answer>", 0.0, 0.0, id="empty-blocks"),
    pytest.param("<think> \n </think><answer>4</answer>", 0.0, 0.0, id="blank-think"),
    pytest.param("<think>2 + 2 = 4</think><answer> ... </answer>", 0.0, 0.0, id="punctuation-only-answer"),
    # the template's own example, as policies learn to copy it, and small variations of it
    pytest.param("<think> reasoning process here </think> <answer> answer here </answer>", 0.0, 0.0,
                 id="template-example"),
    pytest.param("<think>Reasoning process here.</think>\n<answer>4</answer>", 0.0, 0.0, id="example-think"),
    pytest.param("<think>2 + 2 = 4</think> <answer>**Answer  here**</answer>", 0.0, 0.0, id="example-answer"),
    pytest.param("<think>reasoning process:</think><answer>4</answer>", 0.0, 0.0, id="example-without-here"),
    pytest.param("<think> reasoning process here </think> the answer", 0.0, 0.0, id="example-think-no-answer"),
    # real content that mentions the words is real content
    pytest.param("<think>the reasoning process here is 2 + 2</think><answer>4</answer>", 1.0, 1.0,
                 id="example-words-inside-reasoning"),
    # a numeric gold needs a number in the answer block for format credit (tag_count only counts tags)
    pytest.param("<think>2 + 2 = 4</think><answer>four</answer>", 0.0, 1.0, id="word-answer-numeric-gold"),
    # ... and a think that engages the question: for a numeric gold it works with two numbers or more
    pytest.param("<think> calculation </think><answer>4</answer>", 0.0, 1.0, id="think-without-number"),
    pytest.param("<think>7</think><answer>4</answer>", 0.0, 1.0, id="think-a-lone-number"),
    pytest.param("<think>3 + 1</think><answer>4</answer>", 1.0, 1.0, id="think-works-with-the-numbers"),
    pytest.param("<think> here </think><answer>4</answer>", 0.0, 0.0, id="filler-think"),
    pytest.param("<think>Your thinking process here</think><answer>4</answer>", 0.0, 0.0, id="reworded-example"),
    pytest.param("<think>add them</think><answer>2 + 2</answer>", 0.0, 1.0, id="expression-answer-numeric-gold"),
    pytest.param("<think>add 2 and 3</think><answer>\\boxed{5}</answer>", 1.0, 1.0, id="wrong-number-is-formatted"),
    pytest.param("<think>2+2</think>", 0.0, 0.5, id="think-only"),
    pytest.param("<think>2+2</think> the answer is 4", 0.0, 0.5, id="no-answer-tags"),
    pytest.param("<think>2+2</think><answer>4", 0.0, 0.75, id="missing-answer-close"),
    pytest.param("<think>2+2 <answer>4</answer>", 0.0, 0.75, id="missing-think-close"),
    pytest.param("2+2</think><answer>4</answer>", 0.0, 0.75, id="missing-think-open"),
    pytest.param("<think>2+2</think><think>b</think><answer>4</answer>", 0.0, 0.5, id="doubled-think"),
    pytest.param("<think>2+2</think><answer>3</answer><answer>4</answer>", 0.0, 0.5, id="doubled-answer"),
    pytest.param("<answer>4</answer><think>2+2</think>", 0.0, 0.75, id="answer-before-think"),
    pytest.param("</think><think><answer>4</answer>", 0.0, 0.75, id="think-tags-swapped"),
    pytest.param("<think>2+2</think></answer>4<answer>", 0.0, 0.75, id="answer-tags-swapped"),
    pytest.param("</answer><answer></think><think>", 0.0, 0.25, id="fully-reversed"),
    pytest.param("Sure! <think>2+2</think><answer>4</answer>", 0.0, 1.0, id="text-before-think"),
    pytest.param("<think>2+2</think> so <answer>4</answer>", 0.0, 1.0, id="text-between-blocks"),
    pytest.param("<think>2+2</think><answer>4</answer> done.", 0.0, 1.0, id="text-after-answer"),
    pytest.param("", 0.0, 0.0, id="empty"),
    pytest.param("just some text", 0.0, 0.0, id="no-tags"),
]


@pytest.mark.parametrize(("completion", "fmt", "tags"), FORMAT_CASES)
def test_format_reward(completion: str, fmt: float, tags: float) -> None:
    assert format_reward([completion], ["4"]) == [fmt]


@pytest.mark.parametrize(("completion", "fmt", "tags"), FORMAT_CASES)
def test_tag_count_reward(completion: str, fmt: float, tags: float) -> None:
    assert tag_count_reward([completion], ["4"]) == [tags]


def test_format_of_symbolic_gold_accepts_any_real_answer() -> None:
    completions = ["<think>factor it</think><answer>(x+1)^2</answer>", "<think>ok</think><answer>four</answer>",
                   "<think>ok</think><answer>answer here</answer>"]
    # no number needed in the think or the answer when the gold is not a number
    assert format_reward(completions, ["x^2+2x+1", "", "x"]) == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(("text", "whole", "part"), [
    ("reasoning process here", True, True),
    ("  Reasoning   PROCESS here!! ", True, True),
    ("answer_here", True, True),
    ("Answer:", True, False),
    ("reasoning process", True, False),
    ("the answer here is 4", False, True),
    ("<think> reasoning process here </think>", True, True),
    ("reason process here", True, False),
    ("here", True, False),
    ("a", False, False),
    ("answer heres", False, False),
    ("reasoningprocesshere", False, False),
    ("2 + 2 = 4", False, False),
    ("", False, False),
])
def test_is_template_example(text: str, whole: bool, part: bool) -> None:
    assert is_template_example(text) is whole
    assert is_template_example(text, whole=False) is part


def test_template_examples_come_from_the_verbatim_template() -> None:
    # the R1-Zero template's illustration, as printed in the paper's Table 1
    assert "<think> reasoning process here </think> <answer> answer here </answer>" in R1_ZERO_TEMPLATE
    assert TEMPLATE_EXAMPLES == ("reasoning process here", "answer here")


def test_template_copy_rate() -> None:
    copies = ["<think> reasoning process here </think> <answer> answer here </answer>",
              "<think>Reasoning process here.</think><answer>7</answer>",
              "<think>3 + 4 = 7</think><answer>Answer here: 7</answer>",
              "<think> reason here </think>\n<answer> 7 </answer>"]  # a reworded example block
    real = ["<think>3 + 4 = 7</think><answer>7</answer>", "<think>I add the reasoning process</think><answer>7</answer>",
            "<think></think><answer>7</answer>", "", "no tags at all"]
    assert template_copy_rate(copies) == 1.0
    assert template_copy_rate(real) == 0.0
    assert template_copy_rate(copies[:1] + real) == pytest.approx(1 / 6)
    assert template_copy_rate([]) == 0.0
    # the penalty marks exactly the completions the rate counts
    assert template_penalty_reward(copies + real, ["7"] * 9) == [-1.0] * 4 + [0.0] * 5


def test_template_penalty_cancels_accuracy_on_a_copied_think() -> None:
    completions = ["<think> reasoning process here </think> <answer>7</answer>", "<think>3 + 4 = 7</think><answer>7</answer>"]
    totals, _ = compute_rewards(["format", "accuracy", "template_penalty"], [0.5, 2.0, 2.0], completions, ["7", "7"])
    assert totals == [0.0 + 2.0 - 2.0, 0.5 + 2.0]


def test_perfect_format_implies_full_tag_count() -> None:
    completions = [c.values[0] for c in FORMAT_CASES]
    golds = [""] * len(completions)
    fmt_scores = format_reward(completions, golds)
    tag_scores = tag_count_reward(completions, golds)
    for completion, fmt, tags in zip(completions, fmt_scores, tag_scores):
        if fmt == 1.0:
            assert tags == 1.0, completion


def _wrap(answer: str) -> str:
    return f"<think>working</think>\n<answer>{answer}</answer>"


ACCURACY_CASES = [
    pytest.param(_wrap("\\frac{1}{2}"), "0.5", 1.0, id="frac-vs-decimal"),
    pytest.param(_wrap("0.5"), "\\frac{1}{2}", 1.0, id="decimal-vs-frac"),
    pytest.param(_wrap("1,000"), "1000", 1.0, id="thousands-comma"),
    pytest.param(_wrap("1000"), "1,000", 1.0, id="thousands-comma-gold"),
    pytest.param(_wrap("18 dollars"), "18", 1.0, id="units-word"),
    pytest.param(_wrap("$18"), "18", 1.0, id="currency"),
    pytest.param(_wrap("\\boxed{42}"), "42", 1.0, id="boxed"),
    pytest.param(_wrap("x = 3"), "3", 1.0, id="assignment"),
    pytest.param(_wrap("(x+1)^2"), "x^2+2x+1", 1.0, id="symbolic"),
    pytest.param(_wrap("41"), "42", 0.0, id="wrong-number"),
    pytest.param(_wrap("\\frac{1}{3}"), "0.5", 0.0, id="wrong-frac"),
    pytest.param(_wrap("19 dollars"), "18", 0.0, id="wrong-with-units"),
    pytest.param(_wrap(""), "42", 0.0, id="empty-answer"),
    pytest.param("<think>so it is 42</think> 42", "42", 0.0, id="missing-answer-tag"),
    pytest.param("<think>a</think><answer>42", "42", 0.0, id="unclosed-answer-tag"),
    pytest.param("<answer>41</answer> wait <answer>42</answer>", "42", 1.0, id="last-answer-wins"),
    pytest.param("<answer>42</answer> wait <answer>41</answer>", "42", 0.0, id="last-answer-wrong"),
    # Reward hack seen in training: restating the sum instead of answering it.
    pytest.param("<think>..</think> <answer> 39 + 87 </answer>", "126", 0.0, id="restated-computation"),
]


@pytest.mark.parametrize(("completion", "gold", "expected"), ACCURACY_CASES)
def test_accuracy_reward(completion: str, gold: str, expected: float) -> None:
    assert accuracy_reward([completion], [gold]) == [expected]


def test_accuracy_reward_batch_pairs_completions_with_their_answers() -> None:
    completions = [_wrap("1"), _wrap("2"), _wrap("3")]
    assert accuracy_reward(completions, ["1", "3", "3"]) == [1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>42</answer>", "42"),
        ("<answer>  spaced out \n</answer>", "spaced out"),
        ("<answer>1</answer><answer>2</answer>", "2"),
        ("<answer>a<answer>b</answer>", "b"),
        ("<answer></answer>", ""),
        ("<answer>1</answer> then <answer>2", "1"),
        ("<answer>42", None),
        ("42</answer>", None),
        ("no tags", None),
        ("", None),
    ],
)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", "42"),
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("0.50", "0.5"),
        ("007", "7"),
        ("7.0", "7"),
        ("7.00", "7"),
        ("-0", "0"),
        ("-3.25", "-3.25"),
        ("+7", "7"),
        ("1,000", "1000"),
        ("1,234,567.890", "1234567.89"),
        ("1{,}000", "1000"),
        ("$18", "18"),
        ("\\$18", "18"),
        ("-$5", "-5"),
        ("$-5", "-5"),
        ("$42$", "42"),
        ("$$42$$", "42"),
        ("\\(42\\)", "42"),
        ("\\boxed{42}", "42"),
        ("$\\boxed{42}$", "42"),
        ("\\text{42}", "42"),
        ("42.", "42"),
        ("50%", "50"),
        ("50\\%", "50"),
        ("18 dollars", "18"),
        ("18\\text{ dollars}", "18"),
        ("5 cm", "5"),
        ("12 apples", "12"),
        ("3 km/h", "3"),
        ("12 cm^2", "12"),
        ("30^\\circ", "30"),
        ("x = 3", "3"),
        ("$y=-2$", "-2"),
        ("123456789012345678901234567890.10", "123456789012345678901234567890.1"),
        # Not plain numbers: left to math_verify.
        ("\\frac{1}{2}", None),
        ("2x", None),
        ("2 x", None),
        ("5cm", None),
        ("1 and 2", None),
        ("2 or more", None),
        ("1,00", None),
        ("1e3", None),
        ("x^2", None),
        ("\\boxed{1}+\\boxed{2}", None),
        ("+-5", None),
        ("abc", None),
        ("", None),
        ("   ", None),
    ],
)
def test_normalize_number(text: str, expected: str | None) -> None:
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("0.5", "\\frac{1}{2}", True),
        ("1,000", "1000", True),
        ("18 dollars", "18", True),
        ("$18", "18", True),
        ("\\boxed{42}", "42", True),
        ("x^2+2x+1", "(x+1)^2", True),
        ("41", "42", False),
        ("0.3333", "\\frac{1}{3}", False),  # outside math_verify's float tolerance
        ("", "42", False),
        ("   ", "42", False),
        ("no idea", "42", False),
        ("42", "", False),
        # Numeric gold: the prediction must be a final number, not a computation
        # that math_verify would evaluate for the policy (reward hacking).
        ("39 + 87", "126", False),
        ("126", "126", True),
        ("87+39", "126", False),
        ("2^3", "8", False),
        ("2*4", "8", False),
        ("2 \\times 4", "8", False),
        ("16 \\div 2", "8", False),
        ("\\sqrt{64}", "8", False),
        ("\\frac{16}{2}", "8", False),  # unreduced: a division left to do
        ("16/2", "8", False),
        ("\\frac{2}{4}", "0.5", False),
        ("10^{3}", "1000", False),
        ("39 \\times 10^{3}", "39000", False),  # mantissa outside [1, 10)
        ("x = 39 + 87", "126", False),
        ("39 + 87 = 126", "126", False),
        ("\\frac{\\frac{1}{2}}{1}", "0.5", False),
        ("\\frac{1}{2}", "0.5", True),
        ("\\dfrac{3}{4}", "0.75", True),
        ("\\tfrac12", "0.5", True),
        ("1/2", "0.5", True),
        ("-\\frac{1}{2}", "-0.5", True),
        ("\\frac{-1}{2}", "-0.5", True),
        ("$\\frac{1}{2}$", "0.5", True),
        ("\\boxed{\\frac{1}{2}}", "0.5", True),
        ("1.26 \\times 10^{2}", "126", True),
        ("1.5 \\cdot 10^3", "1500", True),
        ("2 \\times 10^{-3}", "0.002", True),
        ("1.5E3", "1500", True),
        ("50\\%", "50", True),
        ("$126$", "126", True),
        ("\\boxed{126}", "126", True),
        # Symbolic golds still go to math_verify unchanged.
        ("\\frac{2}{4}", "\\frac{1}{2}", True),
        ("\\sqrt{2}", "\\sqrt{2}", True),
    ],
)
def test_answers_match(pred: str, gold: str, expected: bool) -> None:
    assert answers_match(pred, gold) is expected


def test_answers_match_swallows_math_verify_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import r1kit.rewards.answers as answers  # where answers_match and its math_verify calls live

    def boom(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("sympy exploded")

    monkeypatch.setattr(answers, "verify", boom)
    assert answers_match("\\frac{1}{2}", "0.5") is False
    # The numeric fast path does not need math_verify at all.
    assert answers_match("1,000", "1000") is True


# --------------------------------------------------------------------------
# compute_rewards
# --------------------------------------------------------------------------

COMPLETIONS = [PERFECT, "<think>no answer</think>", "<think>2 + 3</think><answer>5</answer>"]
ANSWERS = ["4", "4", "4"]


@pytest.mark.parametrize(
    ("weights", "expected_total"),
    [
        (None, [3.0, 0.5, 2.0]),
        ([1.0, 1.0, 1.0], [3.0, 0.5, 2.0]),
        ([2.0, 0.5, 1.0], [2.0 * 1 + 0.5 * 1 + 1.0, 0.5 * 0.5, 2.0 * 0 + 0.5 * 1 + 1.0]),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    ],
)
def test_compute_rewards_weights(weights: list[float] | None, expected_total: list[float]) -> None:
    total, per = compute_rewards(["accuracy", "tag_count", "format"], weights, COMPLETIONS, ANSWERS)
    assert total == pytest.approx(expected_total)
    assert per == {
        "accuracy": [1.0, 0.0, 0.0],
        "tag_count": [1.0, 0.5, 1.0],
        "format": [1.0, 0.0, 1.0],
    }


def test_compute_rewards_accepts_callables_named_by_dunder_name() -> None:
    def length_bonus(completions: list[str], answers: list[str]) -> list[float]:
        return [len(c) / 100 for c in completions]

    total, per = compute_rewards([length_bonus, "format"], [2.0, 1.0], ["ab", PERFECT], ["", "4"])
    assert set(per) == {"length_bonus", "format"}
    assert per["length_bonus"] == pytest.approx([0.02, len(PERFECT) / 100])
    assert total == pytest.approx([0.04, 2 * len(PERFECT) / 100 + 1.0])


def test_compute_rewards_empty_batch() -> None:
    assert compute_rewards(["format", "accuracy"], None, [], []) == ([], {"format": [], "accuracy": []})


def test_compute_rewards_unknown_name_lists_known() -> None:
    with pytest.raises(ValueError, match="no_such_reward") as excinfo:
        compute_rewards(["format", "no_such_reward"], None, COMPLETIONS, ANSWERS)
    for known in ("accuracy", "format", "tag_count"):
        assert known in str(excinfo.value)


@pytest.mark.parametrize("weights", [[], [1.0], [1.0, 1.0, 1.0]])
def test_compute_rewards_wrong_weights_length(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="weight"):
        compute_rewards(["format", "accuracy"], weights, COMPLETIONS, ANSWERS)


def test_compute_rewards_mismatched_batch_lengths() -> None:
    with pytest.raises(ValueError):
        compute_rewards(["format"], None, COMPLETIONS, ANSWERS[:1])


def test_compute_rewards_raising_reward_names_reward_and_sample() -> None:
    def picky(completions: list[str], answers: list[str]) -> list[float]:
        out = []
        for c in completions:
            if "bad" in c:
                raise KeyError("cannot score")
            out.append(0.0)
        return out

    completions = ["fine", "also fine", "this one is bad", "bad again"]
    with pytest.raises(RewardError) as excinfo:
        compute_rewards(["format", picky], None, completions, ["1"] * 4)
    message = str(excinfo.value)
    assert "reward 'picky'" in message
    assert "sample 2" in message
    assert "KeyError" in message
    assert "this one is bad" in message
    assert isinstance(excinfo.value.__cause__, KeyError)


def test_compute_rewards_batch_only_failure_is_reward_error() -> None:
    def needs_pairs(completions: list[str], answers: list[str]) -> list[float]:
        if len(completions) % 2:
            raise ValueError("odd batch")
        return [0.0] * len(completions)

    with pytest.raises(RewardError, match="needs_pairs"):
        compute_rewards([needs_pairs], None, ["a", "b", "c"], ["1", "2", "3"])


@pytest.mark.parametrize(
    ("bad_scores", "match"),
    [
        ([1.0, float("nan")], "sample 1"),
        ([float("inf"), 0.0], "sample 0"),
        ([0.0, "1.0"], "sample 1"),
        ([None, 0.0], "sample 0"),
        ([1.0], "1 scores for 2"),
        ((1.0 for _ in range(2)), "generator"),
    ],
)
def test_compute_rewards_invalid_scores(bad_scores: object, match: str) -> None:
    def broken(completions: list[str], answers: list[str]) -> object:
        return bad_scores

    with pytest.raises(RewardError, match=match) as excinfo:
        compute_rewards([broken], None, ["a", "b"], ["1", "2"])
    assert "broken" in str(excinfo.value)


def test_register_reward_adds_and_rejects_duplicates() -> None:
    name = "test_rewards__constant"
    try:

        @register_reward(name)
        def constant(completions: list[str], answers: list[str]) -> list[float]:
            return [0.5] * len(completions)

        assert REWARDS[name] is constant
        assert compute_rewards([name], None, ["x"], ["y"]) == ([0.5], {name: [0.5]})

        with pytest.raises(ValueError, match=name):

            @register_reward(name)
            def other(completions: list[str], answers: list[str]) -> list[float]:
                return [0.0] * len(completions)

        assert REWARDS[name] is constant
    finally:
        REWARDS.pop(name, None)


def test_register_reward_rejects_builtin_name() -> None:
    with pytest.raises(ValueError):
        register_reward("accuracy")(lambda c, a: [0.0] * len(c))
    assert REWARDS["accuracy"] is accuracy_reward


# --------------------------------------------------------------------------
# Property test
# --------------------------------------------------------------------------

BUILTIN_REWARDS = ["format", "tag_count", "accuracy"]

# Plain text plus text salted with tags and LaTeX, so the tag and answer
# paths are exercised rather than only the "no tags" branch.
_FRAGMENTS = st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "\\frac{1}{2}", "\\boxed{", "$", "1,000", " ", "x=", "%"]
)
TEXT = st.one_of(st.text(), st.lists(st.one_of(st.text(max_size=5), _FRAGMENTS), max_size=12).map("".join))


@settings(max_examples=200, deadline=None)
@given(completion=TEXT, gold=st.one_of(st.text(max_size=10), st.sampled_from(["42", "0.5", "\\frac{1}{2}"])))
def test_rewards_and_helpers_are_total(completion: str, gold: str) -> None:
    for name in BUILTIN_REWARDS:
        scores = REWARDS[name]([completion], [gold])
        assert len(scores) == 1
        assert isinstance(scores[0], float)
        assert math.isfinite(scores[0]) and 0.0 <= scores[0] <= 1.0

    extracted = extract_answer(completion)
    assert extracted is None or isinstance(extracted, str)
    normalized = normalize_number(completion)
    assert normalized is None or isinstance(normalized, str)
    assert isinstance(answers_match(completion, gold), bool)
    if extracted is not None:
        assert isinstance(answers_match(extracted, gold), bool)


def test_every_builtin_reward_has_a_doctest_and_the_doctests_pass():
    import doctest

    import r1kit.rewards.functions as functions
    from r1kit.rewards.registry import REWARDS

    with_examples = {t.name.rsplit(".", 1)[-1] for t in doctest.DocTestFinder().find(functions) if t.examples}
    builtin = {fn.__name__ for fn in REWARDS.values() if getattr(fn, "__module__", None) == functions.__name__}
    assert builtin and builtin <= with_examples, builtin - with_examples
    result = doctest.testmod(functions)
    assert result.attempted >= len(builtin) and result.failed == 0
