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
    assert {"pass@1", "pass@2", "pass@3", "cons@3", "format_rate", "mean_length"} <= summary.keys()
    samples = [json.loads(x) for x in (out / "qs" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 15
    assert {"problem_id", "prompt", "completion", "extracted", "correct"} <= samples[0].keys()
    assert [s["problem_id"] for s in samples[::3]] == [f"p{i}" for i in range(5)]


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
    assert {"eval/cons@2", "eval/format_rate", "eval/mean_length"} <= lines[0].keys()
    samples = [json.loads(x) for x in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 3 * 2 and {s["step"] for s in samples} == {0, 2, 3}
