"""The real trackers, offline: what r1kit.core.tracking logs is read back from each one's own files
(TensorBoard event files, a W&B offline run, trackio's local database)."""

import json
import os
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from r1kit.core.tracking import make_trackers

# two metrics lines as the trainer writes them: non-numbers, booleans and NaN are not plotted
LINES = [{"step": 1, "reward": 0.5, "rewards/format": 1, "kl": float("nan"), "note": "text", "ok": True},
         {"step": 2, "reward": 0.75, "rewards/format": 0, "kl": 0.125}]
EXPECTED = {1: {"reward": 0.5, "rewards/format": 1.0}, 2: {"reward": 0.75, "rewards/format": 0.0, "kl": 0.125}}


def _log_all(name: str, run_dir) -> None:
    (tracker,) = make_trackers([name], run_dir, {"beta": 0.001})
    for line in LINES:
        tracker.log(line, line["step"])
    tracker.close()


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log_all("tensorboard", tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    got: dict[int, dict[str, float]] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            got.setdefault(event.step, {})[tag] = event.value
    assert got == EXPECTED  # 0.5, 0.75, 0.125 and 1/0 are exact in float32


def _wandb_records(path):
    """The protobuf records of a .wandb file: a 7-byte W&B header, then LevelDB's log format (32 KiB blocks
    of chunks with a 7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_read_back(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_PROJECT", "r1kit-test")
    _log_all("wandb", tmp_path / "run")
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    # wandb's core process may still be writing the file when finish() returns (measured: 1 run in 6 read
    # back with the header only), so wait for the run's exit record
    deadline = time.monotonic() + 60
    records = _wandb_records(run_file)
    while "exit" not in [r.WhichOneof("record_type") for r in records]:
        assert time.monotonic() < deadline, "the W&B offline run file never got its exit record"
        time.sleep(0.2)
        records = _wandb_records(run_file)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.project == "r1kit-test" and run.display_name == "run"
    config = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in run.config.update}
    assert config["beta"] == 0.001
    got = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            # a key is written as `key` or, depending on how the run was started, as a one-part `nested_key`
            items = {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            got[items["_step"]] = {k: v for k, v in items.items() if not k.startswith("_")}
    assert got == EXPECTED


def test_trackio_local_store_read_back(tmp_path):
    """In a subprocess: trackio fixes its storage folder (TRACKIO_DIR) when it is imported."""
    pytest.importorskip("trackio")
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r})
        from tests.test_trackers import LINES, _log_all
        _log_all("trackio", {str(tmp_path / "run")!r})
        from trackio.sqlite_storage import SQLiteStorage
        logs = SQLiteStorage.get_logs("r1kit-test", "run")
        print("LOGS" + json.dumps([{{k: v for k, v in row.items() if k not in ("timestamp",)}} for row in logs],
                                  default=str))
    """)
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "TRACKIO_PROJECT": "r1kit-test",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    logs = json.loads(proc.stdout.split("LOGS", 1)[1])
    got = {row["step"]: {k: v for k, v in row.items() if k in ("reward", "rewards/format", "kl")} for row in logs}
    assert got == EXPECTED
    assert (tmp_path / "trackio").is_dir()  # the store is local: the folder given, nothing uploaded
