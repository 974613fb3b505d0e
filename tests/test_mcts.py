"""MCTS over solution steps (DeepSeek-R1 section 4.2, reproducible): UCT selection and backup on a hand-built tree,
the expansion with scripted continuations, one round on a tiny model (a trained value head and actor), and a
round killed in its search or its actor training that resumes to the uninterrupted run's result."""

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1kit.algorithms.tree_search import Node, add_children, backup, best_path, record_outcome, select, uct, walk
from r1kit.core.errors import ConfigError
from r1kit.core.lock import LOCK_NAME, FolderInUse, FolderLock
from r1kit.data.arithmetic import arithmetic_examples, worked_lines
from r1kit.data.problems import Problem
from r1kit.models.process_reward_model import load_token_classifier
from r1kit.pipeline.mcts import make_mcts_config, models_of_round, run_mcts
from r1kit.pipeline.mcts_search import SearchSettings, new_tree, search, simulate, tree_result
from r1kit.rewards.readable import to_readable
from r1kit.trainers import checkpoint as ckpt
from tests.conftest import started, wait_for

TOK = "|special_token|"


# --- the tree


def _tree() -> tuple[Node, Node, Node, Node, Node, Node]:
    """root (10 visits) -> a (4 visits, mean 0.5), b (2, 0.8), c (4, 0.8); b -> b1 (1, 0.2), b2 (1, 0.9)."""
    root = Node(visits=10, value_sum=7.0)
    a = Node("a", root, 1, visits=4, value_sum=2.0)
    b = Node("b", root, 1, visits=2, value_sum=1.6)
    c = Node("c", root, 1, visits=4, value_sum=3.2)
    b1, b2 = Node("1", b, 2, visits=1, value_sum=0.2), Node("2", b, 2, visits=1, value_sum=0.9)
    root.children, b.children = [a, b, c], [b1, b2]
    return root, a, b, c, b1, b2


def test_uct_selection_descends_by_value_plus_exploration():
    root, a, b, c, b1, b2 = _tree()
    assert uct(a, 10, 1.0) == pytest.approx(0.5 + math.sqrt(math.log(10) / 4))  # 1.259
    assert uct(b, 10, 1.0) == pytest.approx(0.8 + math.sqrt(math.log(10) / 2))  # 1.873: fewer visits, explored
    assert uct(c, 10, 1.0) == pytest.approx(0.8 + math.sqrt(math.log(10) / 4))  # 1.559
    assert select(root, 1.0) is b2  # b, then b2 (0.9 + sqrt(ln 2) beats 0.2 + sqrt(ln 2))
    assert select(root, 0.0) is b2  # pure value: b and c tie at 0.8, the first wins; then b2
    root.children.append(Node("d", root, 1))
    assert select(root, 0.0).step == "d"  # an unvisited child is tried first (+inf)
    terminal = Node("t", None, 0, terminal=True, reward=1.0)
    assert select(terminal, 1.0) is terminal


def test_backup_adds_a_visit_and_the_value_along_the_path():
    root, a, b, c, b1, b2 = _tree()
    backup(b2, 1.0)
    assert (b2.visits, b2.value_sum, b.visits, b.value_sum, root.visits, root.value_sum) == (2, 1.9, 3, 2.6, 11, 8.0)
    assert (a.visits, c.visits, b1.visits) == (4, 4, 1)  # off the path: untouched
    assert b.value == pytest.approx(2.6 / 3) and b2.prefix() == "b2"
    assert best_path(root) == [root, c]  # the most visited child; a and c tie on 4 visits, c has the higher value


def test_children_merge_identical_steps_up_to_the_cap_and_outcomes_count_along_the_path():
    root = Node()
    made = add_children(root, [("x", 0.2, False, None), ("y", 0.6, True, 1.0), ("x", 0.9, False, None),
                               ("z", 0.4, False, None)], max_children=2)
    assert [(n.step, n.estimate, n.visits, n.value_sum, n.terminal, n.reward) for n in made] == [
        ("x", 0.2, 1, 0.2, False, None), ("y", 0.6, 1, 0.6, True, 1.0)]
    assert root.children == made and made[0].depth == 1
    record_outcome(made[0], True)
    record_outcome(made[0], False)
    record_outcome(made[1], True)
    assert (root.correct, root.rollouts, made[0].correct, made[0].rollouts) == (2, 3, 1, 2)
    assert walk(root) == [root, *made]


# --- the search with scripted continuations


class Scripted:
    """Continuations by prompt, as written; each request's prompts and n recorded."""

    def __init__(self, script):
        self.script, self.calls = script, []

    def complete(self, prompts, n, seed):
        self.calls.append((list(prompts), n, seed))
        return [self.script[p][:n] for p in prompts]


class ConstantValue:
    """A stand-in value head: every step of every prefix scores `v`; records what it was asked."""

    def __init__(self, v):
        self.v, self.asked = v, []

    def score(self, questions, steps, batch_size=16):
        self.asked += list(zip(questions, steps))
        return [[self.v] * len(s) for s in steps]


def test_one_simulation_expands_values_and_backs_up():
    q = "What is 2 + 3 + 4?"
    s1 = f"{TOK}2 + 3 = 5"
    script = {q: [f"{s1}\n5 + 4 = 9{TOK}The answer is 9.", f"{s1}\n5 + 4 = 8{TOK}The answer is 8.",
                  f"{TOK}2 + 3 = 6\n6 + 4 = 10{TOK}The answer is 10."]}
    tree = new_tree(Problem(q, "9", "p"), q)
    value = ConstantValue(0.25)
    settings = SearchSettings(num_simulations=1, max_children=3, max_depth=4)
    simulate([tree], Scripted(script), value, settings, seed=0)
    root = tree.root
    # three continuations, two share their first step: two children, each valued by the head
    assert [(ch.step, ch.estimate, ch.terminal, ch.rollouts, ch.correct) for ch in root.children] == [
        (s1, 0.25, False, 2, 1), (f"{TOK}2 + 3 = 6", 0.25, False, 1, 0)]
    assert value.asked == [(q, [s1]), (q, [s1]), (q, [f"{TOK}2 + 3 = 6"])]
    assert (root.visits, root.value_sum, root.rollouts, root.correct) == (1, 0.25, 3, 1)
    assert tree.distinct_children == [2]
    # the next simulation continues the better child (ties: the first) from its prefix
    script[q + s1] = [f"\n5 + 4 = 9{TOK}The answer is 9.", f"\n5 + 4 = 7{TOK}The answer is 7.",
                      f"\n5 + 4 = 9{TOK}The answer is 9."]
    completer = Scripted(script)
    simulate([tree], completer, value, settings, seed=1)
    assert completer.calls[0][0] == [q + s1]
    first = root.children[0]
    assert [(ch.step, ch.estimate) for ch in first.children] == [("\n5 + 4 = 9", 0.25), ("\n5 + 4 = 7", 0.25)]
    assert (first.rollouts, first.correct) == (5, 3)
    result = tree_result(tree, max_solutions=2)
    assert result["nodes"] == 4 and result["max_depth"] == 2 and not result["found_correct"]
    assert result["value_error"] == pytest.approx((abs(0.25 - 3 / 5) + abs(0.25 - 0) + abs(0.25 - 1) + abs(0.25 - 0)) / 4)
    labels = {tuple(r["steps"]): r["labels"] for r in result["value_records"]}
    assert labels == {(s1, "\n5 + 4 = 9"): [3 / 5, 1.0], (s1, "\n5 + 4 = 7"): [3 / 5, 0.0],
                      (f"{TOK}2 + 3 = 6",): [0.0]}


def test_the_depth_cap_makes_a_child_take_the_rest_and_terminal_children_keep_the_true_outcome():
    q = "What is 2 + 3 + 4?"
    right, wrong = f"{TOK}2 + 3 = 5\n5 + 4 = 9{TOK}The answer is 9.", f"{TOK}2 + 3 = 5\n5 + 4 = 8{TOK}The answer is 8."
    tree = new_tree(Problem(q, "9", "p"), q)
    value = ConstantValue(0.5)
    search([tree], Scripted({q: [right, wrong, right]}), value, SearchSettings(num_simulations=3, max_children=3,
                                                                                max_depth=1), seed=0)
    kids = tree.root.children
    assert [(k.step, k.terminal, k.reward, k.value) for k in kids[:2]] == [(right, True, 1.0, 1.0), (wrong, True, 0.0, 0.0)]
    assert value.asked == []  # terminal children are valued by their outcome, not by the head
    # later simulations select the right leaf again (terminal: backed up, not expanded)
    assert kids[0].visits == 3 and tree.expansions == 1
    result = tree_result(tree, max_solutions=2)
    assert result["found_correct"] and result["chosen_correct"] and result["solutions"] == [right]


def test_bad_mcts_options_are_named():
    for option, value, message in (("max_children", 0, "max_children=0"), ("value_mix", 2.0, "value_mix=2.0"),
                                   ("step_mode", "words", "step_mode='words'")):
        with pytest.raises(ConfigError, match=message):
            make_mcts_config(overrides={option: value})


# --- rounds on a tiny model


@pytest.fixture(scope="module")
def stepping_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model after a short SFT on worked sums of two digits (a line, then the summary): it writes
    steps, most of them right (held-out pass@1 about 0.75 at temperature 1)."""
    from r1kit.trainers.sft import make_sft_config, sft_train

    torch.set_num_threads(1)
    records = [{"prompt": p.question, "response": to_readable("\n".join(worked_lines(p.question)),
                                                              f"The answer is {p.answer}.")}
               for p in arithmetic_examples(300, 5, num_terms=2, max_value=4)]
    out = tmp_path_factory.mktemp("stepping") / "sft"
    sft_train(make_sft_config(overrides=dict(model=tiny_model, output_dir=str(out), max_steps=150, learning_rate=3e-3,
                                             per_device_train_batch_size=16, torch_threads=1, seed=0,
                                             lr_scheduler_type="constant")), records, show_progress=False)
    return str(ckpt.latest_checkpoint(out))


def _options(model: str, out: Path) -> dict:
    return dict(model=model, output_dir=str(out), rounds=1, prompts_per_round=6, search_batch=3, num_simulations=3,
                max_children=3, max_completion_length=24, arithmetic_terms=2, arithmetic_max_value=4,
                actor_steps=3, actor_learning_rate=1e-3, actor_batch_size=4, value_steps=3,
                value_learning_rate=1e-3, value_batch_size=4, eval_steps=0, torch_threads=1, seed=1)


@pytest.fixture(scope="module")
def one_round(stepping_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcts") / "run"
    return out, run_mcts(make_mcts_config(overrides=_options(stepping_model, out)), show_progress=False)


def test_one_round_ends_with_a_trained_value_head_and_actor(one_round, stepping_model):
    out, lines = one_round
    (m,) = lines
    assert m["round"] == 1 and m["search/problems"] == 6
    assert m["search/found_correct"] > 0 and m["actor/solutions"] >= 1, m  # the search found solutions to learn
    assert m["value/records"] == m["search/value_records"] > 0
    assert m["search/children_per_expansion"] <= 3 and 1 <= m["search/max_depth"]
    assert m["search/value_error"] is not None and 0 <= m["search/value_error"] <= 1
    start = load_file(Path(stepping_model) / "model.safetensors")
    actor = models_of_round(make_mcts_config(overrides=_options(stepping_model, out)), out, 1)[0]
    assert actor == str(out / "round-0" / "actor" / "checkpoint-3")
    trained = load_file(Path(actor) / "model.safetensors")
    assert max((trained[k] - start[k]).abs().max().item() for k in start) > 1e-4  # the actor moved
    value = out / "round-0" / "value"
    summary = json.loads((value / "prm_summary.json").read_text())
    assert summary["steps"] == 3 and (value / "model" / "r1kit_prm.json").is_file()
    head = load_file(value / "model" / "model.safetensors")["score.weight"]
    fresh, _ = load_token_classifier(stepping_model, new_head=True, seed=1)  # the head the round started from
    assert (head - fresh.score.weight.detach()).abs().max().item() > 1e-4  # the value head moved
    searched = [json.loads(line) for line in (out / "round-0" / "search.jsonl").read_text().splitlines()]
    assert [line["step"] for line in searched] == [1, 2] and sum(len(line["trees"]) for line in searched) == 6
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        run_mcts(make_mcts_config(overrides=_options(stepping_model, out)), show_progress=False)
    again = run_mcts(make_mcts_config(overrides={**_options(stepping_model, out), "resume": True}), show_progress=False)
    assert again == [m]  # a finished run resumed: nothing left to do, the same metrics
    assert not (out / LOCK_NAME).exists()  # given back at the end
    with FolderLock.acquire(out), pytest.raises(FolderInUse):  # a run still going there: refused, even --resume
        run_mcts(make_mcts_config(overrides={**_options(stepping_model, out), "resume": True}), show_progress=False)


DRIVER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from r1kit.pipeline import mcts_search
from r1kit.trainers import sft

def slowed(fn):
    def wrapper(*args, **kwargs):
        time.sleep(SLEEP)  # slow enough that a kill lands mid-phase
        return fn(*args, **kwargs)
    return wrapper

sft.sft_loss = slowed(sft.sft_loss)
mcts_search.simulate = slowed(mcts_search.simulate)
from r1kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _cli(options: dict, *extra: str, sleep: float = 0.5) -> list[str]:
    args = [a for k, v in options.items() for a in (f"--{k}", str(v))]
    return [sys.executable, "-c", DRIVER.replace("SLEEP", str(sleep)), "mcts", *args, *extra]


def _same_models(a: Path, b: Path) -> None:
    for rel in ("round-0/actor/checkpoint-3/model.safetensors", "round-0/value/model/model.safetensors"):
        wa, wb = load_file(a / rel), load_file(b / rel)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), rel
    drop = ("seconds", "train_seconds")
    read = lambda p: [{k: v for k, v in json.loads(x).items() if not k.startswith(drop)}  # noqa: E731
                      for x in (p / "metrics.jsonl").read_text().splitlines()]
    assert read(a) == read(b)


@pytest.mark.parametrize("phase", ["search", "actor"])
def test_a_round_killed_mid_phase_resumes_to_the_uninterrupted_result(one_round, stepping_model, tmp_path, phase):
    reference, _ = one_round
    out = tmp_path / "run"
    options = dict(_options(stepping_model, out), save_steps=1)
    done = {"search": lambda: (out / "round-0" / "search.jsonl").is_file() and
            (out / "round-0" / "search.jsonl").read_text().count("\n") >= 1,
            "actor": lambda: (out / "round-0" / "actor" / "checkpoint-1" / ckpt.STATE_FILE).is_file()}[phase]
    with started(_cli(options), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        wait_for(done, proc, timeout=300)
        proc.kill()  # SIGKILL: nothing is flushed, no handler runs
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "round-0" / "actor" / "sft_summary.json").exists()  # it died mid-round
    resumed = subprocess.run(_cli(options, "--resume", sleep=0), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_models(reference, out)
