"""Rejection sampling (R1 stage 3): rule and judge correctness, the filter chain, non-reasoning merge, outputs."""

import dataclasses
import json
import re

import pytest
import torch

import r1kit.pipeline.rejection as rejection
from r1kit.core.errors import ConfigError, DataError
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.pipeline.filters import FilterSettings
from r1kit.pipeline.rejection import (
    Judge,
    RejectionConfig,
    check_correct,
    gold_is_checkable,
    make_rejection_config,
    non_reasoning_records,
    rejection_sample,
    sample_responses,
    select,
)
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN as T
from r1kit.rewards.readable import parse_readable, to_readable


def readable(cot: str, summary: str) -> str:
    return to_readable(cot, summary)


def sample(pid: str, gold: str, response: str, question: str = "q") -> dict:
    return {"prompt_id": pid, "question": question, "answer": gold, "response": response}


# --------------------------------------------------------------------------- correctness by rules


def test_check_correct_rules():
    assert check_correct(readable("3 plus 4 makes 7", "The answer is 7."), "7") is True
    assert check_correct(readable("3 plus 4 makes 8", "The answer is 8."), "7") is False
    assert check_correct(readable("I tried", "I could not solve it."), "7") is False  # states no answer
    assert check_correct(T + "3 plus 4 makes 7, so the answer is 7", "7") is False  # cut off: no summary, no answer
    assert check_correct(readable("restate it", "3 + 4"), "7") is False  # a computation is not a final number
    assert check_correct(readable("half", "\\boxed{\\frac{1}{2}}"), "0.5") is True
    assert check_correct("<think>3 plus 4</think> <answer>7</answer>", "7") is True  # R1-Zero tags too
    # the answer is read from the summary, not from numbers in the chain of thought
    assert check_correct(readable("7 is wrong, it is 8", "The answer is 8."), "7") is False
    # free-text golds cannot be decided by rules, whatever the response says
    assert check_correct(readable("France", "Paris"), "Paris") is None
    assert check_correct(readable("France", "London"), "The capital of France") is None


def test_gold_is_checkable():
    for gold in ["42", "18 dollars", "-3.5", "\\frac{1}{2}", "x^2+2x+1", "(1, 2)", "B", "\\sqrt{2}", "2\\pi",
                 "\\sin(x)", "x = 3"]:
        assert gold_is_checkable(gold), gold
    for gold in ["Paris", "blue whale", "\\text{Paris}", "The capital of France", "yes", "", "  "]:
        assert not gold_is_checkable(gold), gold


# --------------------------------------------------------------------------- selection (no model)


def crafted_samples() -> list[dict]:
    good = readable("3 plus 4 makes 7", "The answer is 7.")
    long_cot = " ".join(f"step{i} adds value{i}" for i in range(40))  # distinct words: long, not repetitive
    return [
        sample("p0", "7", good),                                                      # 0 kept
        sample("p0", "7", good),                                                      # 1 duplicate
        sample("p0", "7", readable("3 plus 4 makes 8", "The answer is 8.")),          # 2 wrong
        sample("p0", "7", readable("I tried hard", "I do not know.")),                # 3 no answer
        sample("p0", "7", "The answer is 7."),                                        # 4 correct, no reasoning
        sample("p0", "7", readable(long_cot, "The answer is 7.")),                    # 5 overlong
        sample("p0", "7", readable("add " * 30 + "done", "The answer is 7.")),        # 6 repetitive
        sample("p0", "7", readable("三 加 四 等于 七 所以 答案 是 七", "The answer is 7.")),  # 7 mixed language
        sample("p0", "7", readable("compute it ```python\nprint(3 + 4)\n``` gives seven", "The answer is 7.")),  # 8 code
        sample("p0", "7", readable("four and three make seven", "So the answer is 7")),  # 9 kept
        *[sample("p1", "12", readable(f"way {w} to count gives twelve", "The answer is 12."))  # 10-15: 4 kept, 2 capped
          for w in ["one", "two", "three", "four", "five", "six"]],
        sample("p2", "Paris", readable("the capital of France is Paris", "Paris")),   # 16 undecided
        sample("p2", "Paris", readable("I think it is London", "London")),            # 17 undecided
    ]


EXPECTED_DROP = {1: "deduplicate", 2: "correct", 3: "correct", 4: "reasoning", 5: "length", 6: "repetition",
                 7: "language", 8: "code_blocks", 14: "max_per_prompt", 15: "max_per_prompt",
                 16: "undecided", 17: "undecided"}


def independently_correct(s: dict) -> bool:
    """The last integer of the text after the second separator equals the gold."""
    summary = s["response"].split(T)[2]
    numbers = re.findall(r"-?\d+", summary)
    return bool(numbers) and numbers[-1] == s["answer"]


def test_select_keeps_only_correct_filtered_samples():
    config = RejectionConfig(max_response_chars=300, max_per_prompt=4)
    samples = crafted_samples()
    kept, report, counts = select(samples, config)

    assert {s["index"]: s["dropped_by"] for s in samples if not s["kept"]} == EXPECTED_DROP
    assert [s["index"] for s in kept] == [0, 9, 10, 11, 12, 13]
    for s in kept:  # each kept sample, checked independently of r1kit's grader and filters
        assert independently_correct(s)
        assert len(s["response"]) <= 300 and "```" not in s["response"]
        assert not re.search(r"[\u4e00-\u9fff]", s["response"])
    per_prompt = {}
    for s in kept:
        per_prompt.setdefault(s["prompt_id"], []).append(s["response"])
    assert all(len(r) == len(set(r)) <= 4 for r in per_prompt.values())

    # counts add up: every sampled response is kept or dropped by exactly one rule, in a chain
    assert counts["sampled"] == len(samples) == len(kept) + sum(row["dropped"] for row in report)
    assert [row["rule"] for row in report] == ["undecided", "correct", "reasoning", "summary", "length", "repetition",
                                               "language", "code_blocks", "deduplicate", "max_per_prompt"]
    assert report[0]["in"] == len(samples) and report[-1]["out"] == len(kept)
    assert all(a["out"] == b["in"] for a, b in zip(report, report[1:]))
    for row in report:
        assert row["dropped"] == sum(s["dropped_by"] == row["rule"] for s in samples)
    assert counts["undecided_dropped"] == 2 and counts["judge_decided"] == 0
    assert counts["rule_decided"] == len(samples) - 2 and counts["kept"] == 6
    assert all(s["correct"] is None and s["decided_by"] is None for s in samples[16:])


class StubJudge:
    def __init__(self):
        self.calls = []

    def judge(self, questions, golds, responses):
        self.calls.append(list(golds))
        return ["Paris" in r.split(T)[-1] for r in responses]


def test_undecided_samples_go_to_the_judge():
    samples = crafted_samples()
    judge = StubJudge()
    kept, report, counts = select(samples, RejectionConfig(max_response_chars=300), judge)
    assert judge.calls == [["Paris", "Paris"]]  # only the samples rules could not decide, in one call
    assert [s["correct"] for s in samples[16:]] == [True, False]
    assert all(s["judged"] and s["decided_by"] == "judge" for s in samples[16:])
    assert not any(s["judged"] for s in samples[:16])
    assert counts["judge_decided"] == 2 and counts["judged_correct"] == 1 and counts["undecided_dropped"] == 0
    assert report[0]["dropped"] == 0
    assert samples[16]["kept"] and samples[17]["dropped_by"] == "correct"
    assert counts["sampled"] == len(kept) + sum(row["dropped"] for row in report)


def test_judge_on_a_tiny_model(tiny_model):
    tok = load_tokenizer(tiny_model)
    model = load_model(tiny_model).eval()
    judge = Judge(model, tok, batch_size=2)
    vocab = tok.get_vocab()
    # character tokens: " yes" and " no" share " ", which goes into the prompt; "y" and "n" are compared
    assert judge.shared_ids == [vocab[" "]] and (judge.yes_id, judge.no_id) == (vocab["y"], vocab["n"])
    questions = ["What is the capital of France?", "Name a colour", "Which ocean is the largest on Earth?"]
    golds = ["Paris", "blue", "the Pacific"]
    responses = [readable("it is Paris", "Paris"), "red", readable("big", "The Atlantic Ocean")]
    scores = judge.scores(questions, golds, responses)
    verdicts = judge.judge(questions, golds, responses)
    assert len(verdicts) == 3 and all(isinstance(v, bool) for v in verdicts)
    assert verdicts == [s > 0 for s in scores]
    # batched, left-padded scores equal a one-at-a-time forward with no padding
    for q, g, r, score in zip(questions, golds, responses, scores):
        ids = tok(judge.prompt(q, g, r) + " ", return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0, -1], dim=-1)
        assert score == pytest.approx(float(logp[judge.yes_id] - logp[judge.no_id]), abs=1e-4)
    assert "Response: Paris\n" in judge.prompt(questions[0], golds[0], responses[0])  # the summary, not the CoT


# --------------------------------------------------------------------------- non-reasoning data


def test_non_reasoning_merge(tmp_path):
    path = tmp_path / "general.jsonl"
    rows = [
        {"prompt": "hello", "response": "Hello! How can I help you today?", "reasoning": "The user greets me."},
        {"prompt": "Hi there", "response": readable("a greeting", "Hi! What can I do for you?")},
        {"prompt": "Write a short poem about the sea and the stars at night", "reasoning": "Rhyme sea with me.",
         "response": "The sea, it calls to me."},
        {"prompt": "Explain in a few sentences why the sky looks blue during the day", "response": "Rayleigh scattering."},
        {"prompt": "Tell me a joke", "simple": False, "reasoning": "Puns work.", "response": "A pun."},
        {"prompt": "Translate good morning into French for me and my friends please", "simple": True,
         "reasoning": "Bonjour.", "response": "Bonjour !", "id": "tr-1"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = non_reasoning_records(rejection.load_non_reasoning(path), path, RejectionConfig())
    assert [r["style"] for r in records] == ["simple", "simple", "readable", "as_is", "readable", "simple"]
    for r, row in zip(records, rows):
        assert r["source"] == "non_reasoning" and r["prompt"] == row["prompt"] and r["answer"] is None
        if r["style"] == "simple":  # a plain answer: no chain of thought at all
            assert T not in r["response"] and "<think>" not in r["response"]
        elif r["style"] == "readable":
            assert parse_readable(r["response"]) == (row["reasoning"], row["response"])
        else:
            assert r["response"] == row["response"]
    assert records[0]["response"] == "Hello! How can I help you today?"
    assert records[1]["response"] == "Hi! What can I do for you?"  # its chain of thought was cut
    assert records[5]["prompt_id"] == "tr-1" and records[0]["prompt_id"] == "general.jsonl:1"


# --------------------------------------------------------------------------- the whole stage


def test_sample_responses_real_model(tiny_model):
    tok = load_tokenizer(tiny_model)
    model = load_model(tiny_model).eval()
    examples = rejection.load_prompts(RejectionConfig(max_prompts=3, seed=3))
    config = RejectionConfig(num_samples=2, max_new_tokens=6, batch_size=2, prefill=T, temperature=1.0, top_p=1.0)
    records = sample_responses(model, tok, examples, config)
    assert len(records) == 6
    assert [(r["prompt_id"], r["sample"]) for r in records] == [(e.id, j) for e in examples for j in range(2)]
    assert all(r["response"].startswith(T) and 1 <= r["length"] <= 6 for r in records)
    assert all(not r["truncated"] or r["length"] == 6 for r in records)
    assert [r["answer"] for r in records[::2]] == [e.answer for e in examples]
    again = sample_responses(model, tok, examples, config)
    assert [r["response"] for r in again] == [r["response"] for r in records]  # seeded per batch
    other = sample_responses(model, tok, examples, dataclasses.replace(config, seed=7))
    assert [r["response"] for r in other] != [r["response"] for r in records]


def test_rejection_sample_real_run_counts(tiny_model, tmp_path, capsys):
    out = tmp_path / "rs"
    config = RejectionConfig(model=tiny_model, max_prompts=3, num_samples=2, max_new_tokens=8, prefill=T,
                             output_dir=str(out))
    counts = rejection_sample(config, show_progress=False)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    data = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert json.loads((out / "counts.json").read_text()) == counts
    assert counts["sampled"] == len(samples) == 6
    assert counts["sampled"] == counts["kept"] + sum(row["dropped"] for row in counts["filter_report"])
    assert len(data) == counts["final_size"] == counts["kept"] == sum(s["kept"] for s in samples)
    for s in samples:
        assert s["kept"] == (s["dropped_by"] is None)
        if s["kept"]:
            assert independently_correct(s)
    assert "max_per_prompt" in capsys.readouterr().out  # the filter table is printed
    with pytest.raises(ConfigError, match="already holds"):
        rejection_sample(config, show_progress=False)


def fake_sampler(model, tokenizer, examples, config, progress=False):
    """Three responses per prompt: correct, wrong, and a duplicate of the correct one."""
    assert isinstance(model, torch.nn.Module)
    records = []
    for e in examples:
        gold = e.answer
        wrong = str(int(gold) + 1) if gold.isdigit() else "London"
        for j, summary in enumerate([f"The answer is {gold}", f"The answer is {wrong}", f"The answer is {gold}"]):
            records.append({"index": len(records), "prompt_id": e.id, "question": e.question, "answer": gold,
                            "response": readable("I work it out step by step", summary),
                            "length": 10, "truncated": False, "sample": j})
    return records


def test_rejection_sample_outputs_and_merge(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(rejection, "sample_responses", fake_sampler)
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"prompt": "hello", "response": "Hi!"}) + "\n" +
                       json.dumps({"prompt": "Write two lines about autumn leaves falling in the park",
                                   "reasoning": "Think of colours.", "response": "Red and gold."}) + "\n")
    out = tmp_path / "rs"
    config = RejectionConfig(model=tiny_model, max_prompts=4, non_reasoning_dataset=str(general), output_dir=str(out))
    counts = rejection_sample(config, show_progress=False)
    data = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert counts["sampled"] == 12 and counts["kept"] == 4 and counts["non_reasoning_added"] == 2
    assert counts["final_size"] == len(data) == 6 and counts["non_reasoning_simple"] == 1
    assert [s["dropped_by"] for s in samples[:3]] == [None, "correct", "deduplicate"]
    reasoning = [r for r in data if r["source"] == "reasoning"]
    assert len(reasoning) == 4 and all(set(r) == {"prompt", "response", "source", "prompt_id", "answer"} for r in data)
    assert all(r["response"].endswith(f"The answer is {r['answer']}") and r["prompt"].startswith("What is")
               for r in reasoning)
    assert [r["response"] for r in data[4:]] == ["Hi!", to_readable("Think of colours.", "Red and gold.")]
    assert not list(out.glob("*.tmp"))
    # overwrite_output_dir replaces the outputs
    rejection_sample(dataclasses.replace(config, overwrite_output_dir=True, max_prompts=2), show_progress=False)
    assert len((out / "samples.jsonl").read_text().splitlines()) == 6


def test_rejection_sample_with_a_tiny_judge(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr(rejection, "sample_responses", fake_sampler)
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text(json.dumps({"question": "What is the capital of France?", "answer": "Paris"}) + "\n" +
                       json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n")
    out = tmp_path / "judged"
    config = RejectionConfig(model=tiny_model, dataset=str(dataset), judge_model=tiny_model, output_dir=str(out))
    counts = rejection_sample(config, show_progress=False)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert counts["judge_decided"] == 3 and counts["rule_decided"] == 3 and counts["undecided_dropped"] == 0
    assert [s["judged"] for s in samples] == [True] * 3 + [False] * 3
    assert all(isinstance(s["correct"], bool) for s in samples)
    assert counts["sampled"] == counts["kept"] + sum(row["dropped"] for row in counts["filter_report"])
    # without a judge the same samples are dropped and counted
    counts = rejection_sample(dataclasses.replace(config, judge_model=None, overwrite_output_dir=True),
                              show_progress=False)
    assert counts["undecided_dropped"] == 3 and counts["judge_decided"] == 0
    assert counts["filter_report"][0] == {"rule": "undecided", "in": 6, "dropped": 3, "out": 3,
                                          "description": counts["filter_report"][0]["description"]}


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_reported_before_the_model_loads(tmp_path):
    missing_model = str(tmp_path / "no-such-model")  # loading it would be a ModelError
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "What is 1+1?", "answer": "2"}) + "\n" +
                   json.dumps({"question": "What is 2+2?"}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{bad}:2") + ".*'answer'"):
        rejection_sample(RejectionConfig(model=missing_model, dataset=str(bad), output_dir=str(tmp_path / "a")))
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"prompt": "hi", "response": "Hello"}) + "\n\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{general}:3") + ".*'response'"):
        rejection_sample(RejectionConfig(model=missing_model, non_reasoning_dataset=str(general), max_prompts=2,
                                         output_dir=str(tmp_path / "b")))
    general.write_text(json.dumps({"prompt": "hi", "response": "Hello", "simple": "yes"}) + "\n")
    with pytest.raises(DataError, match=":1: field 'simple'"):
        rejection_sample(RejectionConfig(model=missing_model, non_reasoning_dataset=str(general), max_prompts=2,
                                         output_dir=str(tmp_path / "c")))
    with pytest.raises(DataError, match="malformed JSON"):
        general.write_text("{not json\n")
        rejection_sample(RejectionConfig(model=missing_model, non_reasoning_dataset=str(general), max_prompts=2,
                                         output_dir=str(tmp_path / "d")))
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "data.jsonl").write_text("")
    with pytest.raises(ConfigError, match="overwrite_output_dir"):
        rejection_sample(RejectionConfig(model=missing_model, max_prompts=2, output_dir=str(taken)))


def test_config_options():
    # the filter options are FilterSettings' own, with the same defaults
    fields = {f.name: f.default for f in dataclasses.fields(RejectionConfig)}
    for f in dataclasses.fields(FilterSettings):
        assert fields[f.name] == f.default, f.name
    c = make_rejection_config(overrides={"num_samples": 8, "judge_model": None, "max_prompts": 5, "max_per_prompt": 0})
    assert (c.num_samples, c.max_prompts, c.max_per_prompt) == (8, 5, 0)
    with pytest.raises(ConfigError, match="unknown option 'num_sample'.*num_samples"):
        make_rejection_config(overrides={"num_sample": 2})
    with pytest.raises(ConfigError, match="num_samples"):
        make_rejection_config(overrides={"num_samples": 0})
    with pytest.raises(ConfigError, match="language"):
        make_rejection_config(overrides={"language": "xx"})
    with pytest.raises(ConfigError, match="template"):
        make_rejection_config(overrides={"template": "fancy"})
    with pytest.raises(ConfigError, match="expects an integer"):
        make_rejection_config(overrides={"max_prompts": "all"})
