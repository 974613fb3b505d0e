"""Evaluation: pass@k against brute force, cons@k with equivalent answers and ties, answer extraction per
benchmark format, benchmark loading with each file's quirks, and `r1kit eval` end to end on a tiny model."""

import itertools
import json
import math

import pytest

from r1kit.core.errors import DataError
from r1kit.evaluation.benchmarks import BENCHMARKS, load_benchmark, select_problems
from r1kit.evaluation.evaluate import majority_vote, pass_at_k, summarize
from r1kit.rewards.answers import answers_match, extract_final_answer
from tests.conftest import DATA_DIR, run_cli

HAS_DATA = (DATA_DIR / "gsm8k" / "test.jsonl").is_file()


@pytest.mark.parametrize("n", range(1, 8))
def test_pass_at_k_equals_brute_force_over_all_k_subsets(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
    assert math.isclose(pass_at_k(10, 3, 1), 0.3)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_majority_vote_groups_equivalent_answers():
    # 0.5 and \frac{1}{2} are one answer with two votes; 3 has two votes but appears later
    assert majority_vote(["3", "0.5", "\\frac{1}{2}", "3", "1/2"]) == "0.5"
    assert answers_match(majority_vote(["\\frac{1}{2}", "7", "0.5"]), "0.5")


def test_majority_vote_ties_go_to_the_first_answer_seen_and_none_is_ignored():
    assert majority_vote(["4", "5", "5", "4"]) == "4"
    assert majority_vote(["5", "4", "4", "5"]) == "5"
    assert majority_vote([None, None, "9", None]) == "9"
    assert majority_vote([None, ""]) is None


def test_cons_at_k_and_pass_at_1_from_records():
    def recs(pid, gold, answers):
        return [{"problem_id": pid, "extracted": a, "gold": gold, "correct": a is not None and answers_match(a, gold),
                 "format_ok": a is not None, "length": 10, "truncated": False, "groups": {"level": "1"}}
                for a in answers]
    records = recs("a", "0.5", ["\\frac{1}{2}", "0.5", "3", "4"]) + recs("b", "7", ["1", "1", "7", None])
    s = summarize(records, 4, pass_k=(2, 4))
    assert s["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert s["cons@4"] == pytest.approx(0.5)  # a: the 1/2 group wins; b: "1" wins the vote
    assert s["pass@4"] == pytest.approx(1.0)
    assert s["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2)) / 2)
    assert s["format_rate"] == pytest.approx(7 / 8)
    assert s["pass@1_by_level"] == {"1": pytest.approx(0.375)}


@pytest.mark.parametrize("text,few_shot,expected", [
    ("<think>2+2</think> <answer>4</answer>", False, "4"),                       # R1 tag
    ("<think>x</think><answer>The result is \\boxed{\\frac{3}{4}}</answer>", False, "\\frac{3}{4}"),
    ("so the answer is \\boxed{\\frac{1}{\\sqrt{2}}} and done", False, "\\frac{1}{\\sqrt{2}}"),  # nested braces
    ("first \\boxed{1} then \\boxed{2}", False, "2"),                            # last boxed
    ("Natalia sold 48/2 = 24 clips.\n#### 1,234", False, "1234"),                # GSM8K marker, commas
    ("Adding them up. The answer is 025.", False, "025"),                        # AIME padding kept for matching
    ("The answer is $27$.", False, "27"),
    ("I think 12 or maybe 13", False, None),                                     # no marker: nothing
    ("I think 12 or maybe 13", True, "13"),                                      # few-shot: last number
    ("total 1,000 apples", True, "1000"),
])
def test_extraction_order(text, few_shot, expected):
    assert extract_final_answer(text, allow_last_number=few_shot) == expected


@pytest.mark.parametrize("pred,gold", [("25", "025"), ("27", "27.0"), ("70", "70"), ("18", "18"),
                                       ("\\frac{14}{3}", "\\frac{14}{3}"), ("1234", "1234")])
def test_benchmark_answer_quirks_match(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.skipif(not HAS_DATA, reason="shared data folder not present")
@pytest.mark.parametrize("name,count", [("gsm8k", 1319), ("math500", 500), ("aime24", 30), ("aime25", 30), ("amc23", 40)])
def test_builtin_benchmarks_load_with_their_fields(name, count):
    problems = load_benchmark(name, str(DATA_DIR))
    assert len(problems) == count
    assert all(p.question and p.answer for p in problems)
    if name == "gsm8k":
        assert problems[0].answer == "18"
    if name == "aime24":
        assert any(p.answer.startswith("0") for p in problems)  # zero-padded strings kept as given
    if name == "amc23":
        assert problems[0].answer == "27.0"
    if name == "math500":
        assert set(problems[0].groups) == {"subject", "level"}


def test_select_problems_first_and_seeded_random():
    from r1kit.evaluation.benchmarks import Problem
    ps = [Problem("q", "1", str(i)) for i in range(20)]
    assert [p.id for p in select_problems(ps, 3)] == ["0", "1", "2"]
    a = select_problems(ps, 5, "random", seed=1)
    assert a == select_problems(ps, 5, "random", seed=1) and a != select_problems(ps, 5, "random", seed=2)
    assert [int(p.id) for p in a] == sorted(int(p.id) for p in a)


def test_bad_benchmark_input(tmp_path):
    with pytest.raises(DataError, match="unknown benchmark 'gsm9k'"):
        load_benchmark("gsm9k", str(tmp_path))
    with pytest.raises(DataError, match="gsm8k/test.jsonl not found"):
        load_benchmark("gsm8k", str(tmp_path))
    f = tmp_path / "mine.jsonl"
    f.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2"}\n')
    with pytest.raises(DataError, match="mine.jsonl:1: missing field 'question'"):
        load_benchmark(str(f), str(tmp_path))
    with pytest.raises(DataError, match="mine.jsonl:2: missing field 'answer'"):
        load_benchmark(str(f), str(tmp_path), question_field="problem")


def test_eval_cli_writes_table_summary_and_samples(tmp_path, tiny_model):
    data = tmp_path / "qs.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{i}+1", "solution": str(i + 1), "id": f"p{i}"}) + "\n"
                            for i in range(5)))
    out = tmp_path / "eval"
    proc = run_cli("eval", "--model", tiny_model, "--benchmark", str(data), "--question_field", "problem",
                   "--answer_field", "solution", "-k", "3", "--max_new_tokens", "6", "--batch_size", "2",
                   "--pass_k", "2", "3", "--output_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "pass@1" in proc.stdout and "cons@3" in proc.stdout
    summary = json.loads((out / "qs" / "summary.json").read_text())
    assert summary["problems"] == 5 and summary["samples_per_problem"] == 3
    assert {"pass@1", "pass@2", "pass@3", "cons@3", "format_rate", "mean_length", "pass@1_no_think", "think_gain",
            "think_tokens"} <= summary.keys()
    assert summary["think_gain"] == summary["pass@1"] - summary["pass@1_no_think"]
    assert "think_gain" in proc.stdout
    samples = [json.loads(x) for x in (out / "qs" / "samples.jsonl").read_text().splitlines()]
    assert [s["mode"] for s in samples] == ["think"] * 15 + ["no_think"] * 15  # the same budget, think removed
    assert {"problem_id", "prompt", "completion", "extracted", "correct", "think_state"} <= samples[0].keys()
    assert [s["problem_id"] for s in samples[:15:3]] == [f"p{i}" for i in range(5)]
    assert all(s["completion"].startswith("<think>\n</think>\n<answer>") for s in samples[15:])


def test_eval_cli_bad_input_is_one_line(tmp_path):
    for args, fragment in [(["--benchmark", "nope"], "unknown benchmark 'nope'"),
                           (["--benchmark", "gsm8k", "--data_dir", str(tmp_path)], "gsm8k/test.jsonl not found")]:
        proc = run_cli("eval", *args)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in proc.stderr


def test_every_builtin_benchmark_is_documented():
    assert set(BENCHMARKS) == {"gsm8k", "math500", "aime24", "aime25", "amc23"}


def test_evaluation_during_training_is_logged_with_the_metrics(tmp_path, tiny_model):
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import train

    out = tmp_path / "run"
    config = make_config(overrides=dict(
        model=tiny_model, max_steps=3, num_generations=2, per_device_train_batch_size=4, max_completion_length=6,
        eval_steps=2, eval_benchmark="arithmetic", eval_limit=3, eval_num_samples=2, log_completions_steps=0,
        save_steps=0, output_dir=str(out)))
    train(config, show_progress=False)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [0, 1, 2, 3]
    evaluated = [m["step"] for m in lines if "eval/pass@1" in m]
    assert evaluated == [0, 2, 3]  # before training, every eval_steps, and at the end
    assert {"eval/cons@2", "eval/format_rate", "eval/mean_length", "eval/pass@1_no_think", "eval/think_gain",
            "eval/think_tokens", "eval/think_unclosed_rate"} <= lines[0].keys()
    assert {"guess_rate", "think_length", "timing/rollout", "timing/update"} <= lines[1].keys()
    samples = [json.loads(x) for x in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 3 * 2 * 2 and {s["step"] for s in samples} == {0, 2, 3}  # with and without the think
    assert sum(s["mode"] == "no_think" for s in samples) == 3 * 3 * 2


# --- whether the think does the work: think_gain on stand-ins whose answers do or do not depend on the think


def _stand_in_generate(answers_need_the_think: bool):
    """A scripted sampler in place of the model: with its own think it works the sum out and answers right;
    with the think removed (the prompt ends in an empty think and <answer>) it answers right only if the
    answer does not need the think. Every other token of the evaluation path is the real one."""
    import re

    import torch

    from r1kit.rollout.sampling import Rollout

    def generate(model, tokenizer, prompts, *, num_generations, **kw):
        texts = []
        for prompt in prompts:
            a, b = map(int, re.search(r"What is (\d+) \+ (\d+)", prompt).groups())
            if prompt.endswith("<answer>"):  # the think was removed
                texts += [f"{a + b if not answers_need_the_think else a + b + 1}</answer>"] * num_generations
            else:
                texts += [f" {a} + {b} = {a + b} </think> <answer>{a + b}</answer>"] * num_generations
        n = len(texts)
        return Rollout(prompt_ids=None, prompt_mask=None, completion_ids=None,
                       completion_mask=torch.ones(n, 4, dtype=torch.long), logprobs=None, completions=texts,
                       truncated=torch.zeros(n, dtype=torch.bool))
    return generate


@pytest.mark.parametrize("needs_think,gain", [(True, 1.0), (False, 0.0)])
def test_think_gain_is_positive_only_when_the_answers_depend_on_the_think(monkeypatch, tiny_model, needs_think,
                                                                          gain):
    import r1kit.evaluation.evaluate as ev
    from r1kit.data.problems import Problem
    from r1kit.models.loading import load_model, load_tokenizer

    monkeypatch.setattr(ev, "generate", _stand_in_generate(needs_think))
    problems = [Problem(f"What is {a} + {b}?", str(a + b), f"p{a}{b}") for a in range(3) for b in range(2)]
    tok, model = load_tokenizer(tiny_model), load_model(tiny_model)
    summary, records = ev.evaluate(model, tok, problems, num_samples=2, prompt_style="r1zero", sampler=model)
    assert summary["pass@1"] == 1.0 and summary["pass@1_no_think"] == 1.0 - gain
    assert summary["think_gain"] == gain
    assert summary["think_closed_rate"] == 1.0 and summary["think_tokens"] > 0
    assert [r["mode"] for r in records].count("no_think") == len(problems) * 2  # the same budget
    # without think_gain only the think pass runs
    summary, records = ev.evaluate(model, tok, problems, num_samples=2, prompt_style="r1zero", sampler=model,
                                   think_gain=False)
    assert "think_gain" not in summary and {r["mode"] for r in records} == {"think"}


@pytest.mark.parametrize("style", ["r1zero", "r1chat", "chat", "fewshot", "readable"])
def test_the_think_removed_prefill_is_read_as_an_answer_in_every_style(style):
    """A model that answers at once after the no-think prefill is read correctly in every prompt style."""
    from r1kit.evaluation.evaluate import PromptStyle, no_think_prefill

    prefill = no_think_prefill(style)
    completion = {"r1zero": "4</answer>", "r1chat": "4</answer>", "chat": "4}$", "fewshot": " 4.",
                  "readable": "The answer is 4."}[style]
    answer, _ = PromptStyle(style).read(prefill + completion)
    assert answer is not None and answers_match(answer, "4")


def test_worked_examples_are_earlier_chat_turns_in_training_and_evaluation_prompts(tmp_path):
    from r1kit.core.errors import ConfigError, DataError
    from r1kit.data.sources import read_examples
    from r1kit.data.templates import build_prompt
    from r1kit.evaluation.evaluate import PromptStyle
    from r1kit.models.loading import load_tokenizer
    from r1kit.trainers.grpo.config import make_config

    path = tmp_path / "ex.jsonl"
    path.write_text(json.dumps({"question": "What is 6 + 5 - 3?",
                                "response": "<think> 6 + 5 = 11, 11 - 3 = 8 </think> <answer> 8 </answer>"}) + "\n")
    examples = read_examples(path)
    tok = load_tokenizer("embedded")
    prompt = build_prompt("What is 2 + 2 - 1?", tok, "chat", "<think>", examples=examples)
    assert prompt.index("What is 6 + 5 - 3?") < prompt.index("11 - 3 = 8") < prompt.index("What is 2 + 2 - 1?")
    assert prompt.count("<|im_start|>assistant") == 2 and prompt.endswith("<|im_start|>assistant\n<think>")
    # evaluation renders the same prompt as training
    assert PromptStyle("r1chat", examples=examples).prompt("What is 2 + 2 - 1?", tok, "<think>") == prompt
    assert make_config(overrides={"template": "chat", "prompt_examples": str(path)}).prompt_examples == str(path)
    with pytest.raises(ConfigError, match="need template=chat"):
        make_config(overrides={"template": "r1zero", "prompt_examples": str(path)})
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:1: a worked example needs"):
        make_config(overrides={"template": "chat", "prompt_examples": str(tmp_path / "bad.jsonl")})
