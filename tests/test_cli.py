"""The command line as a user meets it: bad input gives one line and exit 2; a real run writes metrics
and a checkpoint that transformers loads back."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import run_cli

TINY_RUN = ["--max_steps", "2", "--num_generations", "2", "--per_device_train_batch_size", "4",
            "--max_completion_length", "8", "--log_completions_steps", "1"]


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r1kit: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_input_gives_a_one_line_error(tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1+1", "answer": "2"}\n{"question": oops}\n')
    nofield = tmp_path / "nofield.jsonl"
    nofield.write_text('{"q": "1+1", "a": "2"}\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_generations: 4\nlearning_rte: 1e-6\n")
    out = str(tmp_path / "out")
    cases = [
        (["--model", str(tmp_path / "no-such-model")], ["no-such-model", "no such folder"]),
        (["--model", tiny_model, "--dataset", str(tmp_path / "missing.jsonl")], ["missing.jsonl", "no such file"]),
        (["--model", tiny_model, "--dataset", str(bad)], ["bad.jsonl:2", "malformed JSON"]),
        (["--model", tiny_model, "--dataset", str(nofield)], ["nofield.jsonl:1", "missing field 'question'"]),
        (["--num_generations", "1"], ["num_generations=1"]),
        (["--num_generations", "3", "--per_device_train_batch_size", "4"], ["does not divide into groups"]),
        (["--config", str(cfg)], ["c.yaml", "unknown option 'learning_rte'"]),
        (["--reward_funcs", "format", "bogus"], ["unknown reward bogus"]),
    ]
    for args, fragments in cases:
        assert_one_line_error(run_cli("grpo", "--output_dir", out, *args), *fragments)


def test_tiny_run_writes_metrics_samples_and_loadable_checkpoint(tmp_path, tiny_model):
    out = tmp_path / "run"
    proc = run_cli("zero", "--model", tiny_model, "--output_dir", str(out), *TINY_RUN)
    assert proc.returncode == 0, proc.stderr
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    for key in ("reward", "rewards/format", "rewards/accuracy", "accuracy", "format_rate", "completion_length",
                "completion_length_min", "completion_length_max", "truncated_frac", "kl", "clip_ratio", "entropy",
                "frac_reward_zero_std", "learning_rate", "step_time", "tokens_per_second"):
        assert key in metrics[0], key
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * 4 and {"completion", "reward", "advantage", "question"} <= samples[0].keys()
    model = AutoModelForCausalLM.from_pretrained(out / "checkpoint-2")
    tok = AutoTokenizer.from_pretrained(out / "checkpoint-2")
    assert model.config.vocab_size == len(tok)
    # the same output_dir again without --resume is refused rather than overwritten
    again = run_cli("zero", "--model", tiny_model, "--output_dir", str(out), *TINY_RUN)
    assert_one_line_error(again, "already holds a run", "--resume")
    assert (out / "metrics.jsonl").read_text().count("\n") == 2


@pytest.mark.slow
def test_embedded_model_smoke_run(tmp_path):
    """Two short GRPO steps on the embedded SmolLM2-135M (converted from its GGUF on first use)."""
    out = tmp_path / "run"
    proc = run_cli("zero", "--output_dir", str(out), "--prefill", "<think>", "--max_steps", "2",
                   "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "8",
                   "--save_steps", "1", "--save_total_limit", "1")
    assert proc.returncode == 0, proc.stderr
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # save_total_limit
    model = AutoModelForCausalLM.from_pretrained(out / "checkpoint-2")
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
