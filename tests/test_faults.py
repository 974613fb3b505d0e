"""Issue 22: every fault a one-line answer, one run per folder, and a resume that refuses a changed run.

Each fault is made to happen for real: files truncated or replaced by garbage, a tmpfs that fills up and a
read-only bind mount (in a mount namespace of their own, tests/faults.py), two processes racing for one
folder, a holder killed with SIGKILL. Runs compared bitwise use one CPU thread (tests/test_resume.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from r1kit.cli.main import build_parser, main
from r1kit.core.errors import ConfigError
from r1kit.core.lock import LOCK_NAME, FolderInUse, FolderLock
from r1kit.rewards.registry import REWARDS
from r1kit.trainers import checkpoint as ckpt
from tests.conftest import assert_same_run, metric_lines, started, wait_for
from tests.faults import read_only, run_with_mount, small_disk

# a fast GRPO run of the tiny model; `--write_report false` is also TRL's spelling of a boolean
GRPO = ["--num_generations", "2", "--per_device_train_batch_size", "2", "--max_completion_length", "4",
        "--log_completions_steps", "0", "--torch_threads", "1", "--write_report", "false", "--learning_rate", "1e-3",
        "--seed", "5", "--save_steps", "1", "--lr_scheduler_type", "linear"]
STEPS = 3


def faults_len(completions, answers):
    """A reward with a spread inside each group, so that the runs compared here really learn."""
    return [len(c) % 3 / 2 for c in completions]


REWARDS.setdefault("faults_len", faults_len)
LEARNING = ["--reward_funcs", "faults_len", "tag_count"]  # every run resumed here, and its reference


def _write_data(path: Path, offset: int = 0) -> Path:
    path.write_text("".join(json.dumps({"question": f"{a}+{b}", "answer": str(a + b + offset)}) + "\n"
                            for a in range(4) for b in range(3)))
    return path


def _grpo(model: str, out: Path, *extra: str) -> list[str]:
    return ["grpo", "--model", model, "--output_dir", str(out), "--dataset", "data.jsonl", "--max_steps", str(STEPS),
            *GRPO, *extra]


def _one_error(err: str, rc: int, *fragments: str, code: int = 2) -> str:
    """The run printed exactly one `r1kit: error:` line, no traceback, and exited with `code`."""
    assert rc == code, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("r1kit: error:")]
    assert len(errors) == 1, err[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes: to show that nothing was changed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model) -> Path:
    """An uninterrupted 3-step GRPO run with a checkpoint per step, trained on ./data.jsonl (a relative path:
    a copy of the run elsewhere reads the data.jsonl next to it)."""
    root = tmp_path_factory.mktemp("faults-reference")
    _write_data(root / "data.jsonl")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(_grpo(tiny_model, root / "run", *LEARNING)) == 0
    finally:
        os.chdir(cwd)
    init = load_file(Path(tiny_model) / "model.safetensors")
    final = load_file(root / "run" / f"checkpoint-{STEPS}" / "model.safetensors")
    assert max((final[k] - init[k]).abs().max().item() for k in init) > 1e-4  # the weights really moved
    return root / "run"


@pytest.fixture
def copied(reference, tmp_path, monkeypatch) -> Path:
    """A copy of the reference run, with its data, in the working directory."""
    _write_data(tmp_path / "data.jsonl")
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(reference, tmp_path / "run"))


# --------------------------------------------------------------------------
# Config files and the command line
# --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["grpo", "sft", "pipeline"])
def test_a_config_file_that_is_not_utf8_is_one_line_naming_file_and_line(tmp_path, capsys, command):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("seed: 1\nsystem_prompt: \"caf\xe9\"\n".encode("latin-1"))
    rc = main(["pipeline", str(config)] if command == "pipeline" else [command, "--config", str(config)])
    _one_error(capsys.readouterr().err, rc, f"{config}:2: not UTF-8 text (byte 0xe9)")


def test_a_key_given_twice_in_yaml_is_an_error_naming_both_lines(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("learning_rate: 1e-5\nseed: 3\nlearning_rate: 1e-6\n")
    rc = main(["grpo", "--config", str(config)])
    _one_error(capsys.readouterr().err, rc, f"{config}:3: key 'learning_rate' given twice (first at line 1)")
    merged = tmp_path / "merge.yaml"  # YAML's merge key may still be overridden key by key
    merged.write_text("defaults: &d {seed: 1, learning_rate: 1e-5}\nrun:\n  <<: *d\n  seed: 2\n")
    from r1kit.core.options import read_yaml

    assert read_yaml(merged)["run"] == {"seed": 2, "learning_rate": "1e-5"}


def test_a_folder_given_as_config_says_so(tmp_path, capsys):
    (tmp_path / "grpo.yaml").write_text("seed: 1\n")
    rc = main(["grpo", "--config", str(tmp_path)])
    _one_error(capsys.readouterr().err, rc, f"config file {tmp_path}: a folder, not a YAML file (it holds grpo.yaml)")


def test_booleans_take_true_and_false_after_any_boolean_option():
    parser = build_parser()
    grpo = vars(parser.parse_args(["grpo", "--write_report", "false", "--use_lora=TRUE", "--resume", "--ignore-eos", "no",
                                   "--skip_bad_data", "1", "--dynamic_sampling", "--trust_remote_code", "off"]))
    assert [grpo[k] for k in ("write_report", "use_lora", "resume", "ignore_eos", "skip_bad_data", "dynamic_sampling",
                              "trust_remote_code")] == [False, True, True, False, True, True, False]
    assert vars(parser.parse_args(["grpo", "--no-write_report"]))["write_report"] is False
    # hand-written options too; a bare flag before a positional argument leaves the argument alone
    chat = vars(parser.parse_args(["chat", "--trust_remote_code", "my-model"]))
    assert (chat["trust_remote_code"], chat["model"]) == (True, "my-model")
    chat = vars(parser.parse_args(["chat", "--trust_remote_code", "false", "my-model"]))
    assert (chat["trust_remote_code"], chat["model"]) == (False, "my-model")
    assert vars(parser.parse_args(["eval", "--benchmark", "gsm8k", "--trust_remote_code", "true"]))["trust_remote_code"]


@pytest.mark.parametrize("args,fragment", [
    (["grpo", "--write_report", "maybe"], "argument --write_report: expected true or false, got 'maybe'"),
    (["grpo", "--use_lora=2"], "argument --use_lora: expected true or false, got '2'"),
    (["grpo", "--num_generations", "x"], "invalid int value: 'x'"),
    (["grpo", "--learning_rat", "1e-5"], "unknown option --learning_rat (did you mean --learning_rate?)"),
    (["eval", "--benchmark", "gsm8k", "--lim", "3"], "unknown option --lim"),
])
def test_a_bad_command_line_is_one_line_and_options_are_never_abbreviated(capsys, args, fragment):
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err  # one line, not the usage
    assert err.startswith("r1kit: error: ") and fragment in err and f"(r1kit {args[0]} --help for more)" in err, err


@pytest.mark.parametrize("args,fragment", [
    (["--limit", "0"], "--limit 0: must be >= 1"),
    (["-k", "2", "--pass_k", "1", "8"], "--pass_k 8: pass@k needs 1 <= k <= the samples per problem (--num_samples/-k 2)"),
])
def test_eval_refuses_a_limit_of_zero_and_pass_k_above_k(tmp_path, capsys, args, fragment):
    rc = main(["eval", "--benchmark", "gsm8k", "--output_dir", str(tmp_path / "eval"), *args])
    _one_error(capsys.readouterr().err, rc, fragment)
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else os.urandom(len(data)))


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_model_with_damaged_weights_is_one_line_for_grpo_eval_and_chat(tmp_path, tiny_model, capsys, how, monkeypatch):
    model = Path(shutil.copytree(tiny_model, tmp_path / "model"))
    _damage(model / "model.safetensors", how)
    bench = _write_data(tmp_path / "bench.jsonl")
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    for args in (_grpo(str(model), tmp_path / "run"), ["eval", "--model", str(model), "--benchmark", str(bench),
                 "--output_dir", str(tmp_path / "eval")], ["chat", str(model)]):
        rc = main(args)
        _one_error(capsys.readouterr().err, rc, f"model {model}: cannot load it (a weights file is damaged or incomplete")
    assert not (tmp_path / "run").exists()  # the run folder it created for the run was empty: removed


def test_a_run_folder_given_as_model_names_its_latest_checkpoint(reference, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    for args in (_grpo(str(reference), tmp_path / "run"), ["eval", "--model", str(reference), "--benchmark",
                 str(tmp_path / "data.jsonl")], ["chat", str(reference)]):
        rc = main(args)
        _one_error(capsys.readouterr().err, rc, f"model path {reference}: a training run's folder, not a model",
                   f"its latest checkpoint is {reference / f'checkpoint-{STEPS}'}")


def test_a_model_id_missing_from_the_cache_is_not_called_a_connection_problem(tmp_path, capsys):
    rc = main(["chat", "nobody-r1kit/no-such-model"])
    err = _one_error(capsys.readouterr().err, rc, "no model of that id in the local Hugging Face cache")
    assert "connect" not in err


# --------------------------------------------------------------------------
# The output folder: a file, read-only, a full disk
# --------------------------------------------------------------------------


def test_an_output_dir_that_is_a_file_or_under_a_file_is_one_line(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    rc = main(_grpo(tiny_model, afile))
    _one_error(capsys.readouterr().err, rc, f"output_dir {afile} is a file; choose a folder")
    rc = main(_grpo(tiny_model, afile / "run"))
    _one_error(capsys.readouterr().err, rc, f"output_dir {afile / 'run'}: cannot create it ({afile} is a file)")
    assert afile.read_text() == "keep me\n"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "r1kit.cli", *args]


@pytest.mark.parametrize("holds_a_run", [False, True])
def test_a_read_only_output_dir_is_one_line_and_left_as_it_was(copied, tiny_model, tmp_path, holds_a_run):
    """Root ignores permission bits: the folder is made read-only by a read-only bind mount."""
    out = copied if holds_a_run else tmp_path / "empty"
    out.mkdir(exist_ok=True)
    before = _tree(out)
    proc = run_with_mount(read_only(out), _cli(*_grpo(tiny_model, out), *(["--resume"] if holds_a_run else [])))
    _one_error(proc.stderr, proc.returncode, f"output_dir {out}: cannot write in it (Read-only file system [EROFS])")
    assert _tree(out) == before


def test_a_disk_full_at_the_start_is_one_line(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    out = tmp_path / "disk"
    proc = run_with_mount(small_disk(out, 64, fill=True), _cli(*_grpo(tiny_model, out / "run")))
    _one_error(proc.stderr, proc.returncode, f"output_dir {out / 'run'}: cannot write in it (No space left on device "
                                             f"[ENOSPC])")


@pytest.mark.parametrize("kilobytes,lora,raised_by", [(200, False, "safetensors"), (600, False, "torch.save"),
                                                      (100, True, "peft's safetensors")])
def test_a_disk_that_fills_at_the_first_checkpoint_is_one_line_and_loses_nothing(tmp_path, tiny_model, monkeypatch,
                                                                               kilobytes, lora, raised_by):
    """The tmpfs holds the run's start and its first metrics, not checkpoint-1: the write fails in
    {raised_by}, which each report a full disk in their own way."""
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    out, kept = tmp_path / "disk", tmp_path / "kept"
    run = _grpo(tiny_model, out / "run", *(["--use_lora", "true"] if lora else []))
    run[run.index("--max_steps") + 1] = "1"
    proc = run_with_mount(small_disk(out, kilobytes), _cli(*run), copy_out=(out, kept))
    _one_error(proc.stderr, proc.returncode, f"could not write checkpoint {out / 'run' / 'checkpoint-1'}: No space "
               f"left on device [ENOSPC]; the partial folder was removed", "previous checkpoint is intact: none yet",
               code=1)
    assert [m["step"] for m in metric_lines(kept / "run")] == [1]  # the step's metrics line is whole
    assert json.loads((kept / "run" / "config.json").read_text())["max_steps"] == 1
    assert not list((kept / "run").glob("*checkpoint*")) and not (kept / "run" / LOCK_NAME).exists()


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def test_report_out_at_a_file_and_unreadable_metrics_are_one_line(reference, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep me\n")
    rc = main(["report", str(reference), "--out", str(afile)])
    _one_error(capsys.readouterr().err, rc, f"report: {afile} is a file that is not .html")
    assert afile.read_text() == "keep me\n"

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metrics.jsonl").write_text("not json\n[1, 2]\n{\"no_step\": 1}\n")
    rc = main(["report", str(garbage)])
    _one_error(capsys.readouterr().err, rc, "none of the 3 lines of metrics.jsonl is a metrics record")
    assert not (garbage / "report").exists()

    mixed = Path(shutil.copytree(reference, tmp_path / "mixed"))
    with open(mixed / "metrics.jsonl", "a") as f:
        f.write("{\"step\": 4, \"loss\": \n\x00\x01 binary\n")
    assert main(["report", str(mixed)]) == 0
    assert f"{mixed / 'metrics.jsonl'}: 2 of {STEPS + 2} lines could not be read" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Resume: the newest checkpoint that loads whole, and only the same run
# --------------------------------------------------------------------------


@pytest.mark.parametrize("damaged,how", [("model.safetensors", "truncated"), ("model.safetensors", "garbage"),
                                         ("training_state.pt", "truncated")])
def test_resume_falls_back_past_a_damaged_checkpoint_and_keeps_it(reference, copied, tiny_model, capsys, damaged, how):
    last = copied / f"checkpoint-{STEPS}"
    _damage(last / damaged, how)
    damaged_bytes = (last / damaged).read_bytes()
    assert main(_grpo(tiny_model, copied, *LEARNING, "--resume")) == 0
    out = capsys.readouterr().out
    assert re.search(rf"resume: skipped {re.escape(str(last))} \({damaged}[ :].+\); kept as checkpoint-{STEPS}.damaged", out), out
    assert f"resuming from {copied / f'checkpoint-{STEPS - 1}'} at step {STEPS - 1}" in out
    assert (copied / f"checkpoint-{STEPS}.damaged" / damaged).read_bytes() == damaged_bytes  # never deleted
    assert_same_run(reference, copied, STEPS)  # the step was trained again, exactly as the first time


def test_resume_with_every_checkpoint_damaged_is_refused_and_changes_nothing(copied, tiny_model, capsys):
    for c in ckpt.list_checkpoints(copied):
        _damage(c / "training_state.pt", "truncated")
    before = _tree(copied)
    rc = main(_grpo(tiny_model, copied, *LEARNING, "--resume"))
    _one_error(capsys.readouterr().err, rc, f"resume: no checkpoint in {copied} loads whole: checkpoint-{STEPS}: "
                                            f"training_state.pt is")
    assert _tree(copied) == before


@pytest.mark.parametrize("change,listed", [
    (["--dataset", "other.jsonl"], 'dataset "data.jsonl" -> "other.jsonl"'),
    (["--num_generations", "4", "--per_device_train_batch_size", "4"],
     'per_device_train_batch_size 2 -> 4, num_generations 2 -> 4'),
    (["--reward_funcs", "format", "--seed", "6"], 'seed 5 -> 6, reward_funcs ["faults_len", "tag_count"] -> ["format"]'),
    (["--max_steps", "2", "--beta", "0.1"], "max_steps 3 -> 2, beta 0.001 -> 0.1;"),
    (["--max_steps", "5", "--temperature", "0.5"], "temperature 1.0 -> 0.5;"),  # more steps alone would be accepted
])
def test_resume_refuses_a_changed_run_listing_every_change(copied, tiny_model, capsys, change, listed):
    _write_data(copied.parent / "other.jsonl", offset=1)
    before = _tree(copied)
    rc = main(_grpo(tiny_model, copied, *LEARNING, "--resume", "--allow_resume_changes", *change))
    _one_error(capsys.readouterr().err, rc, f"resume: {copied / f'checkpoint-{STEPS}'} was trained with other "
                                            f"settings: {listed}", f"--model {copied / f'checkpoint-{STEPS}'}")
    assert _tree(copied) == before


def test_resume_refuses_a_dataset_edited_in_place(copied, tiny_model, capsys):
    _write_data(copied.parent / "data.jsonl", offset=1)  # the same path, other answers
    before = _tree(copied)
    rc = main(_grpo(tiny_model, copied, *LEARNING, "--resume"))
    _one_error(capsys.readouterr().err, rc, f"resume: the training data or rewards differ from those of "
                                            f"{copied / f'checkpoint-{STEPS}'}: data_fingerprint ")
    assert _tree(copied) == before


def test_safe_changes_need_the_option_take_effect_and_are_recorded(copied, tiny_model, capsys):
    more = ["--max_steps", "5", "--learning_rate", "5e-4"]
    rc = main(_grpo(tiny_model, copied, *LEARNING, "--resume", *more))
    _one_error(capsys.readouterr().err, rc, 'resume: learning_rate 0.001 -> 0.0005, max_steps 3 -> 5 since',
               "a lower learning rate and more steps; pass --allow_resume_changes")
    assert main(_grpo(tiny_model, copied, *LEARNING, "--resume", *more, "--allow_resume_changes")) == 0
    assert "resuming with changed settings: learning_rate 0.001 -> 0.0005, max_steps 3 -> 5" in capsys.readouterr().out
    record = [json.loads(line) for line in (copied / "resume_changes.jsonl").read_text().splitlines()]
    assert [(r["step"], r["changes"]) for r in record] == [(3, {"learning_rate": [0.001, 0.0005], "max_steps": [3, 5]})]
    config = json.loads((copied / "config.json").read_text())
    assert (config["max_steps"], config["learning_rate"]) == (5, 5e-4)
    metrics = {m["step"]: m for m in metric_lines(copied)}
    assert sorted(metrics) == [1, 2, 3, 4, 5]
    # GRPO logs the rate after the step's update: linear decay over the new 5 steps, from the new rate
    assert metrics[4]["learning_rate"] == pytest.approx(5e-4 * (5 - 4) / 5, rel=1e-6)
    assert metrics[5]["learning_rate"] == 0.0
    # and a later resume compares with the settings now in force
    assert main(_grpo(tiny_model, copied, *LEARNING, "--resume", *more)) == 0


def _sft_rm(kind: str, model: str, out: Path, data: Path, *extra: str) -> list[str]:
    common = ["--model", model, "--output_dir", str(out), "--max_steps", "1", "--learning_rate", "1e-3", "--torch_threads",
              "1", "--seed", "3", "--per_device_train_batch_size", "4"]
    own = ["--dataset", str(data), "--prompt_field", "question", "--response_field", "answer"] if kind == "sft" \
        else ["--dataset", "toy", "--toy_examples", "16"]
    return [kind, *common, *own, *extra]


def test_the_resume_tables_name_real_options_and_never_the_runs_identity():
    from dataclasses import fields

    from r1kit.trainers.grpo.config import GRPOConfig
    from r1kit.trainers.reward_model import RMConfig
    from r1kit.trainers.run_folder import FREE_ON_RESUME, SAFE_ON_RESUME
    from r1kit.trainers.sft import SFTConfig

    options = {f.name for cls in (GRPOConfig, SFTConfig, RMConfig) for f in fields(cls)}
    assert FREE_ON_RESUME <= options and set(SAFE_ON_RESUME) <= options
    identity = {"model", "dataset", "num_generations", "per_device_train_batch_size", "gradient_accumulation_steps",
                "reward_funcs", "seed", "template", "max_length", "dtype", "use_lora"}
    assert not (FREE_ON_RESUME | set(SAFE_ON_RESUME)) & identity


@pytest.mark.parametrize("kind", ["sft", "rm"])
def test_sft_and_reward_model_resumes_refuse_a_changed_run_and_accept_safe_changes(tmp_path, tiny_model, capsys, kind):
    data = _write_data(tmp_path / "pairs.jsonl")
    out = tmp_path / kind
    assert main(_sft_rm(kind, tiny_model, out, data)) == 0
    before = _tree(out)
    rc = main(_sft_rm(kind, tiny_model, out, data, "--resume", "--seed", "4", "--per_device_train_batch_size", "2"))
    _one_error(capsys.readouterr().err, rc, f"resume: {out / 'checkpoint-1'} was trained with other settings: "
                                            f"seed 3 -> 4, per_device_train_batch_size 4 -> 2")
    assert _tree(out) == before
    longer = ["--resume", "--max_steps", "2", "--learning_rate", "5e-4", "--allow_resume_changes"]
    if kind == "sft":  # the data itself: the same file with other answers
        _write_data(data, offset=1)
        rc = main(_sft_rm(kind, tiny_model, out, data, *longer))
        _one_error(capsys.readouterr().err, rc, "data_fingerprint")
        _write_data(data)
    assert main(_sft_rm(kind, tiny_model, out, data, *longer)) == 0
    steps = {m["step"]: m for m in metric_lines(out)}
    assert sorted(steps) == [1, 2]
    # both log the rate the step's update used: the new rate, times the linear schedule over the new 2 steps
    assert steps[2]["learning_rate"] == pytest.approx(5e-4 * (2 - 1) / 2, rel=1e-6)
    assert json.loads((out / "resume_changes.jsonl").read_text())["changes"] == {"max_steps": [1, 2],
                                                                                 "learning_rate": [0.001, 0.0005]}


# --------------------------------------------------------------------------
# One run per folder
# --------------------------------------------------------------------------

HOLDER = """
import os, sys, time
from r1kit.core.lock import FolderLock
lock = FolderLock.acquire(sys.argv[1])
if sys.argv[2] == "fork":  # a child that outlives its parent shares the lock file's descriptor
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    print("held", flush=True)
    os._exit(0)  # dies without releasing: no unlink, no close
print("held", flush=True)
if sys.argv[2] == "release":
    lock.release()
    print("released", flush=True)
time.sleep(60)
"""


def _holder(folder: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), mode], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_the_folder_lock_names_its_holder_and_is_free_once_the_holder_dies(tmp_path, capsys):
    folder = tmp_path / "pipe"
    holder = _holder(folder, "hold")
    try:
        with pytest.raises(FolderInUse, match=rf"output_dir {folder} is in use by another run \(pid {holder.pid} on "):
            FolderLock.acquire(folder)
        config = tmp_path / "p.yaml"  # a pipeline in the held folder is refused in one line before any stage
        config.write_text(yaml.safe_dump({"output_dir": str(folder), "stages": [{"name": "base", "type": "tiny_model"}]}))
        rc = main(["pipeline", str(config)])
        _one_error(capsys.readouterr().err, rc, f"the pipeline's output_dir {folder} is in use by another run (pid "
                                                f"{holder.pid}")
        assert not (folder / "base").exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # no release, no clean-up: the kernel frees the lock
        holder.wait()
    with FolderLock.acquire(folder) as lock:
        assert lock.stale["pid"] == holder.pid
    assert not (folder / LOCK_NAME).exists()


def test_the_lock_is_the_process_own_not_its_childrens_and_goes_with_a_release(tmp_path):
    folder = tmp_path / "run"
    parent = _holder(folder, "fork")  # holds, forks a child that keeps running, exits without releasing
    parent.wait()
    with FolderLock.acquire(folder) as lock:  # the child still has the file open, but holds no lock
        assert lock.stale["pid"] == parent.pid
    os.killpg(parent.pid, signal.SIGKILL)
    releasing = _holder(folder, "release")
    try:
        assert releasing.stdout.readline().strip() == "released"
        with FolderLock.acquire(folder) as lock:
            assert lock.stale is None  # a release removes the file: nothing stale is left behind
    finally:
        os.killpg(releasing.pid, signal.SIGKILL)
        releasing.wait()


def test_without_record_locks_the_pid_in_the_lock_file_decides(tmp_path, monkeypatch):
    """Some network file systems have no record locks (ENOLCK): there a holder that is still running on
    this host keeps the folder, and one that is gone is taken over. Only the file system's answer is made
    up here; the holder is a real process."""
    import errno

    import r1kit.core.lock as lock_module

    folder = tmp_path / "nfs"
    holder = _holder(folder, "hold")

    def no_record_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(lock_module.fcntl, "lockf", no_record_locks)
    try:
        with pytest.raises(FolderInUse, match=rf"in use by another run \(pid {holder.pid} on "):
            FolderLock.acquire(folder)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    with FolderLock.acquire(folder) as lock:
        assert lock.stale["pid"] == holder.pid


def test_a_run_that_fails_gives_the_folder_back(tmp_path, tiny_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.jsonl").write_text('{"question": oops}\n')
    rc = main(_grpo(tiny_model, tmp_path / "run"))
    _one_error(capsys.readouterr().err, rc, "data.jsonl:1")
    assert not (tmp_path / "run").exists()  # created for the run, empty: removed with its lock
    with pytest.raises(ConfigError, match="already in use by this process"):
        with FolderLock.acquire(tmp_path / "held"):
            FolderLock.acquire(tmp_path / "held")


HOLD = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from r1kit.rewards import register_reward
CALLS = [0]

@register_reward("hold_after_first")
def hold_after_first(completions, answers):
    CALLS[0] += 1
    while CALLS[0] > 1 and os.path.exists(sys.argv[1]):  # from step 2 on, the run waits while the file exists
        time.sleep(0.05)
    return [len(c) % 3 / 2 for c in completions]

from r1kit.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_two_runs_race_for_one_folder_one_is_refused_and_a_killed_holder_is_taken_over(tmp_path, tiny_model,
                                                                                      monkeypatch):
    """Two fresh starts at the same moment; the one that gets the folder trains step 1, saves, then waits
    (inside its reward, while a file exists) until it is killed; a resume meanwhile is refused; after the
    kill, a resume takes the folder over and finishes the run."""
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path / "data.jsonl")
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.touch()
    args = _grpo(tiny_model, out, "--reward_funcs", "hold_after_first", "--reward_timeout", "0")
    args[args.index("--max_steps") + 1] = "4"
    cmd = [sys.executable, "-c", HOLD, str(hold), *args]
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with started(cmd, **pipes) as a, started(cmd, **pipes) as b:
        loser = None
        while loser is None:
            loser = next((p for p in (a, b) if p.poll() is not None), None)
            time.sleep(0.05)
        winner = b if loser is a else a
        assert winner.poll() is None, "the winner should still be training"
        _one_error(loser.stderr.read(), loser.returncode, f"output_dir {out} is in use by another run (pid {winner.pid} ")
        wait_for(lambda: ckpt.latest_checkpoint(out) is not None, winner)
        again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)  # a resume while it runs
        _one_error(again.stderr, again.returncode, f"is in use by another run (pid {winner.pid} ")
        assert winner.poll() is None
        os.killpg(winner.pid, signal.SIGKILL)  # a crash: the lock file stays, naming a process that is gone
        winner.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == winner.pid
    assert [m["step"] for m in metric_lines(out)] == [1]  # one run's lines only, none twice
    hold.unlink()
    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"the run that held it before (pid {winner.pid}, started " in resumed.stdout
    assert "ended without releasing it (killed?); taken over" in resumed.stdout
    assert [m["step"] for m in metric_lines(out)] == [1, 2, 3, 4]
    assert ckpt.latest_checkpoint(out) == out / "checkpoint-4" and not (out / LOCK_NAME).exists()
