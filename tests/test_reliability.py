"""Issue 7, "never lose a run": each fault of docs/reliability.md, made to happen, with what r1kit does about it.

Runs that are compared bitwise use one CPU thread (see tests/test_resume.py). Subprocess runs go through a small
driver that registers a user reward, `slow_len`, which sleeps a little so a signal or a kill lands mid-run.
"""

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from r1kit.cli.main import main
from r1kit.core.errors import ConfigError, DataError, ModelError, RewardError, TrainingError
from r1kit.core.files import truncate_jsonl
from r1kit.data.problems import Example
from r1kit.data.sources import jsonl_examples, load_examples
from r1kit.models.loading import load_model
from r1kit.rewards.registry import REWARDS
from r1kit.rewards.scoring import score_completions
from r1kit.rewards.worker import close_reward_worker
from r1kit.trainers import checkpoint as ckpt
from r1kit.trainers.grpo import step
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.trainer import train
from tests.conftest import assert_same_run
from tests.conftest import metric_lines as _metric_lines
from tests.conftest import started as _started
from tests.conftest import wait_for as _wait_for

DRIVER = """
import signal, sys, time
# the child's own signal dispositions: a suite started in the background inherits SIGINT as ignored
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from r1kit.rewards import register_reward

@register_reward("slow_len")
def slow_len(completions, answers):
    time.sleep(SLEEP)  # slow enough that a signal or a kill lands between checkpoints
    return [len(c) % 3 / 2 for c in completions]

from r1kit.cli import main
sys.exit(main(sys.argv[1:]))
"""
MAX_STEPS = 6


def _cli_args(model: str, out: Path, *extra: str, sleep: float = 0.2) -> list[str]:
    return [sys.executable, "-c", DRIVER.replace("SLEEP", str(sleep)), "grpo", "--model", model, "--output_dir", str(out),
            "--max_steps", str(MAX_STEPS), "--num_generations", "4", "--per_device_train_batch_size", "8",
            "--max_completion_length", "12", "--learning_rate", "1e-3", "--beta", "0.04", "--torch_threads", "1",
            "--reward_funcs", "slow_len", "tag_count", "--log_completions_steps", "0", "--seed", "11", *extra]


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    """True once none of `pids` runs any more (a zombie waiting to be reaped counts as gone)."""
    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while any(running(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _assert_same_run(a: Path, b: Path) -> None:
    """Same final weights (bitwise), same metrics except timings, same samples."""
    assert_same_run(a, b, MAX_STEPS)
    assert (a / "samples.jsonl").read_text() == (b / "samples.jsonl").read_text()


def slow_len(completions, answers):
    """The driver's reward for the in-process reference run: same name and scores, no need to sleep."""
    return [len(c) % 3 / 2 for c in completions]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_model) -> Path:
    """The uninterrupted run that interrupted ones must reproduce (in this process: it saves a start-up)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    config = make_config(overrides=dict(model=tiny_model, output_dir=str(out), max_steps=MAX_STEPS, num_generations=4,
                                        per_device_train_batch_size=8, max_completion_length=12, learning_rate=1e-3,
                                        beta=0.04, torch_threads=1, log_completions_steps=0, seed=11, save_steps=1))
    train(config, reward_funcs=[slow_len, "tag_count"], show_progress=False)
    init = load_file(Path(tiny_model) / "model.safetensors")
    final = load_file(out / f"checkpoint-{MAX_STEPS}" / "model.safetensors")
    assert max((final[k] - init[k]).abs().max().item() for k in init) > 1e-4  # the weights really moved
    return out


# --------------------------------------------------------------------------
# Kill, signals, resume
# --------------------------------------------------------------------------


def test_sigkill_between_checkpoints_then_resume_matches_uninterrupted_run(tmp_path, tiny_model, reference_run):
    out = tmp_path / "run"
    with _started(_cli_args(tiny_model, out, "--save_steps", "1"), stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL) as proc:
        _wait_for(lambda: (out / "checkpoint-2" / ckpt.STATE_FILE).is_file(), proc)
        workers = _children(proc.pid)  # the reward worker
        proc.kill()  # SIGKILL: no handler runs, nothing is flushed
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert workers and _gone(workers)  # the kernel took the reward worker down with its parent
    assert not (out / f"checkpoint-{MAX_STEPS}").exists()  # it really died mid-run

    resumed = subprocess.run(_cli_args(tiny_model, out, "--save_steps", "1", "--resume"), capture_output=True,
                             text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"resuming from \S*checkpoint-\d+ at step \d+", resumed.stdout)
    _assert_same_run(reference_run, out)
    assert not list(out.glob(".tmp-checkpoint-*"))


@pytest.mark.slow
def test_async_rollout_sigkill_takes_the_generation_worker_down_and_resume_matches(tmp_path, tiny_model):
    """async_rollout: the generation worker dies with the trainer, and the run resumed from the last
    checkpoint (which holds the rollout generated ahead) ends bitwise like an uninterrupted one."""
    reference = tmp_path / "reference"
    config = make_config(overrides=dict(model=tiny_model, output_dir=str(reference), max_steps=MAX_STEPS,
                                        num_generations=4, per_device_train_batch_size=8, max_completion_length=12,
                                        learning_rate=1e-3, beta=0.04, torch_threads=1, log_completions_steps=0,
                                        seed=11, save_steps=1, async_rollout=True))
    train(config, reward_funcs=[slow_len, "tag_count"], show_progress=False)
    out = tmp_path / "run"
    with _started(_cli_args(tiny_model, out, "--save_steps", "1", "--async_rollout"),
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        _wait_for(lambda: (out / "checkpoint-2" / ckpt.STATE_FILE).is_file(), proc)
        workers = _children(proc.pid)  # the reward worker and the generation worker
        proc.kill()
        proc.wait()
    assert len(workers) >= 2 and _gone(workers)  # and multiprocessing's resource tracker
    assert not (out / f"checkpoint-{MAX_STEPS}").exists()
    resumed = subprocess.run(_cli_args(tiny_model, out, "--save_steps", "1", "--async_rollout", "--resume"),
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_run(reference, out)


def test_sigterm_finishes_the_step_saves_and_resume_completes_the_run(tmp_path, tiny_model, reference_run):
    out = tmp_path / "run"
    # save_steps 0: the only checkpoint before the end is the one the signal makes
    with _started(_cli_args(tiny_model, out, "--save_steps", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                  text=True) as proc:
        _wait_for(lambda: len(_metric_lines(out)) >= 1, proc)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert "SIGTERM received: finishing step" in stderr
    m = re.search(r"stopped by SIGTERM after step (\d+); checkpoint saved: (\S+)\. To continue: r1kit grpo .*--resume",
                  stdout)
    assert m, stdout
    step = int(m.group(1))
    assert 1 <= step < MAX_STEPS
    assert Path(m.group(2)) == out / f"checkpoint-{step}"
    assert ckpt.latest_checkpoint(out) == out / f"checkpoint-{step}"
    assert ckpt.load_training_state(out / f"checkpoint-{step}")["step"] == step
    assert [m["step"] for m in _metric_lines(out)] == list(range(1, step + 1))  # the step was finished and logged

    resumed = subprocess.run(_cli_args(tiny_model, out, "--save_steps", "0", "--resume"), capture_output=True,
                             text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out / f'checkpoint-{step}'} at step {step}" in resumed.stdout
    _assert_same_run(reference_run, out)


@pytest.mark.slow
def test_sigterm_to_an_accelerate_launch_stops_every_process_at_the_same_step(tmp_path, tiny_model):
    """The launcher forwards SIGTERM to both processes; they agree on the step through an all-reduce."""
    import shutil

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.replace("SLEEP", "0.2"))
    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    config = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "cpu_2proc.yaml"
    out = tmp_path / "run"
    args = _cli_args(tiny_model, out, "--save_steps", "0")[3:]  # without `python -c DRIVER`
    launch = [launcher, "launch", "--config_file", str(config), "--main_process_port", "29527", str(driver), *args]
    with _started(launch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _wait_for(lambda: len(_metric_lines(out)) >= 1, proc)
        proc.send_signal(signal.SIGTERM)  # to the launcher only, as a scheduler would
        stdout, stderr = proc.communicate(timeout=300)
    stops = re.findall(r"stopped by SIGTERM after step (\d+); checkpoint saved", stdout)
    assert len(stops) == 1, stdout + stderr[-3000:]  # printed by the main process only
    step = int(stops[0])
    assert ckpt.latest_checkpoint(out) == out / f"checkpoint-{step}"
    assert len(ckpt.load_training_state(out / f"checkpoint-{step}")["rng"]) == 2  # both processes' states
    assert [m["step"] for m in _metric_lines(out)] == list(range(1, step + 1))
    resumed = subprocess.run([*launch[:5], "29528", *launch[6:], "--resume"], capture_output=True, text=True,
                             env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [m["step"] for m in _metric_lines(out)] == list(range(1, MAX_STEPS + 1))


def test_a_second_sigint_a_second_later_stops_at_once(tmp_path, tiny_model):
    out = tmp_path / "run"
    with _started(_cli_args(tiny_model, out, "--save_steps", "1", sleep=4.0), stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True) as proc:
        _wait_for(lambda: (out / "checkpoint-1" / ckpt.STATE_FILE).is_file(), proc)
        proc.send_signal(signal.SIGINT)  # step 2 has just begun and takes 4 s
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "SIGINT received: finishing step 2" in stderr and stderr.rstrip().endswith("r1kit: interrupted")
    assert "stopped by" not in stdout
    assert ckpt.list_checkpoints(out) == [out / "checkpoint-1"]  # step 2 was abandoned, not saved
    assert not list(out.glob(".tmp-checkpoint-*"))


def test_partial_and_temporary_checkpoint_folders_are_never_taken_for_good_ones(tmp_path, tiny_model):
    out = tmp_path / "run"
    train(make_config(overrides=dict(model=tiny_model, output_dir=str(out), max_steps=1, num_generations=2,
                                     per_device_train_batch_size=2, max_completion_length=4,
                                     log_completions_steps=0, torch_threads=1)), show_progress=False)
    (out / "checkpoint-5").mkdir()  # renamed but without trainer_state.json: never happens, still ignored
    (out / "checkpoint-5" / "model.safetensors").write_bytes(b"partial")
    (out / ".tmp-checkpoint-7").mkdir()  # what a kill during a save leaves
    (out / ".tmp-checkpoint-7" / "model.safetensors").write_bytes(b"partial")
    assert ckpt.list_checkpoints(out) == [out / "checkpoint-1"]
    assert ckpt.remove_temporary_checkpoints(out) == [out / ".tmp-checkpoint-7"]
    assert not (out / ".tmp-checkpoint-7").exists() and (out / "checkpoint-1").is_dir()


def test_a_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    separator = "\u2028"  # str.splitlines would split here; a log line must not be broken at it
    path.write_text(json.dumps({"step": 1, "text": f"a{separator}b"}, ensure_ascii=False) + "\n"
                    + json.dumps({"step": 2}) + "\n" + json.dumps({"step": 3}) + "\n" + '{"step": 4, "rew')
    truncate_jsonl(path, 2)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("\n") == 2
    assert [json.loads(line) for line in text.split("\n")[:2]] == [{"step": 1, "text": f"a{separator}b"}, {"step": 2}]


# --------------------------------------------------------------------------
# Full disk
# --------------------------------------------------------------------------


def test_full_disk_gives_one_line_error_and_keeps_the_previous_checkpoint(tmp_path, tiny_model, monkeypatch, capsys):
    real_save = torch.save
    calls = []

    def save_until_disk_is_full(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) >= 2:
            if hasattr(f, "write"):  # the checkpoint writer hands torch.save an open file
                f.write(b"\0" * 1000)  # some bytes made it before the disk filled up
            else:
                with open(f, "wb") as partial:
                    partial.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save_until_disk_is_full)
    out = tmp_path / "run"
    rc = main(["grpo", "--model", tiny_model, "--output_dir", str(out), "--max_steps", "3", "--save_steps", "1",
               "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "4",
               "--log_completions_steps", "0", "--torch_threads", "1", "--learning_rate", "1e-3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("r1kit: error:")]
    assert len(errors) == 1, err
    last = errors[0]
    assert last.startswith("r1kit: error: could not write checkpoint ")
    assert str(out / "checkpoint-2") in last and "No space left on device [ENOSPC]" in last
    assert f"previous checkpoint is intact: {out / 'checkpoint-1'}" in last
    assert not list(out.glob(".tmp-checkpoint-*"))
    assert ckpt.list_checkpoints(out) == [out / "checkpoint-1"]
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    assert ckpt.load_training_state(out / "checkpoint-1")["step"] == 1
    load_model(str(out / "checkpoint-1"))  # loads back
    # and a resume from it works once the disk has room again
    rc = main(["grpo", "--model", tiny_model, "--output_dir", str(out), "--max_steps", "3", "--save_steps", "1",
               "--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "4",
               "--log_completions_steps", "0", "--torch_threads", "1", "--learning_rate", "1e-3", "--resume"])
    assert rc == 0
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-3"


# --------------------------------------------------------------------------
# Non-finite losses and gradients
# --------------------------------------------------------------------------


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite backward: a finite loss with a non-finite gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _poison_steps(monkeypatch, bad_steps: set[int], mode: str) -> None:
    """Make the loss (mode "loss") or only its gradient (mode "grad") non-finite on the given steps."""
    real = step.grpo_loss
    calls = [0]

    def loss_fn(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        calls[0] += 1  # one call per step in these runs (one micro-batch, one iteration)
        if calls[0] in bad_steps:
            loss = loss * float("nan") if mode == "loss" else _InfGrad.apply(loss)
        return loss, stats

    monkeypatch.setattr(step, "grpo_loss", loss_fn)


def _nan_config(model: str, out: Path, **kw):
    return make_config(overrides=dict(model=model, output_dir=str(out), num_generations=4, per_device_train_batch_size=4,
                                      max_completion_length=8, learning_rate=1e-2, beta=0.0, save_steps=1,
                                      log_completions_steps=0, reward_funcs=["tag_count"], torch_threads=1,
                                      lr_scheduler_type="linear", **kw))


@pytest.mark.parametrize("mode", ["loss", "grad"])
def test_a_nonfinite_update_is_skipped_logged_and_training_goes_on(tmp_path, tiny_model, monkeypatch, capsys, mode):
    _poison_steps(monkeypatch, {2}, mode)
    out = tmp_path / "run"
    history = train(_nan_config(tiny_model, out, max_steps=3), show_progress=False)
    assert [m["skipped_updates"] for m in history] == [0, 1, 0]
    printed = capsys.readouterr().out
    assert f"step 2: non-finite {'loss' if mode == 'loss' else 'gradient'}" in printed
    assert "update skipped (1 in a row" in printed
    # no checkpoint right after the non-finite update; the optimizer and schedule saw only 2 updates
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-3"]
    state = ckpt.load_training_state(out / "checkpoint-3")
    assert all(int(s["step"]) == 2 for s in state["optimizer"]["state"].values())
    assert state["scheduler"]["last_epoch"] == 2
    weights = load_file(out / "checkpoint-3" / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_too_many_nonfinite_updates_in_a_row_stop_the_run_at_the_last_good_checkpoint(tmp_path, tiny_model, monkeypatch):
    _poison_steps(monkeypatch, {3, 4, 5, 6}, "loss")
    out = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train(_nan_config(tiny_model, out, max_steps=8, max_consecutive_nonfinite=3), show_progress=False)
    message = str(err.value)
    assert "3 non-finite updates in a row" in message and "the last at step 5" in message
    assert f"Last good checkpoint: {out / 'checkpoint-2'}" in message
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-1", "checkpoint-2"]
    assert [m["skipped_updates"] for m in _metric_lines(out)] == [0, 0, 1, 1, 1]  # every step was logged
    assert ckpt.load_training_state(out / "checkpoint-2")["step"] == 2


# --------------------------------------------------------------------------
# Rewards that misbehave
# --------------------------------------------------------------------------


def sleepy(completions, answers):
    """Sleeps far past any limit on a completion containing 'hang'."""
    for c in completions:
        if "hang" in c:
            time.sleep(120)
    return [0.5] * len(completions)


def regex_hang(completions, answers):
    """Hangs inside C code (catastrophic regex backtracking) where no signal handler can run, as math-verify
    can inside sympy: a thread could not be stopped; the worker process is killed."""
    for c in completions:
        if "hang" in c:
            re.match(r"(a+)+$", "a" * 64 + "b")
    return [0.5] * len(completions)


def raises(completions, answers):
    return [1 / 0 if "boom" in c else 0.25 for c in completions]


BATCH = ["<think>2 + 2</think> <answer>4</answer>", "this will hang", "boom", "<think>2 + 3</think> <answer>5</answer>"]
GOLDS = ["4", "4", "4", "4"]


@pytest.mark.parametrize("hanging", [sleepy, regex_hang])
def test_a_reward_that_runs_past_its_limit_scores_zero_and_is_reported(hanging):
    t0 = time.monotonic()
    totals, per, failures = score_completions(["format", hanging, raises], None, BATCH, GOLDS, timeout=1.0,
                                              on_failure="zero")
    elapsed = time.monotonic() - t0
    assert elapsed < 20  # one limit for the batch call, one for the hanging sample alone, plus forks
    assert per["format"] == [1.0, 0.0, 0.0, 1.0]
    assert per[hanging.__name__] == [0.5, 0.0, 0.5, 0.5]  # only the sample that hangs on its own loses its score
    assert per["raises"] == [0.25, 0.25, 0.0, 0.25]
    assert totals == [1.75, 0.25, 0.5, 1.75]
    assert [(f.reward, f.index, f.kind) for f in failures] == [(hanging.__name__, 1, "timeout"), ("raises", 2, "error")]
    assert failures[0].error == "timed out after 1 s"
    assert failures[1].error == "ZeroDivisionError: division by zero"
    # the replacement worker scores exactly what this process would
    assert score_completions(["format", "accuracy"], None, BATCH, GOLDS, timeout=1.0)[:2] == \
        score_completions(["format", "accuracy"], None, BATCH, GOLDS)[:2]


@pytest.mark.parametrize("fn,fragment", [(sleepy, "failed on sample 1: timed out after 0.5 s"),
                                         (raises, "failed on sample 2: ZeroDivisionError")])
def test_policy_abort_names_the_reward_and_the_sample(fn, fragment):
    with pytest.raises(RewardError) as err:
        score_completions([fn], None, BATCH, GOLDS, timeout=0.5, on_failure="abort")
    assert f"reward '{fn.__name__}' {fragment}" in str(err.value)
    assert repr(BATCH[1] if fn is sleepy else BATCH[2]) in str(err.value)  # the completion is in the message


def test_a_worker_that_dies_is_replaced_and_the_sample_counted():
    def crash(completions, answers):
        if any("boom" in c for c in completions):
            os._exit(3)  # like a segfault or the OOM killer
        return [1.0] * len(completions)

    _, per, failures = score_completions([crash], None, BATCH, GOLDS, timeout=5.0, on_failure="zero")
    assert per["crash"] == [1.0, 1.0, 0.0, 1.0]
    assert [(f.index, f.kind) for f in failures] == [(2, "error")]
    assert "worker process died (exit code 3)" in failures[0].error


def odd_reward(completions, answers):
    """Hangs on gold HANG, raises on gold BOOM, else scores the length."""
    if "HANG" in answers:
        time.sleep(120)
    if "BOOM" in answers:
        raise ValueError("cannot score this one")
    return [len(c) / 10 for c in completions]


def test_reward_failures_in_training_are_counted_in_metrics_and_logged(tmp_path, tiny_model):
    # 4 questions, 2 per step, 2 steps: each gold is seen once, with G=2 completions
    examples = [Example("a?", "1", "q1"), Example("b?", "HANG", "q2"), Example("c?", "BOOM", "q3"),
                Example("d?", "2", "q4")]
    out = tmp_path / "run"
    config = make_config(overrides=dict(model=tiny_model, output_dir=str(out), max_steps=2, num_generations=2,
                                        per_device_train_batch_size=4, max_completion_length=6, reward_timeout=1.0,
                                        log_completions_steps=0, torch_threads=1, save_steps=0))
    history = train(config, examples=examples, reward_funcs=[odd_reward, "format"], show_progress=False)
    assert sum(m["rewards/odd_reward/timeouts"] for m in history) == 2
    assert sum(m["rewards/odd_reward/failures"] for m in history) == 2
    assert all(m["rewards/format/failures"] == 0 and m["rewards/format/timeouts"] == 0 for m in history)
    logged = [json.loads(line) for line in (out / "reward_failures.jsonl").read_text().splitlines()]
    assert sorted((r["prompt_id"], r["kind"]) for r in logged) == [("q2", "timeout")] * 2 + [("q3", "error")] * 2
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for r in logged:
        assert r["completion"] in {s["completion"] for s in samples if s["prompt_id"] == r["prompt_id"]}
        assert r["error"] in ("timed out after 1 s", "ValueError: cannot score this one")
    for s in samples:
        if s["prompt_id"] in ("q2", "q3"):
            assert s["rewards"]["odd_reward"] == 0.0
        else:
            assert s["rewards"]["odd_reward"] == pytest.approx(len(s["completion"]) / 10)


_TEXT = st.one_of(st.text(), st.lists(st.one_of(st.text(max_size=6), st.sampled_from(
    ["<think>", "</think>", "<answer>", "</answer>", "\\frac{1}{2}", "\\boxed{", "$", "1,000", "^{", "\\sqrt"])),
    max_size=12).map("".join))


@settings(max_examples=100, deadline=None)
@given(completions=st.lists(_TEXT, min_size=1, max_size=4), gold=st.one_of(st.text(max_size=8),
                                                                           st.sampled_from(["42", "0.5", "\\frac{1}{2}"])))
def test_guarded_rewards_never_raise_and_give_finite_floats_equal_to_in_process_ones(completions, gold):
    golds = [gold] * len(completions)
    builtins = ["format", "tag_count", "accuracy"]
    totals, per, failures = score_completions([*builtins, raises], None, completions, golds, timeout=30.0,
                                              on_failure="zero")
    assert all(isinstance(t, float) and math.isfinite(t) for t in totals)
    assert all(isinstance(v, float) and math.isfinite(v) for scores in per.values() for v in scores)
    assert all(f.reward == "raises" for f in failures)
    assert {n: per[n] for n in builtins} == {n: REWARDS[n](completions, golds) for n in builtins}


def teardown_module(module):
    close_reward_worker()


# --------------------------------------------------------------------------
# Bad data and bad configs
# --------------------------------------------------------------------------

BAD_LINES = [
    ('{"question": "b"\n', "d.jsonl:2: malformed JSON"),
    ('{"question": "b"}\n', "d.jsonl:2: missing field 'answer'"),
    ('[1, 2]\n', "d.jsonl:2: expected a JSON object, got list"),
    ('{"question": "b", "answer": ["1", "2"]}\n', "d.jsonl:2: field 'answer' is a list, expected text or a number"),
    ('{"question": "b", "answer": "  "}\n', "d.jsonl:2: field 'answer' is empty"),
    ('{"question": "", "answer": "3"}\n', "d.jsonl:2: field 'question' is empty"),
    (b'{"question": "\xff", "answer": "1"}\n', "d.jsonl:2: invalid UTF-8 at byte 14 of the line"),
]
GOOD = '{"question": "a", "answer": "1"}\n'


@pytest.mark.parametrize("bad,message", BAD_LINES)
def test_each_bad_line_is_an_error_naming_file_and_line(tmp_path, bad, message):
    f = tmp_path / "d.jsonl"
    f.write_bytes(GOOD.encode() + (bad if isinstance(bad, bytes) else bad.encode()) + GOOD.encode())
    with pytest.raises(DataError) as err:
        jsonl_examples(f)
    assert str(err.value).startswith(str(tmp_path / message))


def test_skip_bad_data_skips_counts_and_names_every_bad_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(GOOD.encode() + b"".join(b if isinstance(b, bytes) else b.encode() for b, _ in BAD_LINES) + GOOD.encode())
    skipped: list[str] = []
    examples = jsonl_examples(f, skipped=skipped)
    assert [(e.question, e.answer) for e in examples] == [("a", "1"), ("a", "1")]
    assert [s.split(": ", 1)[0] for s in skipped] == [f"{f}:{n}" for n in range(2, 2 + len(BAD_LINES))]
    for line, (_, message) in zip(skipped, BAD_LINES):
        assert message.split(": ", 1)[1] in line


def test_gsm8k_gold_without_marker_is_an_error_or_a_counted_skip(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    (d / "train.jsonl").write_text('{"question": "q1", "answer": "so 2\\n#### 2"}\n'
                                   '{"question": "q2", "answer": "no marker here"}\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'answer' has no '#### <answer>' line"):
        load_examples("gsm8k", data_dir=str(tmp_path))
    skipped: list[str] = []
    assert [e.answer for e in load_examples("gsm8k", data_dir=str(tmp_path), skipped=skipped)] == ["2"]
    assert len(skipped) == 1 and "train.jsonl:2" in skipped[0]


def test_empty_missing_or_all_bad_files_stay_errors_when_skipping(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no records \\(empty file\\)"):
        jsonl_examples(empty, skipped=[])
    with pytest.raises(DataError, match="no such file"):
        jsonl_examples(tmp_path / "missing.jsonl", skipped=[])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"oops"\n{"question": "q"}\n')
    with pytest.raises(DataError, match=r"no usable records .*first: .*bad.jsonl:1: malformed JSON"):
        jsonl_examples(bad, skipped=[])


def test_skip_bad_data_in_a_run_is_reported_and_recorded(tmp_path, tiny_model, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(GOOD + '{"question": "b"}\n' + "not json\n" + GOOD.replace('"a"', '"c"'))
    out = tmp_path / "run"
    base = dict(model=tiny_model, dataset=str(data), output_dir=str(out), max_steps=1, num_generations=2,
                per_device_train_batch_size=2, max_completion_length=4, log_completions_steps=0, torch_threads=1)
    with pytest.raises(DataError, match="d.jsonl:2: missing field 'answer'"):
        train(make_config(overrides={**base, "model": str(tmp_path / "never-loaded")}), show_progress=False)
    history = train(make_config(overrides={**base, "skip_bad_data": True}), show_progress=False)
    printed = capsys.readouterr().out
    assert "skip_bad_data: skipped 2 bad dataset lines" in printed
    assert f"{data}:2: missing field 'answer'" in printed and f"{data}:3: malformed JSON" in printed
    assert history[0]["data/skipped_lines"] == 2
    assert (out / "skipped_data.txt").read_text().splitlines()[1].startswith(f"{data}:3: malformed JSON")


@pytest.mark.parametrize("override,message", [
    ({"reward_timeout": -1.0}, "reward_timeout=-1.0"),
    ({"reward_failure": "ignore"}, "reward_failure='ignore': choose zero or abort"),
    ({"max_consecutive_nonfinite": 0}, "max_consecutive_nonfinite must be >= 1"),
    ({"skip_bad_data": "yes"}, "option 'skip_bad_data' expects true or false"),
])
def test_new_options_are_validated_by_name(override, message):
    with pytest.raises(ConfigError) as err:
        make_config(overrides=override)
    assert message in str(err.value)


def test_defaults_are_the_documented_policies():
    c = make_config()
    assert (c.reward_timeout, c.reward_failure, c.max_consecutive_nonfinite, c.skip_bad_data,
            c.trust_remote_code) == (10.0, "zero", 3, False, False)


def test_model_code_never_runs_unless_trust_remote_code(tmp_path, tiny_model):
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(tiny_model, folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaConfig\nclass EvilConfig(LlamaConfig):\n    model_type = 'r1kit_evil'\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="r1kit_evil", auto_map={"AutoConfig": "evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises((ModelError, ValueError)):
        load_model(str(folder))
    assert not marker.exists()
