"""What a TRL / open-r1 user brings works unchanged: datasets in any format `datasets` reads, TRL-style reward
functions (by registered name, dotted path or file), recipe YAML keys, dashed command-line options."""

import dataclasses
import json
import math
import os

import pytest

datasets = pytest.importorskip("datasets")

from r1kit.cli.main import build_parser  # noqa: E402
from r1kit.core.errors import (
    DataError,
)
from r1kit.data.sources import load_examples  # noqa: E402
from r1kit.data.templates import build_prompt  # noqa: E402
from r1kit.rewards.scoring import score_completions  # noqa: E402
from r1kit.trainers.grpo.config import GRPOConfig, make_config  # noqa: E402

FIELDS = {f.name: f for f in dataclasses.fields(GRPOConfig)}
from r1kit.trainers.grpo.trainer import train  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

ROWS = {"problem": ["What is 2 + 3?", "What is 7 + 1?", "What is 4 + 4?", "What is 9 + 0?"],
        "solution": ["5", "8", "8", "9"], "level": [1, 2, 3, 4]}


def _hub_cache(root, repo_id: str, ds) -> None:
    """The layout `hf download --repo-type dataset` leaves in the hub cache: refs/main -> a snapshot folder."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"datasets--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    data = repo / "snapshots" / sha / "data"
    data.mkdir(parents=True)
    ds.to_parquet(str(data / "train-00000-of-00001.parquet"))


def _source(kind: str, tmp_path, monkeypatch) -> str:
    ds = datasets.Dataset.from_dict(ROWS)
    if kind == "parquet":
        ds.to_parquet(str(tmp_path / "train.parquet"))
        return str(tmp_path / "train.parquet")
    if kind == "save_to_disk":
        ds.save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    _hub_cache(tmp_path / "hub", "someone/toy-sums", ds)
    return "someone/toy-sums"


def _tiny(tiny_model: str, out, **kw):
    return make_config(overrides=dict(model=tiny_model, template="plain", stop_strings=[], num_generations=2,
                                      per_device_train_batch_size=4, max_completion_length=6, max_steps=1,
                                      save_steps=0, log_completions_steps=0, reward_timeout=0, write_report=False,
                                      torch_threads=1, output_dir=str(out), **kw))


@pytest.mark.parametrize("kind", ["parquet", "save_to_disk", "cached_hub"])
def test_parquet_save_to_disk_and_cached_hub_datasets_load_and_train_one_step(kind, tmp_path, monkeypatch, tiny_model):
    source = _source(kind, tmp_path, monkeypatch)
    examples = load_examples(source, question_field="problem", answer_field="solution")
    assert [(e.question, e.answer) for e in examples] == list(zip(ROWS["problem"], ROWS["solution"]))
    # every column but `prompt` travels to the rewards, as TRL passes them (the question's own column too)
    assert [e.columns for e in examples] == [{"problem": p, "solution": s, "level": lv}
                                             for p, s, lv in zip(ROWS["problem"], ROWS["solution"], ROWS["level"])]
    c = _tiny(tiny_model, tmp_path / "run", dataset=source, question_field="problem", answer_field="solution")
    history = train(c, show_progress=False)
    assert [m["step"] for m in history] == [1]
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    gold = dict(zip(ROWS["problem"], ROWS["solution"]))
    assert len(samples) == 4 and all(gold[s["question"]] == s["answer"] for s in samples)


def test_dataset_splits_configs_and_bad_input_name_the_source(tmp_path, monkeypatch):
    ds = datasets.Dataset.from_dict(ROWS)
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dd"))
    assert len(load_examples(str(tmp_path / "dd"), split="test", question_field="problem", answer_field="solution")) == 1
    with pytest.raises(DataError, match=r"dd: no split 'valid' \(splits: train, test; set dataset_split\)"):
        load_examples(str(tmp_path / "dd"), split="valid", question_field="problem", answer_field="solution")
    holes = datasets.Dataset.from_dict({"problem": ["a", "b"], "solution": ["1", None]})
    holes.to_parquet(str(tmp_path / "holes.parquet"))
    with pytest.raises(DataError, match=r"holes.parquet: row 1: missing field 'solution'"):
        load_examples(str(tmp_path / "holes.parquet"), question_field="problem", answer_field="solution")
    skipped: list[str] = []
    kept = load_examples(str(tmp_path / "holes.parquet"), question_field="problem", answer_field="solution",
                         skipped=skipped)
    assert [e.question for e in kept] == ["a"] and len(skipped) == 1 and "row 1" in skipped[0]
    (tmp_path / "broken.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"broken.parquet: could not be read \("):
        load_examples(str(tmp_path / "broken.parquet"))
    monkeypatch.setattr(__import__("huggingface_hub").constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(DataError, match="nor a hub dataset in the local Hugging Face cache"):
        load_examples("nobody/not-downloaded")
    # two configurations in one folder (as a hub repo's README declares them): dataset_config picks one
    (tmp_path / "multi").mkdir()
    ds.to_csv(str(tmp_path / "multi" / "easy.csv"), index=False)
    ds.select([0, 1]).to_csv(str(tmp_path / "multi" / "hard.csv"), index=False)
    (tmp_path / "multi" / "README.md").write_text(
        "---\nconfigs:\n- config_name: easy\n  data_files: easy.csv\n- config_name: hard\n  data_files: hard.csv\n---\n")
    hard = load_examples(str(tmp_path / "multi"), config="hard", question_field="problem", answer_field="solution")
    assert [e.question for e in hard] == ROWS["problem"][:2]


def test_a_conversational_dataset_is_rendered_by_the_chat_template(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    conv = datasets.Dataset.from_dict({
        "prompt": [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 1 + 1?"}]],
        "solution": ["2"]})
    conv.to_json(str(tmp_path / "conv.json"), lines=False)  # one JSON array, as `datasets` writes it
    (example,) = load_examples(str(tmp_path / "conv.json"), answer_field="solution")  # TRL's `prompt` column
    assert example.question == "What is 1 + 1?" and example.answer == "2"
    assert example.messages[0] == {"role": "system", "content": "Be brief."}
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant]{% endif %}")
    text = build_prompt(example.question, tok, "chat", "<think>", messages=example.messages)
    assert text == "[system]Be brief.\n[user]What is 1 + 1?\n[assistant]<think>"
    no_system = [{"role": "user", "content": "Hi"}]
    assert build_prompt("Hi", tok, "chat", messages=no_system, system_prompt="S") == "[system]S\n[user]Hi\n[assistant]"
    assert build_prompt("Hi", tok, "plain", messages=no_system) == "Hi"


def test_a_trl_jsonl_with_a_prompt_column_needs_no_question_field(tmp_path):
    f = tmp_path / "trl.jsonl"
    f.write_text('{"prompt": "1+1?", "solution": "2"}\n{"prompt": [{"role": "user", "content": "2+2?"}], "solution": "4"}\n')
    a, b = load_examples(str(f), answer_field="solution")
    assert (a.question, a.messages, a.columns) == ("1+1?", None, {"solution": "2"})
    assert (b.question, b.messages) == ("2+2?", [{"role": "user", "content": "2+2?"}])


def test_the_same_loader_serves_evaluation_sft_rejection_and_reward_model_data(tmp_path):
    from r1kit.data.preferences import read_preference_pairs
    from r1kit.evaluation.benchmarks import load_benchmark
    from r1kit.pipeline.rejection import load_prompts, make_rejection_config
    from r1kit.trainers.sft import load_pairs, make_sft_config

    datasets.Dataset.from_dict(ROWS).to_parquet(str(tmp_path / "math.parquet"))
    problems = load_benchmark(str(tmp_path / "math.parquet"), question_field="problem", answer_field="solution")
    assert [(p.question, p.answer) for p in problems] == list(zip(ROWS["problem"], ROWS["solution"]))
    pairs = {"prompt": ["p1", "p2"], "response": ["r1", "r2"], "chosen": ["good", "fine"], "rejected": ["bad", ""]}
    datasets.Dataset.from_dict(pairs).to_parquet(str(tmp_path / "pairs.parquet"))
    sft = make_sft_config(overrides=dict(dataset=str(tmp_path / "pairs.parquet"), output_dir=str(tmp_path / "sft")))
    assert load_pairs(sft) == [("p1", "r1"), ("p2", "r2")]
    assert [(r["chosen"], r["rejected"]) for r in read_preference_pairs(tmp_path / "pairs.parquet")] == \
        [("good", "bad"), ("fine", "")]
    rej = make_rejection_config(overrides=dict(dataset=str(tmp_path / "math.parquet"), question_field="problem",
                                               answer_field="solution", output_dir=str(tmp_path / "rej")))
    assert [e.answer for e in load_prompts(rej)] == ROWS["solution"]


# --- TRL-style rewards ---------------------------------------------------------------------------------


def level_reward(completions, level, **kwargs):
    """TRL-style: reads the dataset column `level`."""
    return [0.1 * lv for lv in level]


def only_short(completions, prompts, **kwargs):
    """TRL-style: not applicable (None) to completions longer than 3 characters."""
    return [1.0 if len(c) <= 3 else None for c in completions]


@pytest.mark.parametrize("timeout", [0.0, 10.0])  # in this process, and in the forked timeout worker
def test_trl_style_rewards_get_columns_and_may_return_none(timeout):
    completions = ["ab", "abcdef", "x", "long one"]
    answers = ["1", "2", "3", "4"]
    levels = [1, 2, 3, 4]
    prompts = ["p0", "p1", "p2", "p3"]
    totals, per, failures = score_completions(
        [level_reward, only_short, lambda c, a: [1.0 if x == "x" else 0.0 for x in c]], [1.0, 2.0, 0.5],
        completions, answers, timeout=timeout, on_failure="abort", prompts=prompts,
        columns={"level": levels, "solution": answers})
    assert failures == []
    assert per["level_reward"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert per["only_short"][0] == 1.0 and math.isnan(per["only_short"][1])
    expected = []
    for c, lv in zip(completions, levels):
        total = 1.0 * 0.1 * lv + 0.5 * (1.0 if c == "x" else 0.0)
        if len(c) <= 3:  # only then does only_short apply
            total += 2.0 * 1.0
        expected.append(total)
    assert totals == pytest.approx(expected)


def test_trl_style_reward_on_a_conversational_batch_gets_message_completions():
    def first_content(completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    prompts = [[{"role": "user", "content": "q"}]] * 2
    _, per, _ = score_completions([first_content], None, ["abc", "de"], ["1", "2"], prompts=prompts)
    assert per["first_content"] == [3.0, 2.0]


def test_reward_keywords_lay_out_prompts_columns_and_ids_per_completion():
    from r1kit.data.problems import Example, reward_keywords

    chat = [{"role": "user", "content": "b?"}]
    batch = [Example("a?", "1", "a", columns={"answer": "1", "level": 3}),
             Example("b?", "2", "b", messages=chat, columns={"answer": "2", "source": "web"})]
    ids = [[1], [2, 2], [3], [4, 4, 4]]  # G = 2: rows 0-1 continue "a?", rows 2-3 continue "b?"
    got = reward_keywords(batch, 2, ids, rows=[0, 1, 3])
    assert got == {"prompts": ["a?", "a?", chat],
                   "columns": {"answer": ["1", "1", "2"], "level": [3, 3, None], "source": [None, None, "web"]},
                   "completion_ids": [[1], [2, 2], [4, 4, 4]]}


@pytest.fixture
def user_rewards(tmp_path, monkeypatch):
    """A package importable by dotted path and a loose file, each with a TRL-style reward."""
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "rewards.py").write_text("def brevity(completions, **kwargs):\n"
                                    "    return [1.0 / (1 + len(c)) for c in completions]\n")
    (tmp_path / "my_rewards.py").write_text("def has_a(completions, prompts=None, **kwargs):\n"
                                            "    return [1.0 if 'a' in c else None for c in completions]\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def test_dotted_path_and_file_rewards_from_the_cli_run_in_the_worker(user_rewards, tmp_path, tiny_model):
    out = tmp_path / "run"
    proc = run_cli("grpo", "--model", tiny_model, "--template", "plain", "--stop-strings", "</answer>",
                   "--reward-funcs", "userpkg.rewards.brevity", f"{user_rewards / 'my_rewards.py'}:has_a",
                   "--max-steps", "1", "--num-generations", "2", "--per-device-train-batch-size", "4",
                   "--max-completion-length", "6", "--reward-timeout", "30", "--log-completions-steps", "0",
                   "--no-write-report", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "rewards/brevity" in metrics
    for s in (json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()):
        assert s["rewards"]["brevity"] == pytest.approx(1.0 / (1 + len(s["completion"])))
        assert ("has_a" in s["rewards"]) == ("a" in s["completion"])
        assert s["reward"] == pytest.approx(sum(s["rewards"].values()))


def test_bad_reward_specs_are_refused_in_one_line(user_rewards, tmp_path):
    cases = [("bogus", "unknown reward bogus"), ("userpkg.rewards.nothing", "has no function 'nothing'"),
             ("nopkg_at_all.rewards.fn", "cannot import nopkg_at_all.rewards"),
             (f"{tmp_path / 'absent.py'}:fn", "absent.py: no such file")]
    for spec, fragment in cases:
        proc = run_cli("grpo", "--reward_funcs", spec, "--output_dir", str(tmp_path / "out"))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], proc.stderr


def test_a_trl_reward_reading_a_column_trains(tmp_path, tiny_model):
    from r1kit.core.errors import RewardError

    datasets.Dataset.from_dict(ROWS).to_parquet(str(tmp_path / "train.parquet"))
    c = _tiny(tiny_model, tmp_path / "run", dataset=str(tmp_path / "train.parquet"), question_field="problem",
              answer_field="solution", reward_funcs=["format"], reward_failure="abort")
    try:
        train(c, reward_funcs=["format", level_reward], show_progress=False)
    except RewardError as e:
        pytest.fail(f"the loop did not pass the columns: {e}")
    level = dict(zip(ROWS["problem"], ROWS["level"]))
    for s in (json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()):
        assert s["rewards"]["level_reward"] == pytest.approx(0.1 * level[s["question"]])


# --- command-line spellings (recipe keys: tests/test_trl_recipes.py) -------------------------------------


def test_every_option_takes_underscores_and_dashes():
    parser = build_parser()
    for field in FIELDS:
        if FIELDS[field].type in ("bool", bool):
            continue
        value = ["3"] if str(FIELDS[field].type).startswith("list") else ["3"]
        under = parser.parse_args(["grpo", f"--{field}", *value])
        dashed = parser.parse_args(["grpo", f"--{field.replace('_', '-')}", *value])
        assert vars(under) == vars(dashed), field
    bools = [f for f in FIELDS if str(FIELDS[f].type) == "bool"]
    for field in bools:
        dashed = field.replace("_", "-")
        assert vars(parser.parse_args(["grpo", f"--no-{dashed}"]))[field] is False
        assert vars(parser.parse_args(["grpo", f"--{dashed}"]))[field] is True
        assert vars(parser.parse_args(["grpo", f"--no-{field}"]))[field] is False
    assert vars(parser.parse_args(["sft", "--max-steps", "2"]))["max_steps"] == 2


def test_dashed_flags_run_a_real_step(tmp_path, tiny_model):
    out = tmp_path / "run"
    proc = run_cli("grpo", "--model", tiny_model, "--max-steps", "1", "--num-generations", "2",
                   "--per-device-train-batch-size", "4", "--max-completion-length", "4", "--no-write-report",
                   "--output_dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_hand_written_subcommands_take_dashes_too():
    parser = build_parser()
    for under, dashed in [(["eval", "--benchmark", "b", "--num_samples", "2", "--max_new_tokens", "3"],
                           ["eval", "--benchmark", "b", "--num-samples", "2", "--max-new-tokens", "3"]),
                          (["chat", "--max_new_tokens", "3", "--trust_remote_code"],
                           ["chat", "--max-new-tokens", "3", "--trust-remote-code"]),
                          (["report", "r", "--max_samples_per_step", "2"], ["report", "r", "--max-samples-per-step", "2"]),
                          (["student", "m", "o", "--num_layers", "2"], ["student", "m", "o", "--num-layers", "2"])]:
        assert vars(parser.parse_args(under)) == vars(parser.parse_args(dashed))


def test_eval_on_a_parquet_benchmark_from_the_cli(tmp_path, tiny_model):
    datasets.Dataset.from_dict(ROWS).to_parquet(str(tmp_path / "sums.parquet"))
    proc = run_cli("eval", "--model", tiny_model, "--benchmark", str(tmp_path / "sums.parquet"), "--question-field",
                   "problem", "--answer-field", "solution", "--num-samples", "1", "--max-new-tokens", "4",
                   "--output-dir", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr
    samples = [json.loads(x) for x in (tmp_path / "eval" / "sums" / "samples.jsonl").read_text().splitlines()]
    # one sample per problem with the think, and again with it removed (mode no_think: pass@1_no_think)
    for mode in ("think", "no_think"):
        assert sorted(s["gold"] for s in samples if s.get("mode") == mode) == sorted(ROWS["solution"]), mode
