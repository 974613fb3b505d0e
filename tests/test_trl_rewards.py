"""Reward functions as TRL calls them: rewards written for these tests in the shapes of TRL's own
(tests/data/trl/rewards.py), of the examples in TRL's GRPO documentation (tests/data/trl/doc_style_rewards.py)
and of open-r1's (tests/data/open_r1/rewards.py) get the arguments TRL gives (messages for a conversational prompt however it was built, trainer_state, log_extra,
log_metric, the gold column under TRL's names), async ones are awaited, and a reward that fails on every sample
stops the run instead of training on zeros."""

import importlib.util
import json
from pathlib import Path

import pytest

import r1kit
from r1kit.core.errors import ConfigError, RewardError
from r1kit.data.sources import load_examples
from r1kit.rewards.registry import RewardLog, load_reward_spec
from r1kit.rewards.scoring import score_completions
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.trainer import train
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data"
DOC_STYLE = DATA / "trl" / "doc_style_rewards.py"
OPEN_R1_REWARDS = DATA / "open_r1" / "rewards.py"
TRL_REWARDS = DATA / "trl" / "rewards.py"


def module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def as_messages(texts):
    return [[{"role": "assistant", "content": t}] for t in texts]


# --- the calling convention ---------------------------------------------------------------------------------

COMPLETIONS = [r"<think>1 and 1</think><answer>2</answer> so \boxed{2}", " blue.", r"The solution is \boxed{6}."]
IDS = [[1, 2, 3], [4, 5], [6]]
GROUND_TRUTH = ["2", "5", "6"]


# each reward of doc_style_rewards.py and the prompt shapes it is written for
DOC_STYLE_SHAPES = {"token_count_reward": (False, True), "char_count_reward": (False,),
                    "think_then_answer_reward": (True,), "boxed_equals_ground_truth": (False,),
                    "nonempty_async_reward": (False, True)}


@pytest.mark.parametrize("timeout", [0.0, 10.0])  # in this process, and in the forked worker
@pytest.mark.parametrize("conversational", [False, True])
def test_trl_documentation_style_rewards_score_as_trl_calls_them(timeout, conversational):
    prompts = ([[{"role": "user", "content": f"q{i}"}] for i in range(3)] if conversational else ["q0", "q1", "q2"])
    ran = 0
    for fn, shapes in DOC_STYLE_SHAPES.items():
        if conversational not in shapes:
            continue
        spec = f"{DOC_STYLE}:{fn}"
        _, per, failures = score_completions([spec], None, COMPLETIONS, ["x"] * 3, timeout=timeout, on_failure="abort",
                                             prompts=prompts, completion_ids=IDS, columns={"ground_truth": GROUND_TRUTH})
        # TRL's own call: completions as messages exactly when the prompt is a conversation
        completions = as_messages(COMPLETIONS) if conversational else COMPLETIONS
        direct = load_reward_spec(spec)(prompts=prompts, completions=completions, completions_ids=IDS,
                                        ground_truth=GROUND_TRUTH)
        if fn == "nonempty_async_reward":
            import asyncio

            direct = asyncio.run(direct)
        assert failures == [] and per[fn] == direct, fn
        ran += 1
    assert ran == sum(conversational in shapes for shapes in DOC_STYLE_SHAPES.values())


def test_the_doc_style_rewards_tell_the_shapes_apart():
    """The fixtures themselves: a reward written for one shape scores differently (or fails) in the other, so the
    test above fails if r1kit passes completions in the wrong shape."""
    mod = module(DOC_STYLE)
    texts = ["<think>a</think><answer>b</answer>", "no"]
    assert mod.think_then_answer_reward(as_messages(texts)) == [1.0, 0.0]
    with pytest.raises(TypeError):
        mod.think_then_answer_reward(texts)
    assert mod.char_count_reward(texts) == [34.0, 2.0] and mod.char_count_reward(as_messages(texts)) == [1.0, 1.0]
    assert mod.boxed_equals_ground_truth([r"\boxed{2}", r"\boxed{3}"], ["2", "2"]) == [1.0, 0.0]


@pytest.mark.parametrize("timeout", [0.0, 10.0])
def test_trainer_state_log_metric_and_log_extra_reach_the_reward_and_come_back(timeout):
    from transformers import TrainerState

    def curious(completions, trainer_state, log_metric, log_extra, **kwargs):
        log_metric("curious/step", float(trainer_state.global_step))
        log_extra("length", [len(c) for c in completions])
        return [float(trainer_state.global_step)] * len(completions)

    log = RewardLog()
    _, per, _ = score_completions([curious], None, ["ab", "c"], ["1", "2"], timeout=timeout, on_failure="abort",
                                  trainer_state=TrainerState(global_step=7, max_steps=9), log=log)
    assert per["curious"] == [7.0, 7.0]
    assert log.metrics == {"curious/step": [7.0]} and log.columns == {"length": [2, 1]}


def test_trls_own_accuracy_reward_logs_its_parsed_answers():
    log = RewardLog()
    _, per, _ = score_completions([f"{TRL_REWARDS}:accuracy_reward"], None,
                                  [r"So \boxed{\frac{1}{3}}", r"So \boxed{\frac{1}{2}}"], ["x", "x"], timeout=10.0,
                                  on_failure="abort", prompts=[[{"role": "user", "content": "q"}]] * 2,
                                  columns={"solution": [r"\frac{1}{3}", r"\frac{1}{3}"]}, log=log)
    assert per["accuracy_reward"] == [1.0, 0.0]
    assert set(log.columns) == {"solution", "gold_parsed", "answer_parsed"} and len(log.columns["solution"]) == 2


def test_the_issues_example_scores_differently_under_r1kits_and_open_r1s_rewards_of_the_same_names():
    text = "<think> 2 + 2 = 4 </think> <answer> 4 </answer>"
    ours, _, _ = score_completions(["accuracy", "format", "tag_count"], None, [text], ["4"])
    theirs, _, _ = score_completions([f"{OPEN_R1_REWARDS}:{n}_reward" for n in ("accuracy", "format", "tag_count")],
                                     None, [text], ["4"], prompts=[[{"role": "user", "content": "2 + 2?"}]],
                                     columns={"solution": ["$4$"]})
    assert (ours, theirs) == ([3.0], [0.0])  # hence the notice when a recipe names them (test_trl_recipes.py)


def test_trl_and_open_r1_reward_names_say_where_they_are_in_one_line():
    for name, fragment in (("think_format_reward", "TRL's trl.rewards.think_format_reward"),
                           ("reasoning_steps", "open-r1's open_r1.rewards.reasoning_steps_reward"),
                           ("cosine", "makes a reward from its arguments")):
        with pytest.raises(ConfigError) as err:
            make_config(overrides={"reward_funcs": [name]})
        assert fragment in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_gold_column_is_found_under_trls_names(tmp_path):
    for column in ("answer", "solution", "ground_truth"):
        f = tmp_path / f"{column}.jsonl"
        f.write_text(json.dumps({"prompt": "1+1?", column: "2", "other": 1}) + "\n")
        (problem,) = load_examples(str(f))
        assert problem.answer == "2" and problem.columns[column] == "2"
    f = tmp_path / "none.jsonl"
    f.write_text(json.dumps({"prompt": "1+1?", "result": "2"}) + "\n")
    with pytest.raises(r1kit.DataError, match=r"missing field 'answer' \(nor solution, ground_truth\)"):
        load_examples(str(f))
    assert load_examples(str(f), answer_field="result")[0].answer == "2"


# --- in training ----------------------------------------------------------------------------------------------


def tiny(tiny_model, out, **kw):
    return make_config(overrides={**dict(model=tiny_model, template="plain", stop_strings=[], num_generations=2,
                                         per_device_train_batch_size=4, max_completion_length=6, max_steps=2,
                                         save_steps=0, log_completions_steps=0, reward_timeout=10.0,
                                         write_report=False, torch_threads=1, output_dir=str(out)), **kw})


def probe(completions, prompts, trainer_state, log_metric, log_extra, **kwargs):
    """A TRL-style reward reporting what it was given: 1 when completions and prompts are messages."""
    log_metric("probe/global_step", float(trainer_state.global_step))
    log_extra("prompt_roles", [",".join(m["role"] for m in p) if isinstance(p, list) else "text" for p in prompts])
    return [1.0 if isinstance(c, list) and c[0]["role"] == "assistant" else 0.0 for c in completions]


def test_make_config_takes_reward_functions_and_training_passes_trls_arguments(tmp_path, tiny_model):
    """The README's `r1kit.train(r1kit.make_config(overrides={"reward_funcs": [fn]}))`, with a plain question
    rendered through the chat template (so a conversation, as open-r1 builds it) and trainer_state per step."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    model = tmp_path / "model"
    import shutil

    shutil.copytree(tiny_model, model)
    tok.save_pretrained(model)
    out = tmp_path / "run"
    history = r1kit.train(tiny(str(model), out, reward_funcs=[probe], template="chat", system_prompt="Be brief."),
                          show_progress=False)
    assert [m["probe/global_step"] for m in history] == [0.0, 1.0]  # TRL's global_step: updates done so far
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(s["rewards"]["probe"] == 1.0 for s in samples)  # completions came as messages
    assert all(s["extra"]["prompt_roles"] == "system,user" for s in samples)
    config = json.loads((out / "config.json").read_text())
    assert config["reward_funcs"] == ["tests.test_trl_rewards.probe"]


def test_plain_prompts_give_text_completions(tmp_path, tiny_model):
    out = tmp_path / "run"
    train(tiny(tiny_model, out, max_steps=1), reward_funcs=[probe], show_progress=False)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all(s["rewards"]["probe"] == 0.0 and s["extra"]["prompt_roles"] == "text" for s in samples)


def test_a_reward_failing_on_every_sample_stops_the_run_after_two_steps_in_one_line(tmp_path, tiny_model):
    """open-r1's format reward on text completions (template plain): what used to train on zeros."""
    out = tmp_path / "run"
    args = ["grpo", "--model", tiny_model, "--template", "plain", "--stop_strings", "</answer>", "--num_generations",
            "2", "--per_device_train_batch_size", "4", "--max_completion_length", "6", "--max_steps", "4",
            "--reward_funcs", "accuracy", f"{OPEN_R1_REWARDS}:format_reward", "--no-write-report",
            "--log_completions_steps", "0"]
    proc = run_cli(*args, "--output_dir", str(out))
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("r1kit: error: reward 'format_reward' failed on every sample for 2 steps in a row (first error: "
                    "TypeError: string indices must be integers, not 'str'); the run would train on zeros. Fix the "
                    "reward, or set reward_failure_steps: 0 to keep going"), last
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    kept = tmp_path / "kept"
    proc = run_cli(*args, "--reward_failure_steps", "0", "--output_dir", str(kept))
    assert proc.returncode == 0, proc.stderr
    assert len((kept / "metrics.jsonl").read_text().splitlines()) == 4


def test_the_failing_reward_counter_resets_when_a_step_scores(tmp_path, tiny_model):
    def flaky(completions, trainer_state, **kwargs):
        if trainer_state.global_step != 2:  # fails on steps 1, 2, 4 and 5; scores on step 3
            raise ValueError("down")
        return [0.5] * len(completions)

    def down(completions, answers):
        raise ValueError("down")

    history = train(tiny(tiny_model, tmp_path / "run", reward_failure_steps=3, max_steps=5, per_device_train_batch_size=2),
                    reward_funcs=[flaky], show_progress=False)
    assert [m["rewards/flaky"] for m in history] == [0.0, 0.0, 0.5, 0.0, 0.0]
    with pytest.raises(RewardError, match=r"^reward 'down' failed on every sample for 2 steps in a row \(first error: "
                                          r"ValueError: down\)"):
        train(tiny(tiny_model, tmp_path / "run2", reward_timeout=0, per_device_train_batch_size=2),
              reward_funcs=[down], show_progress=False)


def test_dynamic_sampling_keeps_each_kept_rows_logged_columns():
    from r1kit.trainers.grpo.scoring import Scores, pick_scores

    a = Scores(["a0", "a1"], ["1", "1"], ["reasoning"] * 2, [0.0, 1.0], {"r": [0.0, 1.0]}, [], 2, {"m": [1.0]},
               {"col": ["x0", "x1"]})
    b = Scores(["b0", "b1"], ["2", "2"], ["reasoning"] * 2, [1.0, 0.0], {"r": [1.0, 0.0]}, [], 2, {}, {"other": [5, 6]})
    out = pick_scores([(a, [1]), (b, [0, 1])])
    assert out.texts == ["a1", "b0", "b1"] and out.rows == 3 and out.metrics == {"m": [1.0]}
    assert out.extra == {"col": ["x1", None, None], "other": [None, 5, 6]}
