"""--resume continues a run exactly: same weights and same metrics as an uninterrupted run.

One thread: multi-threaded CPU reductions are not bitwise repeatable (two identical uninterrupted runs
differ by ~1 ulp with 2 threads); with one thread they are, so the comparison can be bitwise."""

import json
import shutil

import torch
from safetensors.torch import load_file

from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.trainer import train
from tests.conftest import is_volatile


def _config(model, out, **kw):
    base = dict(model=model, max_steps=4, save_steps=2, num_generations=4, per_device_train_batch_size=4,
                gradient_accumulation_steps=2, max_completion_length=10, learning_rate=1e-3, beta=0.04,
                num_iterations=2, lr_scheduler_type="linear", warmup_steps=1, log_completions_steps=0,
                reward_funcs=["tag_count", "accuracy"], output_dir=str(out), seed=3, torch_threads=1)
    return make_config(overrides={**base, **kw})


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if not is_volatile(k)}
            for line in path.read_text().splitlines()]


def test_resume_matches_uninterrupted_run(tmp_path, tiny_model):
    full = tmp_path / "full"
    train(_config(tiny_model, full), show_progress=False)

    # a run that stopped after its step-2 checkpoint: copy what it had written by then
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(full / "checkpoint-2", part / "checkpoint-2")
    for name in ("metrics.jsonl", "samples.jsonl", "config.json"):
        shutil.copy(full / name, part / name)
    # a half-written checkpoint folder of a later step must be ignored
    (part / "checkpoint-3").mkdir()
    (part / "checkpoint-3" / "model.safetensors").write_bytes(b"partial")
    train(_config(tiny_model, part, resume=True), show_progress=False)

    a = load_file(full / "checkpoint-4" / "model.safetensors")
    b = load_file(part / "checkpoint-4" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise on CPU
    assert _metrics(full / "metrics.jsonl") == _metrics(part / "metrics.jsonl")
    assert (full / "samples.jsonl").read_text() == (part / "samples.jsonl").read_text()
