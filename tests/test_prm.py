"""Process reward models (DeepSeek-R1 section 4.2, reproducible): steps, Math-Shepherd step labels on scripted
continuations, the token head's loss against its formula, training on step labels, best-of-N reranking, and
the PRM inside GRPO (outcome and step-level advantages) with its reward-hacking alert."""

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from r1kit.algorithms.advantages import process_advantages
from r1kit.algorithms.losses import grpo_loss
from r1kit.core.errors import ConfigError, DataError
from r1kit.data.arithmetic import line_is_right, worked_lines
from r1kit.data.problems import Problem
from r1kit.evaluation.rerank import prm_rerank
from r1kit.models.options import PRM_AGGREGATIONS
from r1kit.models.process_reward_model import (
    AGGREGATIONS,
    encode_steps,
    load_process_reward_model,
    load_token_classifier,
    step_logits,
)
from r1kit.pipeline.prm_data import label_problems, make_prm_data_config
from r1kit.report.alerts import check_alerts
from r1kit.rewards.steps import split_steps, step_ends
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.scoring import token_ends
from r1kit.trainers.prm import make_prm_config, prm_loss, train_prm
from tests.conftest import run_cli

TOK = "|special_token|"


# --- steps


@pytest.mark.parametrize("text, mode, steps", [
    (f"{TOK}2 + 3 = 5\n5 + 4 = 9{TOK}The answer is 9.", "lines", [f"{TOK}2 + 3 = 5", "\n5 + 4 = 9", f"{TOK}The answer is 9."]),
    ("<think>a\n\nb\n</think> <answer>3</answer>", "lines", ["<think>a", "\n\nb", "\n</think> <answer>3</answer>"]),
    ("I add 2 and 3. That is 5.\nSo 5.", "sentences", ["I add 2 and 3.", " That is 5.", "\nSo 5."]),
    ("x = 0.5 now. done", "sentences", ["x = 0.5 now.", " done"]),
    (f"{TOK}2 + 3 = 5\n5 + 4", "lines", [f"{TOK}2 + 3 = 5", "\n5 + 4"]),  # truncated: no final part
    ("a\nb\n", "lines", ["a", "\nb\n"]),  # trailing whitespace joins the last step
    ("   ", "lines", []),
])
def test_steps_are_contiguous_slices_ending_at_lines_or_sentences(text, mode, steps):
    assert split_steps(text, mode) == steps
    assert not steps or "".join(steps) == text  # slices of the text, nothing dropped
    assert step_ends(text, mode) == [sum(len(s) for s in steps[:k + 1]) for k in range(len(steps))]
    with pytest.raises(ValueError, match="step mode 'words'"):
        step_ends(text, "words")


def test_worked_lines_and_their_truth():
    assert worked_lines("What is 47 + 38 - 25?") == ["47 + 38 = 85", "85 - 25 = 60"]
    assert worked_lines("What is 3 * 4?") is None
    assert [line_is_right(x) for x in ("47 + 38 = 85", "85 - 25 = 61", "no step")] == [True, False, None]


# --- Math-Shepherd step labels on scripted continuations


class Scripted:
    """A stand-in model: the continuations of each prompt are written out; records every request."""

    def __init__(self, script: dict[str, list[str]]):
        self.script, self.calls = script, []

    def complete(self, prompts, n, seed):
        self.calls.append((list(prompts), n))
        for p in prompts:
            assert len(self.script[p]) == n, p
        return [list(self.script[p]) for p in prompts]


def test_step_labels_are_the_share_of_scripted_rollouts_that_reach_the_answer():
    q = "What is 2 + 3 + 4?"
    right, wrong = f"{TOK}2 + 3 = 5\n5 + 4 = 9{TOK}The answer is 9.", f"{TOK}2 + 3 = 6\n6 + 4 = 10{TOK}The answer is 10."
    slip = f"{TOK}2 + 3 = 5\n5 + 4 = 8{TOK}The answer is 8."  # shares its first step with `right`
    script = {
        q: [right, wrong, right, slip],  # the third is a duplicate: labelled once
        # step 1 of `right` and `slip`: 3 of 4 continuations reach 9 (one says 8)
        q + f"{TOK}2 + 3 = 5": [f"\n5 + 4 = 9{TOK}The answer is 9.", f"\n5 + 4 = 8{TOK}The answer is 8.",
                                f"\n5 + 4 = 9{TOK}The answer is 9.", f"\n5 + 4 = 9{TOK}The answer is 9."],
        # step 2 of `right`: "9" (read as the last number) counts, 8 and 7 do not: 2 of 4
        q + f"{TOK}2 + 3 = 5\n5 + 4 = 9": [f"{TOK}The answer is 9.", f"{TOK}The answer is 8.", f"{TOK}9",
                                           f"{TOK}It is 7."],
        q + f"{TOK}2 + 3 = 5\n5 + 4 = 8": [f"{TOK}The answer is 8."] * 4,
        # a wrong first step can still be rescued by a later one: 1 of 4
        q + f"{TOK}2 + 3 = 6": [f"\n6 + 4 = 10{TOK}The answer is 10."] * 3 + [f"\n6 + 3 = 9{TOK}The answer is 9."],
        q + f"{TOK}2 + 3 = 6\n6 + 4 = 10": [f"{TOK}The answer is 10."] * 4,
    }
    completer = Scripted(script)
    records, counts = label_problems(completer, [Problem(q, "9", "p0")], [q], num_solutions=4, num_rollouts=4, seed=0)
    by_text = {r["completion"]: r for r in records}
    assert list(by_text) == [right, wrong, slip]
    assert by_text[right]["labels"] == [0.75, 0.5, 1.0] and by_text[right]["counts"] == [[3, 4], [2, 4], [1, 1]]
    assert by_text[wrong]["labels"] == [0.25, 0.0, 0.0]
    assert by_text[slip]["labels"] == [0.75, 0.0, 0.0]
    assert [r["correct"] for r in records] == [True, False, False]
    assert by_text[right]["steps"] == split_steps(right) and by_text[right]["step_mode"] == "lines"
    # one request for the solutions, one for every distinct prefix (the shared first step once)
    assert [n for _, n in completer.calls] == [4, 4] and len(completer.calls[1][0]) == 5
    assert counts == {"problems": 1, "solutions": 3, "blank_solutions": 0, "correct_solutions": 1, "steps": 9,
                      "rolled_out_steps": 6, "rollouts": 20, "labels_zero": 2, "labels_one": 0,
                      "labels_between": 4, "mean_label": pytest.approx((0.75 + 0.5 + 0.25 + 0 + 0.75 + 0) / 6)}


def test_prm_data_options_are_checked_before_anything_loads(tmp_path):
    with pytest.raises(ConfigError, match="num_rollouts=0"):
        make_prm_data_config(overrides={"num_rollouts": 0})
    with pytest.raises(ConfigError, match="step_mode='words'"):
        make_prm_data_config(overrides={"step_mode": "words"})
    r = run_cli("prm-data", "--output_dir", str(tmp_path), "--max_problems", "0")
    assert r.returncode == 2 and "max_problems=0" in r.stderr


# --- the token head and its loss


def test_prm_loss_matches_the_binary_cross_entropy_formula_in_value_and_gradient():
    logits = [2.0, -1.5, 0.3, -30.0, 25.0]
    labels = [1.0, 0.25, 0.5, 0.0, 1.0]
    n = 7  # the labelled steps of the whole global batch: this micro-batch is part of it
    sig = [1 / (1 + math.exp(-z)) for z in logits]
    expected = -sum(y * math.log(s) + (1 - y) * math.log(1 - s) if 0 < s < 1 else 0.0
                    for y, s in zip(labels, sig)) / n
    z = torch.tensor(logits, requires_grad=True)
    loss = prm_loss(z, torch.tensor(labels), n)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert z.grad.tolist() == pytest.approx([(s - y) / n for s, y in zip(sig, labels)], rel=1e-5, abs=1e-9)


def test_the_head_is_read_at_each_steps_last_token(tiny_model):
    torch.manual_seed(0)
    model, tokenizer = load_token_classifier(tiny_model, new_head=True, seed=3)
    prompt, steps = "What is 1 + 2?", [f"{TOK}1 + 2 = 3", "\n3 + 0 = 3", f"{TOK}The answer is 3."]
    ids, ends = encode_steps(tokenizer, prompt, steps)
    # independently: the character-level tokenizer gives one token per character, |special_token| is one token
    lengths = [len(s) - (len(TOK) - 1) * s.count(TOK) for s in steps]
    assert ends == [len(prompt) + sum(lengths[:k + 1]) - 1 for k in range(3)]
    assert tokenizer.decode(ids) == prompt + "".join(steps)
    labels = [0.9, 0.2, 0.0]
    full = model(input_ids=torch.tensor([ids])).logits[0, :, 0]  # [seq] the head on every token
    picked = [full[e].item() for e in ends]
    expected = -sum(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z)))
                    for y, z in zip(labels, picked)) / 3
    other = encode_steps(tokenizer, "q", ["x"])  # a shorter text in the batch: right padding changes nothing
    got = step_logits(model, [(ids, ends), other], tokenizer.pad_token_id, "cpu")[0]
    assert prm_loss(got, torch.tensor(labels)).item() == pytest.approx(expected, rel=1e-5)


def test_aggregations_table_matches_the_options_choices():
    assert tuple(AGGREGATIONS) == PRM_AGGREGATIONS
    s = [0.9, 0.5, 0.8]
    assert [AGGREGATIONS[k](s) for k in PRM_AGGREGATIONS] == pytest.approx([0.5, 0.36, 0.8, 2.2 / 3, 2.2])


def _marked_records(n: int, seed: int) -> list[dict]:
    """Step labels a tiny model can learn: a step ending in '!' is wrong (label 0), in '.' right (label 1)."""
    import random

    rng = random.Random(seed)
    records = []
    for i in range(n):
        a, b, c = rng.randint(0, 4), rng.randint(0, 4), rng.randint(0, 4)
        first, second = rng.random() < 0.7, rng.random() < 0.6
        steps = [f"{TOK}{a} + {b} = {a + b}{'.' if first else '!'}",
                 f"\n{a + b} + {c} = {a + b + c}{'.' if second else '!'}", f"{TOK}The answer is {a + b + c}."]
        labels = [float(first), float(first and second), float(first and second)]
        records.append({"prompt": f"What is {a} + {b} + {c}?", "problem_id": str(i), "steps": steps, "labels": labels})
    return records


@pytest.fixture(scope="module")
def trained_prm(tiny_model, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("prm") / "run"
    data = out.parent / "labels.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _marked_records(240, 0)))
    config = make_prm_config(overrides=dict(model=tiny_model, dataset=str(data), eval_fraction=0.2, max_steps=60,
                                            per_device_train_batch_size=16, learning_rate=3e-3,
                                            lr_scheduler_type="constant", seed=0, output_dir=str(out)))
    return out, train_prm(config, show_progress=False)


def test_prm_learns_step_labels_and_its_saved_model_scores_as_trained(trained_prm):
    out, summary = trained_prm
    assert summary["held_out_records"] == 48 and summary["train_records"] == 192 and summary["steps"] == 60
    assert summary["held_out_step_accuracy_before"] <= 0.8, summary
    assert summary["held_out_step_accuracy_after"] >= 0.95, summary
    assert summary["held_out_brier_after"] < summary["held_out_brier_before"] / 3
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 60 and sum(m["loss"] for m in metrics[-5:]) < sum(m["loss"] for m in metrics[:5])
    prm = load_process_reward_model(str(out / "model"), device="cpu")
    assert prm.info["step_mode"] == "lines" and prm.info["label_type"] == "soft" and prm.special_token == TOK
    held = [json.loads(line) for line in (out / "eval_scores.jsonl").read_text().splitlines()]
    again = prm.score([r["prompt"] for r in held], [r["steps"] for r in held])
    assert again == [pytest.approx(r["scores"], abs=1e-5) for r in held]


def test_bad_step_label_data_is_named(tmp_path, tiny_model):
    data = tmp_path / "labels.jsonl"
    data.write_text(json.dumps({"prompt": "q", "steps": ["a", "b"], "labels": [1.0]}) + "\n")
    with pytest.raises(DataError, match=f"{data}:1: 'steps' must be a non-empty list of strings with one label each"):
        train_prm(make_prm_config(overrides=dict(model=tiny_model, dataset=str(data), output_dir=str(tmp_path / "o"))))
    data.write_text(json.dumps({"prompt": "q", "steps": ["a"], "labels": [1.5]}) + "\n")
    with pytest.raises(DataError, match=r":1: every label must be a number in \[0, 1\]"):
        train_prm(make_prm_config(overrides=dict(model=tiny_model, dataset=str(data), output_dir=str(tmp_path / "o"))))
    with pytest.raises(ConfigError, match="label_type='fuzzy'"):
        make_prm_config(overrides={"label_type": "fuzzy"})


# --- reranking


class TablePRM:
    """A stand-in process reward model: each step's score is looked up by its text."""

    step_mode, special_token = "lines", TOK

    def __init__(self, table):
        self.table = table

    def score(self, questions, steps, batch_size=16):
        return [[self.table.get(s, 0.5) for s in ss] for ss in steps]


def test_best_of_n_keeps_the_sample_the_prm_scores_highest():
    problems = [Problem("What is 1 + 1?", "2", "a"), Problem("What is 2 + 2?", "4", "b")]
    texts = [f"{TOK}1 + 1 = 3{TOK}3", f"{TOK}1 + 1 = 2{TOK}2", f"{TOK}2 + 2 = 4{TOK}4", f"{TOK}2 + 2 = 5{TOK}5"]
    table = {f"{TOK}1 + 1 = 3": 0.9, f"{TOK}1 + 1 = 2": 0.8, f"{TOK}2 + 2 = 4": 0.7, f"{TOK}2 + 2 = 5": 0.1}
    records = [{"problem_id": pid, "completion": t, "correct": ok, "length": 5}
               for pid, t, ok in zip("aabb", texts, [False, True, True, False])]
    summary = prm_rerank(records, problems, TablePRM(table), num_samples=2, aggregation="min")
    assert summary["prm@2"] == 0.5  # problem a: the PRM prefers the wrong 3 (0.9 > 0.8); b: the right 4
    assert [r.get("prm_pick", False) for r in records] == [True, False, True, False]
    assert records[0]["prm_score"] == 0.5  # min over the steps: the final step scores 0.5 here


# --- the PRM inside GRPO


def test_process_advantages_match_deepseekmath_process_supervision():
    rewards, ends = [[0.9, 0.3], [0.6, 0.0], [0.2], []], [[1, 3], [0, 4], [2], []]
    adv = process_advantages(rewards, ends, num_generations=2, width=5)
    flat = [0.9, 0.3, 0.6, 0.0]
    mean, std = statistics.mean(flat), statistics.stdev(flat)
    r = [[(x - mean) / (std + 1e-4) for x in row] for row in rewards[:2]]
    assert adv[0].tolist() == pytest.approx([r[0][0] + r[0][1]] * 2 + [r[0][1]] * 2 + [0.0])
    assert adv[1].tolist() == pytest.approx([r[1][0] + r[1][1]] + [r[1][1]] * 4)
    assert adv[2:].abs().sum() == 0  # a group with one step reward has nothing to compare it with


def test_per_token_advantages_enter_the_loss_token_by_token():
    torch.manual_seed(0)
    lp = torch.randn(2, 4, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.float32)
    adv = torch.tensor([[1.0, -2.0, 0.5, 9.0], [0.0, 1.0, 1.0, 1.0]])
    loss, _ = grpo_loss(lp, lp.detach(), None, adv, mask, beta=0.0)
    # on-policy the ratio is 1: -1/N sum_i 1/|o_i| sum_t A_it
    assert loss.item() == pytest.approx(-((1 - 2 + 0.5) / 3 + 3 / 4) / 2)
    rows, _ = grpo_loss(lp, lp.detach(), None, torch.tensor([0.7, -0.2]), mask, beta=0.0)
    same, _ = grpo_loss(lp, lp.detach(), None, torch.tensor([[0.7] * 4, [-0.2] * 4]), mask, beta=0.0)
    assert torch.equal(rows, same)


def test_a_steps_end_lands_on_the_token_that_completes_it(tiny_model):
    from r1kit.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    ids = tok(f"{TOK}12\n3", add_special_tokens=False)["input_ids"]
    assert len(ids) == 5  # the separator is one token, then one per character
    assert token_ends(tok, ids, [len(TOK), len(TOK) + 2, len(TOK) + 4, 99]) == [0, 2, 4, 4]


def test_grpo_with_a_process_reward_model_in_both_modes(trained_prm, tiny_model, tmp_path):
    from r1kit.trainers.grpo.trainer import train

    prm_dir = str(trained_prm[0] / "model")
    problems = [Problem(f"What is {a} + {b}?", str(a + b), str(i)) for i, (a, b) in enumerate([(1, 2), (3, 1), (2, 2)])]
    for mode in ("outcome", "steps"):
        c = make_config(overrides=dict(
            model=tiny_model, output_dir=str(tmp_path / mode), max_steps=2, template="plain", stop_strings=[],
            reward_funcs=["readable_accuracy"], num_generations=4, per_device_train_batch_size=8,
            max_completion_length=16, process_reward_model=prm_dir, prm_mode=mode, prm_weight=0.5,
            prm_aggregation="mean", torch_threads=1, write_report=False, learning_rate=1e-3, save_steps=0))
        history = train(c, examples=problems, show_progress=False)
        assert {"rewards/prm", "rewards/prm_min_step", "prm/accepts_wrong", "prm/rejects_right"} <= set(history[-1])
        samples = [json.loads(line) for line in (tmp_path / mode / "samples.jsonl").read_text().splitlines()]
        for s in samples:
            steps = split_steps(s["completion"])
            assert s["rewards"]["prm"] == pytest.approx(statistics.mean(
                load_process_reward_model(prm_dir, "cpu").score([s["question"]], [steps])[0]) if steps else 0.0, abs=1e-5)
            extra = 0.5 * s["rewards"]["prm"] if mode == "outcome" else 0.0
            assert s["reward"] == pytest.approx(s["rewards"]["readable_accuracy"] + extra, abs=1e-6)
    with pytest.raises(ConfigError, match="prm_mode='tokens'"):
        make_config(overrides={"prm_mode": "tokens"})


def test_prm_hacking_alert_fires_when_prm_score_and_held_out_accuracy_part_ways():
    def run(prm, evals):
        rows = [{"step": 0, "eval/pass@1": evals[0]}]
        for i, p in enumerate(prm, 1):
            rows.append({"step": i, "rewards/prm": p, **({"eval/pass@1": evals[i]} if i in evals else {})})
        return [a for a in check_alerts(rows, {"alert_patience": 2}) if a.kind == "prm_hacking"]

    hacked = run([1.0, 1.0, 1.05, 1.1, 1.2, 1.3], {0: 0.5, 3: 0.5, 6: 0.4})
    assert len(hacked) == 1 and hacked[0].step == 6 and hacked[0].value == pytest.approx(0.25)
    assert "fell from 0.500 to 0.400" in hacked[0].message
    assert not run([1.0, 1.0, 1.05, 1.1, 1.2, 1.3], {0: 0.5, 6: 0.6})  # both rose: learning, not hacking
    assert not run([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], {0: 0.5, 6: 0.3})  # accuracy fell, the PRM did not rise
    with pytest.raises(ConfigError, match="alert_prm_rise=-1"):
        make_config(overrides={"alert_prm_rise": -1.0})


def test_eval_reports_prm_best_of_k(trained_prm, tiny_model, tmp_path):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": f"What is {a} + 1?", "answer": str(a + 1)}) + "\n" for a in range(3)))
    r = run_cli("eval", "--model", tiny_model, "--benchmark", str(bench), "-k", "2", "--max_new_tokens", "8",
                "--prompt_style", "fewshot", "--prm", str(trained_prm[0] / "model"), "--output_dir", str(tmp_path / "ev"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "prm@2" in r.stdout
    summary = json.loads((tmp_path / "ev" / "bench" / "summary.json").read_text())
    samples = [json.loads(line) for line in (tmp_path / "ev" / "bench" / "samples.jsonl").read_text().splitlines()]
    picks = [s for s in samples if s.get("prm_pick")]
    assert len(picks) == 3 and summary["prm@2"] == sum(s["correct"] for s in picks) / 3


def test_the_section_4_2_stages_chain_in_a_pipeline(tmp_path):
    """prm_data -> prm -> grpo with the PRM as its reward and mcts with it as the value model, as pipeline stages
    (and so as the commands r1kit prm-data / prm / mcts): each leaves what the next reads."""
    from r1kit.pipeline.pipeline import run_pipeline

    config = tmp_path / "p.yaml"
    config.write_text(f"""
output_dir: {tmp_path / 'out'}
eval: {{benchmark: arithmetic, limit: 2, num_samples: 1, max_new_tokens: 12}}
defaults: {{seed: 0, torch_threads: 1, arithmetic_max_value: 4}}
stages:
  - {{name: base, type: tiny_model, hidden_size: 32, num_layers: 1}}
  - {{name: labels, type: prm_data, model: "@base", max_problems: 3, num_generations: 2, num_rollouts: 2,
      max_completion_length: 12}}
  - {{name: prm, type: prm, model: "@base", dataset: "@labels", max_steps: 2, eval_fraction: 0.34}}
  - {{name: rl, type: grpo, model: "@base", process_reward_model: "@prm", prm_mode: steps, template: plain,
      stop_strings: [], reward_funcs: [readable_accuracy], num_generations: 2, per_device_train_batch_size: 4,
      max_completion_length: 12, max_steps: 1, save_steps: 0, write_report: false}}
  - {{name: search, type: mcts, model: "@base", value_model: "@prm", rounds: 1, prompts_per_round: 2,
      search_batch: 2, num_simulations: 2, max_children: 2, max_completion_length: 12, actor_steps: 1,
      value_steps: 1, eval_steps: 0}}
""")
    manifest = run_pipeline(config, log=lambda line: None)
    stages = manifest["stages"]
    assert all(stages[n]["status"] == "done" for n in ("labels", "prm", "rl", "search")), stages
    labels = [json.loads(line) for line in Path(stages["labels"]["artifacts"]["data"]).read_text().splitlines()]
    counts = json.loads((Path(stages["labels"]["artifacts"]["run"]) / "prm_data.json").read_text())
    assert len(labels) == counts["solutions"] >= 1 and counts["problems"] == 3
    for r in labels:  # each label is its count's share; the last step is the outcome itself
        assert r["labels"] == [c / n for c, n in r["counts"]] and r["counts"][-1] == [int(r["correct"]), 1]
        assert all(n == 2 for _, n in r["counts"][:-1]) and "".join(r["steps"]) == r["completion"]
    assert (Path(stages["prm"]["artifacts"]["model"]) / "r1kit_prm.json").is_file()
    rl = [json.loads(line) for line in (Path(stages["rl"]["artifacts"]["run"]) / "metrics.jsonl").read_text().splitlines()]
    assert "rewards/prm" in rl[-1]
    assert json.loads((Path(stages["search"]["artifacts"]["run"]) / "metrics.jsonl").read_text().splitlines()[-1])["round"] == 1


@pytest.mark.parametrize("stage, name", [("sft", "sft"), ("prm_data", "prm_data"), ("prm", "prm"), ("grpo", "grpo"),
                                         ("grpo", "grpo_prm"), ("grpo", "grpo_prm_steps"), ("mcts", "mcts")])
def test_the_section_4_2_experiment_configs_are_valid_as_the_script_runs_them(stage, name):
    """scripts/unsuccessful.sh runs `r1kit STAGE --config configs/unsuccessful/NAME.yaml`: each file must pass the
    same translation and checks (unknown or renamed keys fail here, not an hour into the experiment)."""
    from r1kit.core.options import load_config
    from r1kit.pipeline.stages import config_class

    root = Path(__file__).resolve().parent.parent
    c = load_config(config_class(stage), None, root / "configs" / "unsuccessful" / f"{name}.yaml", {})
    assert c.output_dir == f"runs/unsuccessful/{name}"
    assert name in (root / "scripts" / "unsuccessful.sh").read_text()


def _bench_unsuccessful():
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "bench" / "unsuccessful.py"
    spec = importlib.util.spec_from_file_location("bench_unsuccessful", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_experiments_step_truth_and_label_quality_by_hand():
    """bench/unsuccessful.py judges Math-Shepherd labels against the task's truth: a step is right when every
    line so far is true arithmetic ending on the right running total."""
    bench = _bench_unsuccessful()
    q = "What is 47 + 38 + 25?"
    assert bench.on_track([f"{TOK}47 + 38 = 85"], q)
    assert bench.on_track([f"{TOK}47 + 38 = 85", "\n85 + 25 = 110"], q)
    assert not bench.on_track([f"{TOK}47 + 38 = 86"], q)  # false arithmetic
    assert not bench.on_track([f"{TOK}47 + 25 = 72"], q)  # true, but not the running total
    assert not bench.on_track([f"{TOK}47 + 38 = 86", "\n86 + 25 = 111"], q)  # a right line after a wrong one
    records = [  # the last step's label is the outcome itself and is not judged
        {"prompt": q, "steps": [f"{TOK}47 + 38 = 85", "\n85 + 25 = 110", f"{TOK}The answer is 110."],
         "labels": [0.75, 0.25, 1.0]},
        {"prompt": q, "steps": [f"{TOK}47 + 38 = 86", "\n86 + 25 = 111", f"{TOK}The answer is 111."],
         "labels": [0.125, 0.0, 0.0]},
    ]
    q = bench.label_quality(records)
    assert (q["steps"], q["right_steps"], q["wrong_steps"]) == (4, 2, 2)
    assert q["soft_agreement"] == 3 / 4  # 0.25 on a right step is the one soft miss
    assert q["hard_agreement"] == 3 / 4  # 0.125 on a wrong step is the one hard miss
    assert q["right_labelled_below_half"] == 1 / 2 and q["wrong_labelled_above_zero"] == 1 / 2
    assert q["mean_label_right"] == 0.5 and q["mean_label_wrong"] == 0.0625
