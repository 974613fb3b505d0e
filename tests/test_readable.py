"""Tests for r1kit.rewards.readable (the R1 readable format, language consistency), its rewards and r1kit.pipeline.filters."""

from __future__ import annotations

import pytest

from r1kit.core.errors import ConfigError
from r1kit.pipeline.filters import (
    FilterSettings,
    cap_per_prompt,
    count_code_blocks,
    deduplicate,
    filter_samples,
    format_report,
    keep_code_blocks,
    keep_correct,
    keep_language,
    keep_length,
    keep_reasoning,
    keep_repetition,
    keep_summary,
    repetition_fraction,
)
from r1kit.rewards.functions import language_consistency_reward, readable_accuracy_reward, readable_format_reward
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN as TOK
from r1kit.rewards.readable import (
    final_answer,
    language_consistency,
    parse_readable,
    split_reasoning,
    to_readable,
    word_languages,
)
from r1kit.rewards.registry import REWARDS, bind_reward_options
from r1kit.rewards.scoring import score_completions

RULE_ORDER = ["correct", "reasoning", "summary", "length", "repetition", "language", "code_blocks",
              "deduplicate", "max_per_prompt"]


# --------------------------------------------------------------------------
# The readable format
# --------------------------------------------------------------------------


def test_to_readable_and_parse_round_trip():
    text = to_readable("  First 2 + 2 = 4.\n", "\nThe answer is 4.  ")
    assert text == f"{TOK}First 2 + 2 = 4.{TOK}The answer is 4."
    assert parse_readable(text) == ("First 2 + 2 = 4.", "The answer is 4.")
    assert parse_readable(f"\n {text}\n") == ("First 2 + 2 = 4.", "The answer is 4.")  # outer whitespace ok
    assert to_readable("r", "s", special_token="<sep>") == "<sep>r<sep>s"
    assert parse_readable("<sep>r<sep>s", special_token="<sep>") == ("r", "s")
    assert parse_readable("<sep>r<sep>s") is None  # another separator
    with pytest.raises(ValueError, match="separator"):
        to_readable(f"a {TOK} b", "s")


@pytest.mark.parametrize("text", [
    f"{TOK}reasoning{TOK}",  # empty summary
    f"{TOK}  {TOK}summary",  # empty reasoning
    f"{TOK}a{TOK}b{TOK}c",  # a third separator
    f"intro {TOK}a{TOK}b",  # text before the first separator
    f"{TOK}only one",
    "no separator at all",
    "<think>a</think> <answer>1</answer>",
])
def test_parse_readable_rejects(text):
    assert parse_readable(text) is None


def test_split_reasoning_shapes():
    assert split_reasoning(f"{TOK} think {TOK} sum ") == ("think", "sum")
    assert split_reasoning("<think> a b </think> <answer>5</answer>") == ("a b", "<answer>5</answer>")
    # the opening tag may have been prefilled in the prompt
    assert split_reasoning(" a b </think> The answer is 5.") == ("a b", "The answer is 5.")
    assert split_reasoning("The answer is 5.") == ("", "The answer is 5.")
    assert split_reasoning("<think> truncated reasoning") == ("", "<think> truncated reasoning")
    assert split_reasoning("<think>a</think><think>b</think>x") == ("", "<think>a</think><think>b</think>x")
    assert split_reasoning("junk <think>a</think> x") == ("", "junk <think>a</think> x")


def test_final_answer_reads_the_final_part_only():
    # the reasoning mentions 12, the summary states 7
    assert final_answer(f"{TOK}12 - 5 = 7, not 12.{TOK}The answer is 7.") == "7"
    assert final_answer(f"{TOK}so 3 + 4{TOK}It is \\boxed{{7}}.") == "7"
    assert final_answer(f"{TOK}r{TOK}so we get 8 apples") == "8"  # last number of the summary
    assert final_answer("<think>I get 5, no 6</think> <answer>6</answer>") == "6"
    assert final_answer("plain text ending in 42") == "42"
    # a marker that does not split: no final part, no answer (not the reasoning's last number)
    assert final_answer(f"{TOK}so it is 9{TOK}") is None
    assert final_answer("<think> 12 and then 13") is None
    assert final_answer(f"{TOK}a{TOK}b{TOK}3") is None
    assert final_answer("<s>r<s>The answer is 3.", special_token="<s>") == "3"


# --------------------------------------------------------------------------
# Language consistency
# --------------------------------------------------------------------------


def test_language_consistency_english_chinese_mixed():
    assert language_consistency("Let me think about this problem carefully.") == 1.0
    # 5 Latin words (Let, me, think, about, this) and 4 ideographs (让我想想): 5/9 English, 4/9 Chinese
    mixed = "Let me think 让我想想 about this"
    assert word_languages(mixed) == ["en", "en", "en", "zh", "zh", "zh", "zh", "en", "en"]
    assert language_consistency(mixed, "en") == pytest.approx(5 / 9)
    assert language_consistency(mixed, "zh") == pytest.approx(4 / 9)
    chinese = "我们先计算两个数的和。"
    assert language_consistency(chinese, "zh") == 1.0
    assert language_consistency(chinese, "en") == 0.0


def test_language_consistency_ignores_numbers_math_and_latex():
    assert word_languages("12 + 35 = 47, 3.5 * 2 = 7 !? ( ) % ≤") == []
    # \frac and \boxed are commands, not English words; x and y are variables
    assert language_consistency("我们得到 \\frac{1}{2} 和 \\boxed{7}, x = y + 1", "zh") == 1.0
    assert language_consistency("Add \\frac{1}{2} to 3", "en") == 1.0
    assert word_languages("Add \\frac{1}{2} to 3") == ["en", "en"]


def test_language_consistency_empty_and_wordless_text_score_zero():
    assert language_consistency("") == 0.0
    assert language_consistency("38 + 18 = 56") == 0.0
    with pytest.raises(ValueError, match="unsupported"):
        language_consistency("hello", "xx")


def test_other_scripts_are_foreign_words():
    assert word_languages("Привет мир") == ["ru", "ru"]
    assert language_consistency("so Привет мир", "en") == pytest.approx(1 / 3)
    assert language_consistency("ひらがな", "ja") == 1.0
    assert language_consistency("漢字とかな", "ja") == 1.0  # Japanese accepts Han ideographs
    assert language_consistency("한국어", "ko") == 1.0
    assert language_consistency("café naïve", "en") == 1.0


# --------------------------------------------------------------------------
# Rewards
# --------------------------------------------------------------------------


def test_language_consistency_reward_uses_only_the_chain_of_thought():
    english_cot_chinese_summary = f"{TOK}Add the numbers: 2 + 2 = 4.{TOK}答案是 4。"
    chinese_cot_english_summary = f"{TOK}我们把两个数相加。{TOK}The answer is 4."
    tagged = "<think>First add them up</think> <answer>答案</answer>"
    scores = language_consistency_reward([english_cot_chinese_summary, chinese_cot_english_summary, tagged,
                                          "plain english text with no chain of thought"], ["4"] * 4)
    assert scores == [1.0, 0.0, 1.0, 0.0]
    zh = language_consistency_reward([chinese_cot_english_summary], ["4"], language="zh")
    assert zh == [1.0]
    assert language_consistency_reward(["<s>Add them<s>sum"], [""], special_token="<s>") == [1.0]
    assert "language_consistency" in REWARDS and "readable_format" in REWARDS and "readable_accuracy" in REWARDS


def test_readable_format_reward():
    completions = [f"{TOK}reason{TOK}summary", f" {TOK}reason{TOK}summary\n", f"{TOK}reason{TOK}",
                   "<think>a</think><answer>1</answer>", f"{TOK}a{TOK}b{TOK}c"]
    assert readable_format_reward(completions, [""] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert readable_format_reward(["<s>a<s>b", f"{TOK}a{TOK}b"], ["", ""], special_token="<s>") == [1.0, 0.0]


def test_readable_accuracy_reward():
    completions = [
        f"{TOK}3 * 4 = 12, minus 5 is 7.{TOK}The answer is 7.",  # right
        f"{TOK}I think 7.{TOK}The answer is 8.",  # the summary is wrong, the reasoning's 7 does not count
        f"{TOK}7{TOK}The answer is 3 + 4.",  # a computation is not a final number
        f"{TOK}so it is 7{TOK}",  # no summary
        f"{TOK}half{TOK}The answer is \\frac{{1}}{{2}}.",  # symbolic gold
    ]
    golds = ["7", "7", "7", "7", "0.5"]
    assert readable_accuracy_reward(completions, golds) == [1.0, 0.0, 0.0, 0.0, 1.0]


def test_bind_reward_options_binds_what_each_reward_accepts_and_keeps_names():
    funcs = bind_reward_options(["format", "language_consistency", "readable_accuracy", "readable_format"],
                                language="zh", special_token="<s>", unknown_option=1)
    assert funcs[0] == "format"  # accepts no option: returned as given
    assert [getattr(f, "__name__", f) for f in funcs] == ["format", "language_consistency", "readable_accuracy",
                                                        "readable_format"]
    assert funcs[1].keywords == {"language": "zh", "special_token": "<s>"}
    assert funcs[2].keywords == {"special_token": "<s>"}
    completion = "<s>我们把三和四相加。<s>The answer is 7."
    totals, per_reward, failures = score_completions(funcs, None, [completion], ["7"])
    assert per_reward == {"format": [0.0], "language_consistency": [1.0], "readable_accuracy": [1.0],
                          "readable_format": [1.0]}
    assert totals == [3.0] and failures == []
    # unbound, the same completion scores nothing on the readable rewards (default separator, English)
    _, plain, _ = score_completions(["language_consistency", "readable_format"], None, [completion], ["7"])
    assert plain == {"language_consistency": [0.0], "readable_format": [0.0]}
    # bound rewards also run in the forked worker under a time limit
    _, timed, _ = score_completions(funcs, None, [completion], ["7"], timeout=30)
    assert timed == per_reward
    with pytest.raises(ValueError, match="unknown reward"):
        bind_reward_options(["nope"], language="en")


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------


def sample(pid: str, reasoning: str = "Add 2 and 2 to get 4.", summary: str = "The answer is 4.", **extra) -> dict:
    return {"prompt_id": pid, "response": to_readable(reasoning, summary), **extra}


def test_each_rule_drops_what_it_should():
    s = FilterSettings()
    good = sample("p")
    for rule in (keep_correct, keep_reasoning, keep_summary, keep_length, keep_repetition, keep_language,
                 keep_code_blocks):
        assert rule({**good, "correct": True}, s), rule.__name__
    assert not keep_correct({**good, "correct": False}, s)
    assert not keep_correct({**good, "correct": None}, s)
    assert not keep_correct(good, s)
    assert not keep_reasoning({"prompt_id": "p", "response": "The answer is 4."}, s)
    assert not keep_reasoning({"prompt_id": "p", "response": f"{TOK} {TOK}The answer is 4."}, s)
    assert keep_reasoning({"prompt_id": "p", "response": "<think>ok</think> 4"}, s)
    assert not keep_summary({"prompt_id": "p", "response": "<think>Add them.</think>"}, s)
    assert not keep_length(sample("p", "word " * 2000), s)
    assert keep_length(sample("p", "word " * 2000), FilterSettings(max_response_chars=0))
    loop = "Let me check the sum again. " * 6
    assert repetition_fraction(loop) > 0.5 and not keep_repetition(sample("p", loop), s)
    assert repetition_fraction("a b c") == 0.0 and repetition_fraction("one two three four one two three four") == pytest.approx(1 / 5)
    mixed = sample("p", "Let me think 让我想想 about this")
    assert not keep_language(mixed, s)
    assert keep_language(mixed, FilterSettings(min_language_consistency=0.5))
    assert keep_language(mixed, FilterSettings(min_language_consistency=0.0))
    assert keep_language(sample("p", "38 + 18 = 56"), s)  # no words, so nothing foreign
    assert keep_language(sample("p", "我们把三和四相加。"), FilterSettings(language="zh"))
    # the summary's language does not matter
    assert keep_language(sample("p", "Add them.", "答案是 4。"), s)
    code = sample("p", "Run it:\n```python\nprint(2 + 2)\n```\nIt prints 4.")
    assert count_code_blocks("```a``` ```b") == 2
    assert not keep_code_blocks(code, s)
    assert keep_code_blocks(code, FilterSettings(max_code_blocks=1))
    assert keep_code_blocks(code, FilterSettings(max_code_blocks=-1))
    assert keep_code_blocks(sample("p", "Add them.", "```print(4)```"), s)  # summary code is fine


def test_deduplicate_and_cap_per_prompt():
    s = FilterSettings(max_per_prompt=2)
    a1, a2 = sample("a", "Add 2 and 2."), sample("a", "Add  2\nand 2. ")  # same after whitespace normalising
    a3, a4 = sample("a", "Two plus two."), sample("a", "Count on from 2.")
    b1 = sample("b", "Add 2 and 2.")  # same text, other prompt: kept
    assert deduplicate([a1, a2, a3, b1], s) == [a1, a3, b1]
    assert deduplicate([a1, a2], FilterSettings(deduplicate=False)) == [a1, a2]
    assert cap_per_prompt([a1, b1, a3, a4], s) == [a1, b1, a3]
    assert cap_per_prompt([a1, a3, a4], FilterSettings(max_per_prompt=0)) == [a1, a3, a4]


def test_filter_samples_report_adds_up():
    samples = [
        sample("p1", correct=True),  # kept
        sample("p1", correct=False),  # correct
        {"prompt_id": "p1", "response": "The answer is 4.", "correct": True},  # reasoning
        {"prompt_id": "p2", "response": f"{TOK}Add them.{TOK}", "correct": True},  # reasoning (not a split)
        {"prompt_id": "p2", "response": "<think>Add them.</think>  ", "correct": True},  # summary
        sample("p2", "x " * 5000, correct=True),  # length
        sample("p2", "Let me check the sum again. " * 6, correct=True),  # repetition
        sample("p3", "Let me think 让我想想 about this", correct=True),  # language
        sample("p3", "```\nprint(4)\n```", correct=True),  # code_blocks
        sample("p1", correct=True),  # deduplicate (same as the first)
        sample("p1", "Two plus two is four.", correct=True),  # kept
        sample("p1", "Count: 3, 4.", correct=True),  # max_per_prompt (third kept for p1)
        sample("p3", "Four.", correct=True),  # kept
    ]
    kept, report = filter_samples(samples, FilterSettings(max_per_prompt=2))
    assert kept == [samples[0], samples[10], samples[12]]
    assert [r["rule"] for r in report] == RULE_ORDER
    assert [r["dropped"] for r in report] == [1, 2, 1, 1, 1, 1, 1, 1, 1]
    assert report[0]["in"] == len(samples) and report[-1]["out"] == len(kept)
    table = format_report(report)
    lines = table.splitlines()
    assert len(lines) == 1 + len(RULE_ORDER) and lines[0].split()[:4] == ["rule", "in", "dropped", "out"]
    assert lines[1].split()[:4] == ["correct", "13", "1", "12"]
    # columns line up: "out" values end at the same position on every line
    ends = {line.index(line.split()[3]) + len(line.split()[3]) for line in lines}
    assert len(ends) == 1


def test_filter_samples_without_correctness_and_disabled_rules():
    samples = [sample("p"), sample("p", "Let me think 让我想想 about this"), sample("p")]
    kept, report = filter_samples(samples, FilterSettings(min_language_consistency=0, deduplicate=False))
    assert kept == samples
    assert [r["rule"] for r in report] == RULE_ORDER
    assert all(r["dropped"] == 0 for r in report)
    assert "not checked" in report[0]["description"]
    assert "off" in report[5]["description"] and "off" in report[7]["description"]
    # a sample with the key makes the rule run for all: the ones without it are dropped
    kept, report = filter_samples([sample("p", correct=True), sample("q")], FilterSettings())
    assert [r["dropped"] for r in report][0] == 1 and len(kept) == 1
    # forced off, correctness is ignored; forced on, an empty list still reports the rule as checked
    kept, report = filter_samples([sample("p", correct=False)], FilterSettings(), check_correct=False)
    assert len(kept) == 1 and report[0]["dropped"] == 0
    _, report = filter_samples([], FilterSettings(), check_correct=True)
    assert report[0]["description"] == "correct responses only"


def test_filter_samples_bad_input():
    with pytest.raises(ValueError, match="sample 0"):
        filter_samples([{"response": "x"}], FilterSettings())
    with pytest.raises(ConfigError, match="max_repetition"):
        filter_samples([], FilterSettings(max_repetition=2.0))
    with pytest.raises(ConfigError, match="language"):
        filter_samples([], FilterSettings(language="klingon"))
