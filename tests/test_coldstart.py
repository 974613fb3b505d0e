"""Tests for r1kit.pipeline.coldstart: cold-start data from R1-Zero samples, a user's JSONL and a few-shot model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from r1kit.core.errors import ConfigError, DataError
from r1kit.pipeline.coldstart import (
    BUILTIN_FEWSHOT,
    ColdStartConfig,
    build_cold_start,
    fewshot_prompt,
    make_coldstart_config,
    readable_from_tags,
)
from r1kit.rewards.functions import readable_accuracy_reward
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN as TOK
from r1kit.rewards.readable import parse_readable
from r1kit.rollout.sampling import Rollout


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_data(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "data.jsonl").read_text(encoding="utf-8").splitlines()]


def check_report(report: list[dict]) -> None:
    """Each row's out is the next row's in, and in - dropped = out."""
    for row in report:
        assert row["in"] - row["dropped"] == row["out"]
    for prev, row in zip(report, report[1:]):
        assert row["in"] == prev["out"]


GOOD_56 = "<think> I add 38 and 18. 30 + 10 = 40 and 8 + 8 = 16, so 40 + 16 = 56. </think> <answer> 56 </answer>"
GOOD_42 = "<think>\nSix groups of seven: 7 * 6 = 42.\n</think>\n<answer>\\boxed{42}</answer>"
ZERO_SAMPLES = [
    # (completion, prompt_id, question, gold, step, why it goes)
    (GOOD_56, "p1", "What is 38 + 18?", "56", 3, None),
    ("<think> 38 + 18 is 57. </think> <answer>57</answer>", "p1", "What is 38 + 18?", "56", 3, "correct"),
    ("<think> I add them up. </think> <answer>38 + 18</answer>", "p1", "What is 38 + 18?", "56", 3, "correct"),
    ("<think> Let me think 让我想想 about this sum: 10 + 5 = 15 </think> <answer>15</answer>", "p2",
     "What is 10 + 5?", "15", 3, "language"),
    ("<think> " + "I add ten and five to get the sum. " * 8 + "</think> <answer>15</answer>", "p2",
     "What is 10 + 5?", "15", 3, "repetition"),
    ("<think> " + " ".join(f"step {i} adds one more unit to the total." for i in range(40)) + " </think> <answer>15</answer>",
     "p2", "What is 10 + 5?", "15", 3, "length"),
    ("<think> Run it:\n```python\nprint(10 + 5)\n```\nIt prints 15. </think> <answer>15</answer>", "p2",
     "What is 10 + 5?", "15", 3, "code_blocks"),
    ("<think> I start adding 6 and", "p3", "What is 6 * 7?", "42", 3, "convert"),  # truncated
    ("<think> 6 * 7 </think> the end", "p3", "What is 6 * 7?", "42", 3, "correct"),  # no answer stated
    (GOOD_42, "p3", "What is 6 * 7?", "42", 3, None),
    (GOOD_56.replace(" I add", "I  add"), "p1", "What is 38 + 18?", "56", 4, "deduplicate"),
]


@pytest.fixture()
def zero_run(tmp_path) -> Path:
    run = tmp_path / "zero_run"
    run.mkdir()
    write_jsonl(run / "samples.jsonl", [
        {"step": step, "prompt_id": pid, "question": q, "answer": gold, "completion": text, "reward": 0.0}
        for text, pid, q, gold, step, _ in ZERO_SAMPLES])
    return run


def test_readable_from_tags():
    assert readable_from_tags(GOOD_42) == f"{TOK}Six groups of seven: 7 * 6 = 42.{TOK}The answer is \\boxed{{42}}."
    assert readable_from_tags("</think> The sum is 4.") is None  # empty reasoning
    assert readable_from_tags("<think>add</think> The sum is 4.") == f"{TOK}add{TOK}The sum is 4."
    assert readable_from_tags("<think>add</think> <answer> 4 </answer>", "So: {answer}!", "<s>") == "<s>add<s>So: 4!"
    assert readable_from_tags("<think>add <answer>3</answer></think> <answer>4</answer>") is None  # tags inside
    assert readable_from_tags("<think>add</think> <answer></answer>") is None
    assert readable_from_tags("<think>unfinished") is None


def test_cold_start_from_zero_samples_keeps_exactly_the_good_ones(zero_run, tmp_path, capsys):
    out = tmp_path / "out"
    config = ColdStartConfig(zero_samples=str(zero_run), output_dir=str(out), max_response_chars=500)
    summary = build_cold_start(config)
    data = read_data(out)
    assert [(r["prompt_id"], r["response"]) for r in data] == [
        ("p1", f"{TOK}I add 38 and 18. 30 + 10 = 40 and 8 + 8 = 16, so 40 + 16 = 56.{TOK}The answer is 56."),
        ("p3", f"{TOK}Six groups of seven: 7 * 6 = 42.{TOK}The answer is \\boxed{{42}}."),
    ]
    assert [r["prompt"] for r in data] == ["What is 38 + 18?", "What is 6 * 7?"]
    assert [r["answer"] for r in data] == ["56", "42"] and {r["source"] for r in data} == {"zero_samples"}
    for r in data:
        assert parse_readable(r["response"]) is not None
        assert readable_accuracy_reward([r["response"]], [r["answer"]]) == [1.0]

    report = json.loads((out / "filter_report.json").read_text())["zero_samples"]
    rows = {row["rule"]: row["dropped"] for row in report["report"]}
    expected = {}
    for *_, why in ZERO_SAMPLES:
        if why:
            expected[why] = expected.get(why, 0) + 1
    assert {rule: n for rule, n in rows.items() if n} == expected
    assert report["samples"] == len(ZERO_SAMPLES) and report["kept"] == 2
    check_report(report["report"])
    assert summary["num_examples"] == 2 and summary["sources"]["zero_samples"]["written"] == 2
    assert json.loads((out / "coldstart_summary.json").read_text())["num_examples"] == 2
    printed = capsys.readouterr().out
    assert "zero_samples: 11 samples -> 2 kept" in printed and "repetition" in printed
    assert not list(out.glob(".*.tmp"))

    # an existing set is not overwritten by accident
    with pytest.raises(ConfigError, match="overwrite_output_dir"):
        build_cold_start(config)
    # zero_min_step drops the early steps first; the step-4 duplicate is then the one kept
    config = ColdStartConfig(zero_samples=str(zero_run / "samples.jsonl"), output_dir=str(out),
                             overwrite_output_dir=True, zero_min_step=4)
    build_cold_start(config)
    data = read_data(out)
    assert [r["prompt_id"] for r in data] == ["p1"]
    report = json.loads((out / "filter_report.json").read_text())["zero_samples"]["report"]
    assert report[0]["rule"] == "step" and report[0]["dropped"] == len(ZERO_SAMPLES) - 1


def test_cold_start_from_user_jsonl_with_custom_fields(tmp_path):
    user = write_jsonl(tmp_path / "user.jsonl", [
        {"problem": "What is 2 + 3?", "gold": 5, "thoughts": "Two plus three is five.", "final": "The answer is 5."},
        {"problem": "What is 4 + 4?", "gold": "8", "thoughts": "Four and four make nine.", "final": "The answer is 9."},
        {"problem": "What is 9 - 1?", "gold": "8", "reply": "<think> Nine minus one is eight. </think> <answer>8</answer>"},
        {"problem": "What is 1 + 1?", "gold": "2", "reply": f"{TOK} One and one is two. {TOK} So the result is 2."},
        {"problem": "What is 3 + 3?", "gold": "6", "thoughts": " ", "final": "The answer is 6."},  # empty reasoning
        {"problem": "What is 5 + 5?", "gold": "10", "reply": "The answer is 10."},  # no chain of thought
    ])
    out = tmp_path / "out"
    config = make_coldstart_config(overrides={
        "user_dataset": str(user), "question_field": "problem", "answer_field": "gold", "reasoning_field": "thoughts",
        "summary_field": "final", "response_field": "reply", "output_dir": str(out)})
    build_cold_start(config)
    data = read_data(out)
    assert [(r["prompt"], r["response"], r["answer"]) for r in data] == [
        ("What is 2 + 3?", f"{TOK}Two plus three is five.{TOK}The answer is 5.", "5"),
        ("What is 9 - 1?", f"{TOK}Nine minus one is eight.{TOK}The answer is 8.", "8"),
        ("What is 1 + 1?", f"{TOK}One and one is two.{TOK}So the result is 2.", "2"),
    ]
    assert [r["prompt_id"] for r in data] == ["user.jsonl:1", "user.jsonl:3", "user.jsonl:4"]
    report = json.loads((out / "filter_report.json").read_text())["user_dataset"]["report"]
    assert [(row["rule"], row["dropped"]) for row in report if row["dropped"]] == [("convert", 2), ("correct", 1)]
    check_report(report)


def test_user_jsonl_without_gold_is_not_checked_and_max_examples_caps(tmp_path):
    user = write_jsonl(tmp_path / "user.jsonl", [
        {"question": f"Q{i}?", "id": f"q{i}", "response": f"{TOK}Reasoning number {i}.{TOK}Summary {i}."}
        for i in range(6)])
    out = tmp_path / "out"
    summary = build_cold_start(ColdStartConfig(user_dataset=str(user), output_dir=str(out), max_examples=3, seed=1))
    data = read_data(out)
    assert len(data) == 3 and summary["kept_before_cap"] == 6 and summary["num_examples"] == 3
    ids = [r["prompt_id"] for r in data]
    assert ids == sorted(ids) and all(r["answer"] is None for r in data)  # a subset, kept in order
    report = json.loads((out / "filter_report.json").read_text())["user_dataset"]["report"]
    assert report[1]["rule"] == "correct" and "not checked" in report[1]["description"]
    # the same seed draws the same subset; another seed (very likely) another one
    again = tmp_path / "again"
    build_cold_start(ColdStartConfig(user_dataset=str(user), output_dir=str(again), max_examples=3, seed=1))
    assert read_data(again) == data


def test_fewshot_prompt_shape():
    shots = [("What is 1 + 1?", f"{TOK}One plus one.{TOK}The answer is 2.")]
    prompt = fewshot_prompt(" What is 2 + 2? ", shots, TOK)
    assert prompt == (f"Question: What is 1 + 1?\nAnswer: {TOK}One plus one.{TOK}The answer is 2.\n\n"
                      f"Question: What is 2 + 2?\nAnswer: {TOK}")
    # the built-in examples are themselves correct: golds worked out by hand (23+45, 3*4-5, 2*5+3)
    for (question, reasoning, summary), gold in zip(BUILTIN_FEWSHOT, ["68", "7", "13"], strict=True):
        assert readable_accuracy_reward([f"{TOK}{reasoning}{TOK}{summary}"], [gold]) == [1.0]


def test_cold_start_fewshot_with_scripted_generations(tiny_model, tmp_path, monkeypatch):
    """The few-shot path with the model's output scripted: conversion, cutting and correctness are exact."""
    import r1kit.rollout.sampling

    scripted = [
        "I add 0 and 1.|special_token|The answer is 1.\n\nQuestion: What",  # stop string cut off: kept
        "I add.|special_token|The answer is 7.",  # wrong
        "no separator here",  # not the readable format
        "Adding gives 1.|special_token|The answer is 1.",  # truncated (hit max_new_tokens): dropped
    ]
    calls = []

    def fake_generate(model, tokenizer, prompts, *, num_generations, **kw):
        calls.append((prompts, num_generations, kw))
        n = len(prompts) * num_generations
        texts = (scripted * n)[:n]
        return Rollout(prompt_ids=None, prompt_mask=None, completion_ids=None, completion_mask=None, logprobs=None,
                       completions=texts, truncated=torch.tensor([i % 4 == 3 for i in range(n)]))

    monkeypatch.setattr(r1kit.rollout.sampling, "generate", fake_generate)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"question": "What is 0 + 1?", "answer": "1"}])
    out = tmp_path / "out"
    build_cold_start(ColdStartConfig(fewshot_model=tiny_model, prompts_dataset=str(prompts), num_samples=4,
                                     num_fewshot=1, output_dir=str(out), dtype="float32"))
    (prompt_texts, g, kw), = calls
    assert g == 4 and kw["stop_strings"] == ("Question:",) and prompt_texts[0].endswith(f"What is 0 + 1?\nAnswer: {TOK}")
    assert prompt_texts[0].count("Question:") == 2  # one example, then the question
    assert read_data(out) == [{"prompt": "What is 0 + 1?", "response": f"{TOK}I add 0 and 1.{TOK}The answer is 1.",
                               "answer": "1", "prompt_id": "prompts.jsonl:1", "source": "fewshot_model"}]
    report = json.loads((out / "filter_report.json").read_text())["fewshot_model"]["report"]
    assert [(row["rule"], row["dropped"]) for row in report if row["dropped"]] == [("convert", 2), ("correct", 1)]

    # the kept user samples as few-shot examples: the prompt shows them, and both sources are written
    user = write_jsonl(tmp_path / "user.jsonl", [
        {"question": "What is 5 + 5?", "answer": "10", "reasoning": "Five and five.", "summary": "The answer is 10."},
        {"question": "What is 5 + 6?", "answer": "11", "reasoning": "Five and six.", "summary": "The answer is 10."}])
    calls.clear()
    build_cold_start(ColdStartConfig(fewshot_model=tiny_model, prompts_dataset=str(prompts), num_samples=4,
                                     user_dataset=str(user), fewshot_examples="user_dataset", output_dir=str(out),
                                     overwrite_output_dir=True, dtype="float32"))
    (prompt_texts, _, _), = calls
    assert prompt_texts[0].startswith(f"Question: What is 5 + 5?\nAnswer: {TOK}Five and five.{TOK}The answer is 10.\n\n"
                                      "Question: What is 0 + 1?")  # the wrong user sample is no example
    assert [r["source"] for r in read_data(out)] == ["user_dataset", "fewshot_model"]


def test_cold_start_fewshot_tiny_model_accounts_for_every_sample(tiny_model, tmp_path):
    torch.set_num_threads(1)
    config = dict(fewshot_model=tiny_model, prompts_dataset="arithmetic", num_prompts=3, num_samples=2,
                  num_fewshot=1, max_new_tokens=12, temperature=1.0, dtype="float32", seed=3)
    out = tmp_path / "out"
    summary = build_cold_start(ColdStartConfig(**config, output_dir=str(out)))
    report = json.loads((out / "filter_report.json").read_text())["fewshot_model"]
    assert report["samples"] == 3 * 2 == report["report"][0]["in"]
    check_report(report["report"])
    assert report["report"][-1]["out"] == report["kept"] == summary["num_examples"]
    assert report["report"][1] == {**report["report"][1], "rule": "correct", "description": "correct responses only"}
    data = read_data(out)
    assert len(data) == report["kept"]
    for r in data:  # junk is expected; whatever was kept must be readable and correct
        assert parse_readable(r["response"]) is not None
        assert readable_accuracy_reward([r["response"]], [r["answer"]]) == [1.0]
    # deterministic for a seed
    again = tmp_path / "again"
    build_cold_start(ColdStartConfig(**config, output_dir=str(again)))
    assert (again / "data.jsonl").read_text() == (out / "data.jsonl").read_text()
    assert (again / "filter_report.json").read_text() == (out / "filter_report.json").read_text()


def test_bad_input(tmp_path, zero_run, tiny_model, monkeypatch):
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="user_dataset, zero_samples, fewshot_model"):
        build_cold_start(ColdStartConfig(output_dir=out))
    with pytest.raises(ConfigError, match="prompts_dataset"):
        build_cold_start(ColdStartConfig(fewshot_model="x", output_dir=out))
    with pytest.raises(ConfigError, match="did you mean zero_samples"):
        make_coldstart_config(overrides={"zero_sample": "x"})
    with pytest.raises(ConfigError, match="min_language_consistency"):
        build_cold_start(ColdStartConfig(zero_samples=str(zero_run), min_language_consistency=1.5, output_dir=out))
    with pytest.raises(DataError, match="no such file"):
        build_cold_start(ColdStartConfig(user_dataset=str(tmp_path / "missing.jsonl"), output_dir=out))
    with pytest.raises(DataError, match="no such file or folder"):
        build_cold_start(ColdStartConfig(zero_samples=str(tmp_path / "missing"), output_dir=out))
    with pytest.raises(DataError, match="no samples.jsonl"):
        build_cold_start(ColdStartConfig(zero_samples=str(tmp_path), output_dir=out))
    user = write_jsonl(tmp_path / "user.jsonl", [{"question": "Q?", "response": f"{TOK}r{TOK}s"},
                                                 {"response": f"{TOK}r{TOK}s"}])
    with pytest.raises(DataError, match=r"user.jsonl:2: missing field 'question'"):
        build_cold_start(ColdStartConfig(user_dataset=str(user), output_dir=out))
    user = write_jsonl(tmp_path / "user2.jsonl", [{"question": "Q?", "answer": "1", "response": f"{TOK}r{TOK}s"},
                                                  {"question": "Q?", "answer": "1", "reasoning": "r"}])
    with pytest.raises(DataError, match=r"user2.jsonl:2: needs field 'response'"):
        build_cold_start(ColdStartConfig(user_dataset=str(user), output_dir=out))
    user = write_jsonl(tmp_path / "user3.jsonl", [{"question": "Q?", "answer": "1", "response": f"{TOK}r{TOK}s"},
                                                  {"question": "Q?", "response": f"{TOK}r{TOK}s"}])
    with pytest.raises(DataError, match=r"user3.jsonl:2: missing field 'answer' while other records"):
        build_cold_start(ColdStartConfig(user_dataset=str(user), output_dir=out))
    # a bad source is reported before any model loads
    import r1kit.models.loading

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the sources were checked")

    monkeypatch.setattr(r1kit.models.loading, "load_model", no_load)
    monkeypatch.setattr(r1kit.models.loading, "load_tokenizer", no_load)
    zero = write_jsonl(tmp_path / "samples.jsonl", [{"prompt_id": "p", "question": "Q?", "answer": "1",
                                                     "completion": "<think>a</think><answer>1</answer>"},
                                                    {"prompt_id": "p", "question": "Q?", "answer": "1"}])
    with pytest.raises(DataError, match=r"samples.jsonl:2: missing field 'completion'"):
        build_cold_start(ColdStartConfig(zero_samples=str(zero), fewshot_model=tiny_model,
                                         prompts_dataset="arithmetic", output_dir=out))
    assert not Path(out).exists()
