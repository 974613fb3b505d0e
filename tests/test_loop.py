"""The shared training loop (r1kit.trainers.loop) keeps every trainer's runs safe, not only GRPO's: for SFT, reward-model
and process-reward-model training as for GRPO, a SIGKILL between checkpoints then --resume ends bitwise equal to an uninterrupted run,
SIGTERM finishes the step, saves and resumes, a second signal stops at once, and a non-finite update is skipped
without moving the schedule.

Runs compared bitwise use one CPU thread. Subprocess runs go through a driver that slows each step down (a sleep
in the trainer's loss or reward) so that a signal or a kill lands mid-run, and that sets the child's SIGINT and
SIGTERM dispositions itself: a suite started in the background inherits SIGINT as ignored, and the handlers would
then (rightly) leave it ignored.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1kit.core.errors import TrainingError
from r1kit.trainers import checkpoint as ckpt
from r1kit.trainers import prm, reward_model, sft
from r1kit.trainers.prm import make_prm_config, train_prm
from r1kit.trainers.reward_model import make_rm_config, train_reward_model
from r1kit.trainers.sft import make_sft_config, sft_train
from tests.conftest import assert_same_run, started
from tests.conftest import metric_lines as _metric_lines
from tests.conftest import wait_for as _wait_for

MAX_STEPS = 6

DRIVER = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)   # whatever the test runner's shell left them as
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from r1kit.trainers import prm, reward_model, sft

def slowed(fn):
    def wrapper(*args, **kwargs):
        time.sleep(SLEEP)  # slow enough that a signal or a kill lands between checkpoints
        return fn(*args, **kwargs)
    return wrapper

sft.sft_loss = slowed(sft.sft_loss)
reward_model.bradley_terry_loss = slowed(reward_model.bradley_terry_loss)
prm.prm_loss = slowed(prm.prm_loss)
from r1kit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _sft_data(path: Path) -> Path:
    rows = [{"question": f"{a}+{b}=", "summary": str(a + b)} for a in range(6) for b in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _step_labels(path: Path) -> Path:
    """Step-label records for the process reward model: the first step right when a + b is even, say."""
    rows = [{"prompt": f"{a}+{b}=", "problem_id": f"{a}{b}", "steps": [f"{a + b}", "=ok" if (a + b) % 2 else "=no"],
             "labels": [float((a + b) % 2 == 0), 0.5]} for a in range(6) for b in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _options(kind: str, model: str, out: Path, data: Path) -> dict:
    common = dict(model=model, output_dir=str(out), max_steps=MAX_STEPS, learning_rate=1e-3, torch_threads=1,
                  lr_scheduler_type="linear", seed=3)
    if kind == "sft":
        return dict(common, dataset=str(data), prompt_field="question", response_field="summary",
                    per_device_train_batch_size=4)
    if kind == "prm":
        return dict(common, dataset=str(data.with_name("labels.jsonl")), eval_fraction=0.25, per_device_train_batch_size=4)
    return dict(common, dataset="toy", toy_examples=64, eval_fraction=0.25, per_device_train_batch_size=4)


TRAIN = {"sft": lambda o, **kw: sft_train(make_sft_config(overrides=o), **kw),
         "rm": lambda o, **kw: train_reward_model(make_rm_config(overrides=o), **kw),
         "prm": lambda o, **kw: train_prm(make_prm_config(overrides=o), **kw)}


def _cli(kind: str, options: dict, *extra: str, sleep: float = 0.3) -> list[str]:
    args = [a for k, v in options.items() for a in (f"--{k}", str(v))]
    return [sys.executable, "-c", DRIVER.replace("SLEEP", str(sleep)), kind, *args, *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _assert_same_run(a: Path, b: Path) -> None:
    assert_same_run(a, b, MAX_STEPS)


@pytest.fixture(scope="module")
def references(tmp_path_factory, tiny_model) -> dict:
    """Uninterrupted runs of each trainer (in this process), which interrupted ones must reproduce."""
    root = tmp_path_factory.mktemp("loop")
    data = _sft_data(root / "pairs.jsonl")
    _step_labels(root / "labels.jsonl")
    refs = {}
    for kind in TRAIN:
        out = root / f"{kind}-reference"
        TRAIN[kind](dict(_options(kind, tiny_model, out, data), save_steps=1), show_progress=False)
        init = load_file(Path(tiny_model) / "model.safetensors")
        final = load_file(out / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
        moved = max((final[k] - init[k]).abs().max().item() for k in init if k in final)
        assert moved > 1e-4  # the weights really moved
        refs[kind] = out
    return {"data": data, **refs}


@pytest.mark.parametrize("kind", ["sft", "rm", "prm"])
def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted_run(tmp_path, tiny_model, references, kind):
    out = tmp_path / "run"
    options = dict(_options(kind, tiny_model, out, references["data"]), save_steps=1)
    with started(_cli(kind, options), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        _wait_for(lambda: (out / "checkpoint-2" / ckpt.STATE_FILE).is_file(), proc)
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / f"checkpoint-{MAX_STEPS}").exists()  # it really died mid-run
    resumed = subprocess.run(_cli(kind, options, "--resume", sleep=0), capture_output=True, text=True,
                             env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(rf"{kind}: resuming from \S*checkpoint-\d+ at step \d+", resumed.stdout)
    _assert_same_run(references[kind], out)
    assert not list(out.glob(".tmp-checkpoint-*"))


@pytest.mark.parametrize("kind", ["sft", "rm", "prm"])
def test_sigterm_finishes_the_step_saves_and_resume_completes_the_run(tmp_path, tiny_model, references, kind):
    out = tmp_path / "run"
    options = dict(_options(kind, tiny_model, out, references["data"]), save_steps=0)
    with started(_cli(kind, options), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _wait_for(lambda: len(_metric_lines(out)) >= 1, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "SIGTERM received: finishing step" in stderr
    m = re.search(rf"stopped by SIGTERM after step (\d+); checkpoint saved: (\S+)\. To continue: r1kit {kind} .*--resume",
                  stdout)
    assert m, stdout
    step = int(m.group(1))
    assert 1 <= step < MAX_STEPS
    assert ckpt.latest_checkpoint(out) == out / f"checkpoint-{step}" == Path(m.group(2))
    assert ckpt.load_training_state(out / f"checkpoint-{step}")["step"] == step
    assert [r["step"] for r in _metric_lines(out)] == list(range(1, step + 1))
    resumed = subprocess.run(_cli(kind, options, "--resume", sleep=0), capture_output=True, text=True,
                             env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the reference saved every step; this run only at the signal and the end: the last checkpoints agree
    _assert_same_run(references[kind], out)


@pytest.mark.parametrize("kind", ["sft", "rm", "prm"])
def test_a_second_signal_a_second_later_stops_at_once(tmp_path, tiny_model, references, kind):
    out = tmp_path / "run"
    options = dict(_options(kind, tiny_model, out, references["data"]), save_steps=1)
    with started(_cli(kind, options, sleep=4.0), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _wait_for(lambda: (out / "checkpoint-1" / ckpt.STATE_FILE).is_file(), proc)
        proc.send_signal(signal.SIGINT)  # step 2 has just begun and takes 4 s
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "SIGINT received: finishing step 2" in stderr, stderr
    assert stderr.rstrip().endswith("r1kit: interrupted")
    assert "stopped by" not in stdout
    assert ckpt.list_checkpoints(out) == [out / "checkpoint-1"]  # step 2 was abandoned, not saved


def _poison(monkeypatch, module, name: str, bad_calls: set[int]) -> None:
    """Make the loss NaN on the given calls (one call per step here: one micro-batch per step)."""
    real = getattr(module, name)
    calls = [0]

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls[0] += 1
        return loss * float("nan") if calls[0] in bad_calls else loss

    monkeypatch.setattr(module, name, poisoned)


LOSSES = {"sft": (sft, "sft_loss"), "rm": (reward_model, "bradley_terry_loss"), "prm": (prm, "prm_loss")}


@pytest.mark.parametrize("kind", ["sft", "rm", "prm"])
def test_a_nonfinite_update_is_skipped_without_moving_the_schedule(tmp_path, tiny_model, monkeypatch, capsys, kind):
    data = _sft_data(tmp_path / "pairs.jsonl")
    _step_labels(tmp_path / "labels.jsonl")
    _poison(monkeypatch, *LOSSES[kind], {2})
    out = tmp_path / "run"
    TRAIN[kind](dict(_options(kind, tiny_model, out, data), max_steps=3, save_steps=1), show_progress=False)
    assert [m["skipped_update"] for m in _metric_lines(out)] == [False, True, False]
    assert "step 2: non-finite loss" in capsys.readouterr().out
    # no checkpoint right after the non-finite update; the optimizer and the schedule saw 2 updates
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-3"]
    state = ckpt.load_training_state(out / "checkpoint-3")
    assert all(int(s["step"]) == 2 for s in state["optimizer"]["state"].values())
    assert state["scheduler"]["last_epoch"] == 2
    assert all(torch.isfinite(w).all() for w in load_file(out / "checkpoint-3" / "model.safetensors").values())


@pytest.mark.parametrize("kind", ["sft", "rm", "prm"])
def test_too_many_nonfinite_updates_stop_at_the_last_good_checkpoint(tmp_path, tiny_model, monkeypatch, kind):
    data = _sft_data(tmp_path / "pairs.jsonl")
    _step_labels(tmp_path / "labels.jsonl")
    _poison(monkeypatch, *LOSSES[kind], {3, 4, 5})
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=rf"3 non-finite updates in a row .* the last at step 5; stopped\. "
                                            rf"Last good checkpoint: {re.escape(str(out / 'checkpoint-2'))}"):
        TRAIN[kind](dict(_options(kind, tiny_model, out, data), max_steps=6, save_steps=1,
                         max_consecutive_nonfinite=3), show_progress=False)
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
