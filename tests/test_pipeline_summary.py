"""What the pipeline records about each stage: pass@1 next to pass@k, think_gain and the think's length in
summary.md / summary.json, matching the stage's own samples; the summary plot; extra held-out sets; several
seeds summarised with their spread; and a stage evaluated on fewer problems than asked is an error."""

import json
import math
from pathlib import Path

import pytest
import yaml

from r1kit.core.errors import DataError, PipelineError
from r1kit.evaluation.benchmarks import held_out_problems
from r1kit.evaluation.evaluate import pass_at_k
from r1kit.pipeline.evaluation import run_eval
from r1kit.pipeline.pipeline import load_pipeline, run_pipeline, run_seeds
from r1kit.pipeline.stages import STAGE_TYPES, make_stage_config

from .conftest import REPO, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def _sums(path: Path, n: int, terms: int = 2) -> Path:
    rows = [{"question": "What is " + " + ".join(str((i * 7 + j * 3) % 10) for j in range(terms)) + "?",
             "answer": str(sum((i * 7 + j * 3) % 10 for j in range(terms))), "id": f"q{i}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, **top) -> Path:
    """A tiny model, SFT on a few readable sums, both evaluated on a 6-problem file (k=2, with the think removed)."""
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"prompt": f"What is {a} + {b}?",
                                       "response": f"|special_token|{a} + {b} = {a + b}|special_token|"
                                                   f"The answer is {a + b}."}) + "\n"
                           for a in range(4) for b in range(4)))
    raw = {"eval": {"benchmark": str(_sums(tmp_path / "held.jsonl", 6)), "limit": 6, "num_samples": 2,
                    "max_new_tokens": 12},
           "defaults": {"seed": 0, "torch_threads": 1, "save_steps": 0},
           "stages": [{"name": "base", "type": "tiny_model", "num_layers": 2},
                      {"name": "sft", "type": "sft", "model": "@base", "dataset": str(sft), "max_steps": 3,
                       "learning_rate": 3e-3, "per_device_train_batch_size": 8, "lr_scheduler_type": "constant"}],
           **top}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _samples(run: Path, stage: str, folder: str = "eval") -> list[dict]:
    return [json.loads(x) for x in (run / stage / folder / "samples.jsonl").read_text().splitlines()]


def _pass(samples: list[dict], mode: str, k: int) -> float:
    by: dict[str, list[bool]] = {}
    for s in samples:
        if s["mode"] == mode:
            by.setdefault(s["problem_id"], []).append(s["correct"])
    return sum(pass_at_k(len(c), sum(c), k) for c in by.values()) / len(by)


def test_summary_carries_pass_at_k_and_think_gain_per_stage_and_draws_the_plot(tmp_path):
    extra = _sums(tmp_path / "hard.jsonl", 5, terms=3)
    config = _config(tmp_path, extra_evals={"harder": {"benchmark": str(extra), "limit": 5, "think_gain": False,
                                                       "stages": ["sft"]}})
    out = tmp_path / "run"
    manifest = run_pipeline(config, output_dir=str(out), log=lambda _: None)
    rows = {r["stage"]: r for r in json.loads((out / "summary.json").read_text())}
    for stage in ("base", "sft"):
        samples = _samples(out, stage)
        row = rows[stage]
        assert row["k"] == 2 and row["problems"] == 6
        # the figures are the stage's own samples', counted here independently
        assert math.isclose(row["pass@1"], _pass(samples, "think", 1))
        assert math.isclose(row["pass@k"], _pass(samples, "think", 2))
        assert math.isclose(row["pass@1_no_think"], _pass(samples, "no_think", 1))
        assert math.isclose(row["think_gain"], row["pass@1"] - row["pass@1_no_think"])
        think = [s for s in samples if s["mode"] == "think"]
        assert math.isclose(row["think_tokens"], sum(s["think_tokens"] for s in think) / len(think))
        assert row["pass@k"] >= row["pass@1"]
    # the extra held-out set: only the stage it names, the same checkpoint, no think-removed pass
    assert "extra_evals" not in manifest["stages"]["base"]
    hard = _samples(out, "sft", "eval_harder")
    assert {s["mode"] for s in hard} == {"think"} and len({s["problem_id"] for s in hard}) == 5
    assert math.isclose(rows["sft"]["extra_evals"]["harder"]["pass@1"], _pass(hard, "think", 1))
    text = (out / "summary.md").read_text()
    assert "| stage | type | pass@1 | pass@2 | cons@2 | think_gain | think tokens |" in text
    assert "harder pass@1 / pass@2" in text and "Extra held-out set 'harder'" in text
    assert f"| sft | sft | {rows['sft']['pass@1']:.3f} | {rows['sft']['pass@k']:.3f} |" in text
    png = (out / "summary.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 5000


def test_seeds_run_in_their_own_folders_and_the_summary_gives_the_spread(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "seeds"
    # as a user runs it
    r = run_cli("pipeline", str(config), "--seeds", "0", "1", "--output_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"pipeline done for seeds 0, 1; summary.md and summary.png over the seeds in {out}" in r.stdout
    per_seed = {s: {r["stage"]: r for r in json.loads((out / f"seed{s}" / "summary.json").read_text())}
                for s in (0, 1)}
    # each seed is its own run: its stages used its seed, and so did its evaluations
    for s in (0, 1):
        assert json.loads((out / f"seed{s}" / "sft" / "config.json").read_text())["seed"] == s
        assert json.loads((out / f"seed{s}" / "sft" / "eval" / "summary.json").read_text())["settings"]["seed"] == s
    agg = json.loads((out / "summary.json").read_text())
    assert agg["seeds"] == [0, 1]
    for row in agg["stages"]:
        vals = [per_seed[s][row["stage"]]["pass@1"] for s in (0, 1)]
        assert row["seeds"]["pass@1"] == {"0": vals[0], "1": vals[1]}
        assert math.isclose(row["pass@1"]["mean"], sum(vals) / 2)
        assert row["pass@1"]["min"] == min(vals) and row["pass@1"]["max"] == max(vals)
    text = (out / "summary.md").read_text()
    assert "Seeds 0, 1: mean ± sd" in text and "| stage | seed 0 | seed 1 | min |" in text
    assert (out / "summary.png").read_bytes().startswith(PNG)
    assert (out / "seed0" / "summary.png").read_bytes().startswith(PNG)


def test_a_stage_evaluated_on_fewer_problems_than_asked_is_an_error(tmp_path):
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["eval"]["limit"] = 7  # the file has 6
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match=r"eval: benchmark .*held\.jsonl: 7 held-out problems asked for, it has only 6"):
        load_pipeline(config)
    # a stage's own evaluation settings are counted too, before anything runs
    raw["eval"]["limit"] = 6
    raw["stages"][1]["eval"] = {"limit": 9}
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match=r"stage 'sft': eval: .* 9 held-out problems asked for, it has only 6"):
        load_pipeline(config)
    del raw["stages"][1]["eval"]
    raw["extra_evals"] = {"harder": {"limit": 8}}
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match=r"extra_evals 'harder': .* 8 held-out problems asked for"):
        load_pipeline(config)
    # and again when the evaluation runs (the file may have changed since): no smaller evaluation is written
    plan = {"benchmark": str(tmp_path / "held.jsonl"), "limit": 10, "seed": 0, "data_dir": None, "arithmetic_terms": 2,
            "arithmetic_max_value": 9, "arithmetic_ops": "+"}
    with pytest.raises(PipelineError, match=r"stage 'x': benchmark .*: 10 held-out problems asked for, it has only 6"):
        run_eval("unused", plan, tmp_path / "x" / "eval", "stage 'x'")
    assert not (tmp_path / "x").exists()
    # evaluation during training reads the same function
    with pytest.raises(DataError, match="7 held-out problems asked for, it has only 6"):
        held_out_problems(str(tmp_path / "held.jsonl"), 7, 0)


def test_bad_extra_evals_are_one_line_errors(tmp_path):
    config = _config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    for extra, message in (([1], "'extra_evals' must be a mapping"),
                           ({"hard": {"limt": 3}}, "extra_evals 'hard': unknown option 'limt'"),
                           ({"hard": {"stages": ["nope"]}}, "extra_evals 'hard': key 'stages': no stage named 'nope'")):
        raw["extra_evals"] = extra
        config.write_text(yaml.safe_dump(raw))
        with pytest.raises(PipelineError, match=message):
            load_pipeline(config)


def test_seeds_must_be_distinct(tmp_path):
    with pytest.raises(PipelineError, match="--seeds 1 1: seeds must be distinct"):
        run_seeds(_config(tmp_path), [1, 1], output_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_the_shipped_route_config_loads_and_its_cold_start_survives_the_filters(tmp_path):
    """configs/pipeline_route.yaml: SFT and RL evaluated on 64 held-out problems x 4 and on the four-term
    split; every one of its 64 worked chains is kept by the cold-start filters."""
    p = load_pipeline(REPO / "configs" / "pipeline_route.yaml", output_dir=str(tmp_path))
    stages = {s.name: s for s in p.stages}
    for name in ("sft", "rl"):
        assert stages[name].eval["limit"] == 64 and stages[name].eval["num_samples"] == 4
        assert set(stages[name].extra_evals) == {"four_terms"}
    cold = stages["coldstart"]
    config = make_stage_config("coldstart", {**cold.options, "output_dir": str(tmp_path / "coldstart")}, "test")
    artifacts, _ = STAGE_TYPES["coldstart"].run(config, tmp_path / "coldstart")
    kept = Path(artifacts["data"]).read_text().splitlines()
    assert len(kept) == 64


def test_a_stage_is_evaluated_with_the_prompt_it_was_trained_with(tmp_path):
    """An RL stage under the chat template with a system message and a shown worked exchange is evaluated under the same
    prompt (style auto); a model stage gets them from its eval settings (a base model that answers only after
    a shown exchange)."""
    from transformers import AutoTokenizer

    from r1kit.models.loading import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny", num_layers=2, seed=1)
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}\n{% endfor %}[assistant]"
    tok.save_pretrained(model)
    examples = tmp_path / "ex.jsonl"
    examples.write_text(json.dumps({"question": "What is 2 + 5 + 4?",
                                    "response": "<think> 2 + 5 = 7, 7 + 4 = 11 </think> <answer> 11 </answer>"}) + "\n")
    chat = {"system_prompt": "Be brief.", "prompt_examples": str(examples)}
    raw = {"eval": {"benchmark": str(_sums(tmp_path / "held.jsonl", 3)), "limit": 3, "num_samples": 1,
                    "max_new_tokens": 8, "think_gain": False},
           "defaults": {"seed": 0, "torch_threads": 1, "save_steps": 0},
           "stages": [{"name": "base", "type": "model", "model": str(model),
                       "eval": {"style": "r1chat", "prefill": "<think>", **chat}},
                      {"name": "rl", "type": "grpo", "model": "@base", "dataset": str(tmp_path / "held.jsonl"),
                       "max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2,
                       "max_completion_length": 8, "reward_funcs": ["format", "accuracy"], "template": "chat",
                       "prefill": "<think>", "log_completions_steps": 0, "write_report": False, **chat}]}
    config = tmp_path / "p.yaml"
    config.write_text(yaml.safe_dump(raw))
    manifest = run_pipeline(config, output_dir=str(tmp_path / "run"), log=lambda _: None)
    for stage in ("base", "rl"):
        assert manifest["stages"][stage]["eval"]["style"] == "r1chat"
        for s in _samples(tmp_path / "run", stage):
            assert s["prompt"].startswith("[system]Be brief.\n[user]What is 2 + 5 + 4?\n[assistant]<think> 2 + 5 = 7")
            assert s["prompt"].endswith("[assistant]<think>")
    # prompt_examples under a style with no chat turns is refused when the config is read
    raw["stages"][0]["eval"]["style"] = "readable"
    config.write_text(yaml.safe_dump(raw))
    with pytest.raises(PipelineError, match="stage 'base': eval: prompt_examples are shown as earlier chat turns"):
        load_pipeline(config)
