"""The R1 pipeline: the shipped tiny config runs end to end and every stage leaves its artifacts; reruns skip
finished stages, --from restarts one, an edited stage reruns with everything downstream; bad configs and
missing inputs are one-line errors naming the stage and key; the Table 6 comparison runs."""

import json
import math
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from r1kit.core.errors import ConfigError, PipelineError
from r1kit.pipeline.pipeline import load_pipeline, run_pipeline
from r1kit.rewards.readable import parse_readable

from .conftest import REPO, run_cli

TINY = REPO / "configs" / "pipeline_tiny.yaml"
MODEL_STAGES = ["base", "zero", "sft_coldstart", "reasoning_rl", "sft_rejection", "all_scenario_rl", "student",
                "distill", "student_rl"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline") / "out"
    log: list[str] = []
    manifest = run_pipeline(TINY, output_dir=str(out), log=log.append)
    return out, manifest, log


def _layers(model_dir: str) -> int:
    return json.loads((Path(model_dir) / "config.json").read_text())["num_hidden_layers"]


def test_tiny_pipeline_runs_every_stage_and_leaves_its_artifacts(tiny_run):
    out, manifest, _ = tiny_run
    names = [s.name for s in load_pipeline(TINY).stages]
    assert list(manifest["stages"]) == names
    for name, entry in manifest["stages"].items():
        assert entry["status"] == "done", name
        assert entry["artifacts"], name
        for path in entry["artifacts"].values():
            assert Path(path).exists(), (name, path)
    # every model stage was evaluated the same way
    for name in MODEL_STAGES:
        ev = manifest["stages"][name]["eval"]
        assert ev["problems"] == 8 and ev["samples_per_problem"] == 2, name
        assert 0 <= ev["pass@1"] <= 1
        assert (out / name / "eval" / "samples.jsonl").is_file()
    assert manifest["stages"]["zero"]["eval"]["style"] == "r1zero"
    assert manifest["stages"]["sft_coldstart"]["eval"]["style"] == "readable"
    # training stages wrote metrics, one line per step, and a loadable final checkpoint
    for name, steps in (("zero", 2), ("reasoning_rl", 2), ("all_scenario_rl", 2), ("student_rl", 8)):
        lines = (out / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(1, steps + 1)), name
        assert (Path(manifest["stages"][name]["artifacts"]["model"]) / "model.safetensors").is_file()
    # data stages: readable-format SFT sets with filter counts
    cold = [json.loads(x) for x in (out / "coldstart" / "data.jsonl").read_text().splitlines()]
    assert 0 < len(cold) <= 64
    assert all(parse_readable(r["response"]) is not None for r in cold)
    counts = json.loads((out / "rejection" / "counts.json").read_text())
    rej = [json.loads(x) for x in (out / "rejection" / "data.jsonl").read_text().splitlines()]
    assert counts["sampled"] == 16 * 4  # max_prompts x num_samples
    assert counts["final_size"] == len(rej) == counts["kept"] + counts["non_reasoning_added"]
    assert sum(r["source"] == "non_reasoning" for r in rej) == 16  # every line of data/non_reasoning.jsonl
    # the reward model is a sequence classifier; the student has half the base's layers
    assert (out / "rm" / "model" / "config.json").is_file()
    assert _layers(manifest["stages"]["student"]["artifacts"]["model"]) == 2
    assert _layers(manifest["stages"]["base"]["artifacts"]["model"]) == 4
    assert _layers(manifest["stages"]["distill"]["artifacts"]["model"]) == 2
    # the SFT stages started from the models their config names: sft_rejection from base, not from the RL model
    sft_cfg = json.loads((out / "sft_rejection" / "config.json").read_text())
    assert sft_cfg["model"] == manifest["stages"]["base"]["artifacts"]["model"]
    # the summary puts every stage side by side
    summary = (out / "summary.md").read_text()
    for name in names:
        assert f"| {name} |" in summary
    rows = json.loads((out / "summary.json").read_text())
    assert [r["stage"] for r in rows] == names


def test_all_scenario_stage_mixed_general_prompts_scored_by_the_reward_model(tiny_run):
    out, _, _ = tiny_run
    samples = [json.loads(x) for x in (out / "all_scenario_rl" / "samples.jsonl").read_text().splitlines()]
    for step in (1, 2):
        kinds = {s.get("kind", "reasoning") for s in samples if s["step"] == step}
        assert kinds == {"reasoning", "general"}, step
    for s in samples:
        if s.get("kind") == "general":
            assert set(s["rewards"]) == {"helpfulness", "harmlessness"}
            assert math.isclose(s["reward"], s["rewards"]["helpfulness"] + s["rewards"]["harmlessness"], rel_tol=1e-5)
        else:
            assert set(s["rewards"]) == {"readable_accuracy", "readable_format", "language_consistency"}


def test_rerun_skips_finished_stages(tiny_run):
    out, manifest, _ = tiny_run
    log: list[str] = []
    again = run_pipeline(TINY, output_dir=str(out), log=log.append)
    skipped = [line for line in log if line.endswith("done, skipped")]
    assert len(skipped) == len(manifest["stages"])
    assert {n: e["finished"] for n, e in again["stages"].items()} == {n: e["finished"] for n, e in manifest["stages"].items()}


def _copy_config(tmp_path: Path, edit=None) -> Path:
    """The tiny config with absolute data paths, optionally edited, written to tmp_path."""
    raw = yaml.safe_load(TINY.read_text())
    for st in raw["stages"]:
        for k, v in st.items():
            if isinstance(v, str) and v.startswith("data/"):
                st[k] = str(TINY.parent / v)
    if edit:
        edit(raw)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_from_stage_reruns_it_and_later_stages_only(tiny_run, tmp_path):
    out, _, _ = tiny_run
    before = json.loads((out / "manifest.json").read_text())
    log: list[str] = []
    after = run_pipeline(TINY, start_from="student", output_dir=str(out), log=log.append)
    names = list(before["stages"])
    cut = names.index("student")
    for name in names[:cut]:
        assert after["stages"][name]["finished"] == before["stages"][name]["finished"], name
    for name in names[cut:]:
        assert any(line.endswith(f"] {name} ({before['stages'][name]['type']})") for line in log), name
        assert after["stages"][name]["status"] == "done"


def test_edited_stage_reruns_with_everything_downstream(tiny_run, tmp_path):
    out, _, _ = tiny_run
    before = json.loads((out / "manifest.json").read_text())

    def edit(raw):
        next(s for s in raw["stages"] if s["name"] == "sft_rejection")["learning_rate"] = 1.0e-3

    config = _copy_config(tmp_path, edit)
    log: list[str] = []
    after = run_pipeline(config, output_dir=str(out), log=log.append)
    ran = {line.split("] ")[1].split(" (")[0] for line in log if "] " in line and not line.endswith("skipped")}
    assert ran == {"sft_rejection", "all_scenario_rl", "distill_data", "distill"}
    # student and student_rl read only base: untouched
    assert after["stages"]["student_rl"]["finished"] == before["stages"]["student_rl"]["finished"]


def test_missing_earlier_output_names_the_stage_to_run(tmp_path):
    # sft_coldstart reads @base and @coldstart; --from it on a fresh folder has neither, and nothing runs
    out = tmp_path / "fresh"
    with pytest.raises(PipelineError, match=r"stage 'sft_coldstart' needs the model of stage 'base'.*--from base"):
        run_pipeline(TINY, start_from="sft_coldstart", output_dir=str(out), log=lambda _: None)
    assert not (out / "sft_coldstart").exists()
    r = run_cli("pipeline", str(TINY), "--from", "nosuch", "--output_dir", str(out))
    assert r.returncode == 2 and "--from nosuch: no such stage" in r.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw["stages"][3].update(lerning_rate=1e-3), r"stage 'sft_coldstart'.*unknown option 'lerning_rate' \(did you mean learning_rate\?\)"),
    (lambda raw: raw["stages"][1].update(model="@nosuch"), r"stage 'zero': key 'model': '@nosuch' does not name an earlier stage"),
    (lambda raw: raw["stages"][1].update(model="@distill"), r"stage 'zero': key 'model': '@distill' does not name an earlier stage"),
    (lambda raw: raw["stages"][2].update(type="coldstrat"), r"stage 'coldstart': key 'type': 'coldstrat' is not a stage type"),
    (lambda raw: raw["stages"][1].update(output_dir="x"), r"stage 'zero': key 'output_dir': the pipeline sets it"),
    (lambda raw: raw["stages"][1].update(num_generations=1), r"stage 'zero'.*num_generations=1"),
    (lambda raw: raw["stages"][1].update(use_lora=True), r"stage 'zero': key 'use_lora'"),
    (lambda raw: raw["eval"].update(limt=3), r"eval: unknown option 'limt'"),
    (lambda raw: raw["eval"].update(num_samples=0), r"eval: limit, num_samples, batch_size and max_new_tokens must be >= 1"),
    (lambda raw: raw["stages"][1].update(eval={"top_p": 2.0}), r"stage 'zero'.*eval: top_p=2.0"),
    (lambda raw: raw["stages"].append({"name": "zero", "type": "grpo"}), r"stage 'zero': the name is used by an earlier stage"),
])
def test_invalid_pipeline_config_names_the_stage_and_key(tmp_path, edit, message):
    config = _copy_config(tmp_path, edit)
    with pytest.raises(ConfigError, match=message):
        load_pipeline(config)


def test_invalid_config_on_the_command_line_is_one_line(tmp_path):
    config = _copy_config(tmp_path, lambda raw: raw["stages"][3].update(lerning_rate=1e-3))
    r = run_cli("pipeline", str(config), "--output_dir", str(tmp_path / "out"))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "stage 'sft_coldstart'" in err[0] and "lerning_rate" in err[0]
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_student_weights_are_the_teachers_kept_layers(tiny_run):
    _, manifest, _ = tiny_run
    base = Path(manifest["stages"]["base"]["artifacts"]["model"]) / "model.safetensors"
    student = Path(manifest["stages"]["student"]["artifacts"]["model"]) / "model.safetensors"
    with safe_open(base, "pt") as b, safe_open(student, "pt") as s:
        first, last = "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"
        assert (s.get_tensor(first) == b.get_tensor(first)).all()
        assert (s.get_tensor(last) == b.get_tensor("model.layers.3.mlp.up_proj.weight")).all()


@pytest.fixture(scope="module")
def arithmetic_teacher(tmp_path_factory):
    """A tiny model SFT-trained to answer 8 one-digit additions in the readable format, and those prompts."""
    from r1kit.models.loading import build_tiny_model
    from r1kit.rewards.readable import to_readable
    from r1kit.trainers.sft import final_model_dir, make_sft_config, sft_train

    root = tmp_path_factory.mktemp("teacher")
    pairs = [(a, b) for a, b in ((1, 2), (3, 4), (2, 5), (6, 1), (4, 4), (7, 2), (3, 3), (5, 2))]
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                               for a, b in pairs))
    records = [{"prompt": f"What is {a} + {b}?", "response": to_readable(f"{a} + {b} = {a + b}", f"The answer is {a + b}.")}
               for a, b in pairs]
    base = build_tiny_model(root / "base", num_layers=4, seed=3)
    c = make_sft_config(overrides=dict(model=str(base), template="plain", learning_rate=3e-3, num_train_epochs=150,
                                       per_device_train_batch_size=8, lr_scheduler_type="constant", torch_threads=1,
                                       output_dir=str(root / "sft"), save_steps=0))
    sft_train(c, records=records, show_progress=False)
    return str(final_model_dir(root / "sft")), str(prompts)


def test_distill_compare_gives_both_arms_the_same_prompts(arithmetic_teacher, tmp_path):
    teacher, prompts = arithmetic_teacher
    out = tmp_path / "t6"
    r = run_cli("distill-compare", "--teacher", teacher, "--student", teacher, "--student_layers", "2",
                "--dataset", prompts, "--num_prompts", "4",
                "--num_samples", "4", "--num_generations", "2", "--prompts_per_step", "2", "--max_new_tokens", "32",
                "--eval_benchmark", prompts, "--eval_limit", "8", "--eval_num_samples", "2", "--eval_max_new_tokens", "32",
                "--sft_learning_rate", "3e-3", "--sft_epochs", "20", "--torch_threads", "1", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    table = (out / "table6.md").read_text()
    for label in ("teacher", "student (before)", "distilled from the teacher (4 prompts)", "trained with GRPO (4 prompts)"):
        assert label in table
    budget = {json.loads(x)["question"] for x in (out / "prompts.jsonl").read_text().splitlines()}
    assert len(budget) == 4
    rl = {json.loads(x)["question"] for x in (out / "student_rl" / "samples.jsonl").read_text().splitlines()}
    sampled = {json.loads(x)["question"] for x in (out / "teacher_data" / "samples.jsonl").read_text().splitlines()}
    assert rl == budget and sampled == budget
    manifest = json.loads((out / "manifest.json").read_text())
    teacher_eval = manifest["stages"]["teacher"]["eval"]
    assert teacher_eval["pass@1"] >= 0.5, teacher_eval  # the teacher knows these sums
    distilled = [json.loads(x) for x in (out / "teacher_data" / "data.jsonl").read_text().splitlines()]
    assert distilled and all(d["prompt"] in budget for d in distilled)
    # distillation moved the student toward the teacher (measured: 0.0 -> 0.625 of the teacher's 1.0)
    assert manifest["stages"]["distilled"]["eval"]["pass@1"] > manifest["stages"]["student"]["eval"]["pass@1"] + 0.25


def test_distill_compare_over_seeds_gives_each_arms_mean_spread_and_every_seed(arithmetic_teacher, tmp_path):
    teacher, prompts = arithmetic_teacher
    out = tmp_path / "t6"
    r = run_cli("distill-compare", "--teacher", teacher, "--student", teacher, "--student_layers", "2",
                "--dataset", prompts, "--num_prompts", "2", "--num_samples", "4", "--num_generations", "2",
                "--prompts_per_step", "2", "--max_new_tokens", "32", "--eval_benchmark", prompts, "--eval_limit", "4",
                "--eval_num_samples", "2", "--eval_max_new_tokens", "32", "--sft_epochs", "2", "--torch_threads", "1",
                "--seeds", "0", "1", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    table = (out / "table6.md").read_text()
    evals = {s: json.loads((out / f"seed{s}" / "manifest.json").read_text())["stages"] for s in (0, 1)}
    assert evals[0]["student_rl"]["eval"]["pass@1"] is not None
    for name, label in (("teacher", "teacher"), ("distilled", "student distilled from the teacher (2 prompts)"),
                        ("student_rl", "student trained with GRPO (2 prompts)")):
        vals = [evals[s][name]["eval"]["pass@1"] for s in (0, 1)]
        mean, sd = sum(vals) / 2, abs(vals[0] - vals[1]) / math.sqrt(2)
        assert f"| {label} | {mean:.3f} ± {sd:.3f} |" in table, table
        assert f"| {label} | {vals[0]:.3f} | {vals[1]:.3f} | {min(vals):.3f} |" in table, table
    assert "| model | pass@1 | pass@2 | think_gain | format |" in table


def test_distill_compare_gives_the_student_a_prompt_under_which_it_answers(tmp_path):
    """--student_template/--student_prefill/--student_prompt_examples: the untrained student is evaluated and
    its RL arm trained under its own prompt (the paper's tags after a shown exchange); the distilled student
    learns, and is asked in, the teacher's format; both arms keep the same prompt budget."""
    from r1kit.cli.main import build_parser
    from r1kit.pipeline.compare import build_config

    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"question": "What is 2 + 5 + 4?", "response": "<think> 2 + 5 = 7, 7 + 4 = 11 "
                                                                                   "</think> <answer> 11 </answer>"}) + "\n")
    prompts = tmp_path / "prompts.jsonl"
    args = build_parser().parse_args(["distill-compare", "--teacher", "embedded", "--student", "embedded",
                                      "--student_template", "chat", "--student_prefill", "<think>",
                                      "--student_prompt_examples", str(examples), "--student_system_prompt", "Be brief.",
                                      "--student_reward_funcs", "format", "accuracy", "--output_dir", str(tmp_path)])
    config = build_config(args, prompts)
    stages = {st["name"]: st for st in config["stages"]}
    chat = {"template": "chat", "prefill": "<think>", "prompt_examples": str(examples), "system_prompt": "Be brief."}
    assert stages["student"]["eval"] == {**chat, "style": "r1chat"}
    rl = stages["student_rl"]
    assert {k: rl[k] for k in chat} == chat and rl["reward_funcs"] == ["format", "accuracy"] and "stop_strings" not in rl
    assert rl["dataset"] == stages["teacher_data"]["dataset"] == str(prompts)
    assert stages["distilled"]["template"] == stages["teacher_data"]["template"] == "plain"
    # the written config is a valid pipeline (every option checked)
    prompts.write_text(json.dumps({"question": "What is 1 + 2?", "answer": "3"}) + "\n")
    path = tmp_path / "table6_pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    p = load_pipeline(path)
    assert next(s for s in p.stages if s.name == "student_rl").options["prompt_examples"] == str(examples)


STOP_AT = {"call": None, "calls": 0}


def _stop_once(completions, answers):
    """A reward that sends this process SIGTERM on its STOP_AT-th call: a run stopped mid-stage."""
    import os
    import signal

    STOP_AT["calls"] += 1
    if STOP_AT["calls"] == STOP_AT["call"]:
        os.kill(os.getpid(), signal.SIGTERM)
    return [0.0 for _ in completions]


def test_interrupted_training_stage_resumes_and_matches_an_uninterrupted_run(tmp_path):
    from r1kit.core.errors import TrainingStopped
    from r1kit.rewards.registry import REWARDS

    REWARDS.setdefault("test_stop_once", _stop_once)
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump({
        "eval": {"benchmark": "arithmetic", "limit": 2, "num_samples": 2, "max_new_tokens": 8},
        "defaults": {"seed": 0, "torch_threads": 1, "write_report": False, "log_completions_steps": 0},
        "stages": [{"name": "base", "type": "tiny_model"},
                   {"name": "rl", "type": "grpo", "model": "@base", "template": "plain", "stop_strings": [],
                    "reward_funcs": ["test_stop_once", "tag_count"], "num_generations": 2,
                    "per_device_train_batch_size": 4, "max_completion_length": 8, "learning_rate": 1e-3,
                    "max_steps": 4, "save_steps": 1, "reward_timeout": 0}]}))
    STOP_AT.update(call=None, calls=0)
    whole = run_pipeline(config, output_dir=str(tmp_path / "whole"), log=lambda _: None)
    STOP_AT.update(call=2, calls=0)  # SIGTERM during step 2: the step finishes, is saved, and the stage stops
    with pytest.raises(TrainingStopped):
        run_pipeline(config, output_dir=str(tmp_path / "cut"), log=lambda _: None)
    manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert manifest["stages"]["rl"]["status"] == "running"
    STOP_AT.update(call=None)
    log: list[str] = []
    resumed = run_pipeline(config, output_dir=str(tmp_path / "cut"), log=log.append)
    assert any(line.endswith("rl (grpo): resuming") for line in log)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    a = Path(whole["stages"]["rl"]["artifacts"]["model"]) / "model.safetensors"
    b = Path(resumed["stages"]["rl"]["artifacts"]["model"]) / "model.safetensors"
    with safe_open(a, "pt") as fa, safe_open(b, "pt") as fb:
        for key in fa.keys():
            assert (fa.get_tensor(key) == fb.get_tensor(key)).all(), key


def test_stage_commands_run_from_the_command_line(tiny_model, tmp_path):
    """Each stage is also a command: r1kit coldstart -> sft, rejection, rm, student (wiring and outputs)."""
    data = str(TINY.parent / "data")
    r = run_cli("coldstart", "--user_dataset", f"{data}/coldstart_arithmetic.jsonl", "--max_examples", "16",
                "--output_dir", str(tmp_path / "cold"))
    assert r.returncode == 0, r.stderr[-1500:]
    r = run_cli("sft", "--model", tiny_model, "--dataset", str(tmp_path / "cold" / "data.jsonl"), "--max_steps", "2",
                "--torch_threads", "1", "--output_dir", str(tmp_path / "sft"))
    assert r.returncode == 0 and "sft done: 2 steps" in r.stdout, r.stderr[-1500:]
    model = str(tmp_path / "sft" / "checkpoint-2")
    r = run_cli("rejection", "--model", model, "--max_prompts", "2", "--num_samples", "2", "--max_new_tokens", "8",
                "--non_reasoning_dataset", f"{data}/non_reasoning.jsonl", "--output_dir", str(tmp_path / "rej"))
    assert r.returncode == 0, r.stderr[-1500:]
    counts = json.loads((tmp_path / "rej" / "counts.json").read_text())
    rows = (tmp_path / "rej" / "data.jsonl").read_text().splitlines()
    assert counts["sampled"] == 2 * 2 and counts["final_size"] == len(rows) >= 16
    r = run_cli("rm", "--model", tiny_model, "--dataset", f"{data}/preferences.jsonl", "--max_steps", "2",
                "--torch_threads", "1", "--output_dir", str(tmp_path / "rm"))
    assert r.returncode == 0 and (tmp_path / "rm" / "model" / "config.json").is_file(), r.stderr[-1500:]
    r = run_cli("student", model, str(tmp_path / "student"), "--num_layers", "2")
    assert r.returncode == 0, r.stderr[-1500:]
    # bad input: one line naming the file and line, exit 2, nothing half-written
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n')
    r = run_cli("sft", "--model", tiny_model, "--dataset", str(bad), "--output_dir", str(tmp_path / "sft_bad"))
    assert r.returncode == 2 and f"{bad}:2" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not list((tmp_path / "sft_bad").glob("checkpoint-*"))
