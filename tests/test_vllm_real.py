"""r1kit's vLLM paths against real vLLM (on the CPU: vLLM's CPU build, in .venv-vllm from `setup.sh --vllm`).

Run by .ci/run as `.venv-vllm/bin/python -m pytest tests/test_vllm_real.py`; skipped where vLLM is not
installed (the main venv), unless R1KIT_REQUIRE_VLLM is set, where a missing vLLM fails. The stand-in
tests (test_vllm_engine.py) keep the bookkeeping checks fast.

What is checked, on the embedded SmolLM2-135M in float32 (both sides fp32, so the log-prob gap between
vLLM's sampling distribution and the trainer's recomputation is kernel noise, ~1e-5, when the weights
agree; a stale copy after an update shows as ~1e-2 and more):
- colocated: a GRPO run whose rollout_logprob_gap stays near zero after every sync, and is large when the
  sync is skipped; the same under LoRA (merged before the sync); too-long prompts refused in one line;
  sleep mode refused on the CPU, as vLLM itself refuses it; `r1kit grpo --rollout_engine vllm` end to end.
- server mode: `r1kit vllm-serve` in one process, `r1kit grpo --vllm_mode server` in another: on-policy
  after every push; a server killed mid-run stops the trainer with one line and its checkpoint intact.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, metric_lines

try:
    import vllm  # noqa: F401
except ImportError:
    if os.environ.get("R1KIT_REQUIRE_VLLM"):
        raise
    pytest.skip("vLLM is not installed here (bash scripts/setup.sh --vllm makes .venv-vllm)", allow_module_level=True)

from r1kit.core.errors import ConfigError
from r1kit.models.loading import load_tokenizer, resolve_model_path
from r1kit.rollout.vllm_engine import VLLMEngine, build_llm
from r1kit.trainers.grpo import trainer
from r1kit.trainers.grpo.config import make_config

pytestmark = pytest.mark.slow
MODEL = resolve_model_path("embedded")
KV_BYTES = 1 << 30  # an explicit KV cache: vLLM skips its memory-probing warm-up
ON_POLICY = 1e-3    # measured: ~1e-5 per token with both sides fp32
# small steps of the demo's task: 1 prompt x G=8, 24 new tokens
RUN = dict(model="embedded", dataset=str(REPO / "configs/data/add1_train.jsonl"), template="chat", prefill="<think>",
           reward_funcs=["tag_count", "format", "accuracy"], num_generations=8, per_device_train_batch_size=8,
           max_completion_length=24, max_prompt_length=200, learning_rate=1e-4, beta=0.001, max_steps=3,
           save_steps=0, eval_steps=0, log_completions_steps=0, torch_threads=1, rollout_engine="vllm",
           vllm_dtype="float32", vllm_enforce_eager=True, vllm_kv_cache_memory_bytes=KV_BYTES)


@pytest.fixture(scope="module")
def engine():
    return VLLMEngine(MODEL, dtype="float32", max_model_len=256, enforce_eager=True, kv_cache_memory_bytes=KV_BYTES)


class SyncOnce:
    """The real engine with every sync after the first skipped: the samples come from a stale policy."""

    def __init__(self, engine):
        self.engine, self.synced = engine, False

    def sync_weights(self, policy, policy_version):
        if not self.synced:
            self.engine.sync_weights(policy, None)
            self.synced = True

    def generate(self, *args, **kw):
        return self.engine.generate(*args, **kw)


def gaps(tmp_path, engine, **overrides) -> list[float]:
    config = make_config(overrides={**RUN, "output_dir": str(tmp_path / "run"), **overrides})
    return [m["rollout_logprob_gap"] for m in trainer.train(config, show_progress=False, engine=engine)]


def test_grpo_on_vllm_stays_on_policy_and_a_skipped_sync_shows(tmp_path, engine):
    synced = gaps(tmp_path / "synced", engine)
    stale = gaps(tmp_path / "stale", SyncOnce(engine))
    print("gap after every sync", synced, "with the syncs skipped", stale)
    assert all(g < ON_POLICY for g in synced), synced
    assert stale[0] < ON_POLICY  # the first step samples from the weights that were pushed
    # then from a policy one or more updates old (an update moves it unless its group's rewards were all
    # equal, so the last step is the one sure to be stale)
    assert stale[-1] > 10 * ON_POLICY, stale


def test_lora_is_merged_before_the_sync(tmp_path, engine):
    lora = gaps(tmp_path / "lora", engine, use_lora=True, learning_rate=3e-3)
    stale = gaps(tmp_path / "lora_stale", SyncOnce(engine), use_lora=True, learning_rate=3e-3)
    print("LoRA: gap after every sync", lora, "with the syncs skipped", stale)
    assert all(g < ON_POLICY for g in lora), lora
    assert stale[-1] > 10 * ON_POLICY, stale  # the adapters really moved the policy vLLM must follow


def test_a_prompt_longer_than_the_engine_is_refused(engine):
    tok = load_tokenizer(MODEL)
    long_prompt = "one two three " * 100  # ~300 tokens, engine max_model_len 256
    with pytest.raises(ConfigError, match=r"plus max_completion_length=16 is longer than the vLLM engine's "
                                          r"max_model_len=256: lower max_prompt_length"):
        engine.generate(tok, [long_prompt], num_generations=2, max_new_tokens=16)
    r = engine.generate(tok, [long_prompt], num_generations=2, max_new_tokens=16, max_prompt_length=200, seed=0)
    assert r.prompt_truncated == 1 and r.completion_mask.sum(1).min() >= 1


def test_sleep_mode_is_refused_on_the_cpu_as_vllm_refuses_it(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("on a GPU sleep mode is supported")
    with pytest.raises(ValueError, match="Sleep mode is not supported"):
        build_llm(MODEL, dtype="float32", gpu_memory_utilization=0.3, max_model_len=256, seed=0,
                  enable_sleep_mode=True, enforce_eager=True, kv_cache_memory_bytes=KV_BYTES)
    config = make_config(overrides={**RUN, "output_dir": str(tmp_path / "run"), "vllm_enable_sleep_mode": True})
    with pytest.raises(ConfigError, match="vllm_enable_sleep_mode: vLLM's CPU backend has no sleep mode"):
        trainer.train(config, show_progress=False)


def r1kit(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "r1kit.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def _flags(overrides) -> list[str]:
    out = []
    for key, value in {**RUN, **overrides}.items():
        if isinstance(value, bool):
            out.append(f"--{key}" if value else f"--no-{key}")
            continue
        out.append(f"--{key}")
        out += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return out


def test_the_cli_trains_with_colocated_vllm(tmp_path):
    proc = r1kit("grpo", *_flags({"output_dir": str(tmp_path / "run"), "max_steps": 2}))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    lines = metric_lines(tmp_path / "run")
    assert [m["step"] for m in lines] == [1, 2] and all(m["rollout_logprob_gap"] < ON_POLICY for m in lines), lines


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "r1kit.cli", "vllm-serve", "--model", MODEL, "--port", str(port),
                             "--dtype", "float32", "--max_model_len", "256", "--enforce_eager",
                             "--kv_cache_memory_bytes", str(KV_BYTES)], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env)
    deadline = time.monotonic() + 300
    while "r1kit vllm-serve:" not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.5)
    return proc, port


@pytest.fixture
def server(tmp_path):
    proc, port = start_server(tmp_path / "server.log")
    yield proc, port
    proc.kill()
    proc.wait()


def server_flags(port: int, out: Path, **overrides) -> list[str]:
    return _flags({"output_dir": str(out), "vllm_mode": "server", "vllm_server_port": port,
                   "vllm_group_port": free_port(), "vllm_server_timeout": 60, **overrides})


def test_server_mode_stays_on_policy_and_a_dead_server_stops_the_run_cleanly(tmp_path, server):
    proc, port = server
    run = r1kit("grpo", *server_flags(port, tmp_path / "run", max_steps=2))
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-3000:]
    lines = metric_lines(tmp_path / "run")
    print("server mode gaps", [m["rollout_logprob_gap"] for m in lines])
    assert [m["step"] for m in lines] == [1, 2] and all(m["rollout_logprob_gap"] < ON_POLICY for m in lines), lines

    # a longer run, saving every step; the server is killed once the first checkpoint is complete
    out_dir = tmp_path / "killed"
    run = r1kit("grpo", *server_flags(port, out_dir, max_steps=6, save_steps=1))
    deadline = time.monotonic() + 300
    while not (out_dir / "checkpoint-1" / "training_state.pt").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()[-3000:] if run.poll() else "slow"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 1, err[-3000:]
    message = [line for line in err.splitlines() if line.startswith("r1kit: error:")]
    assert len(message) == 1 and f"vLLM server http://127.0.0.1:{port}" in message[0], err[-3000:]
    assert "last checkpoint:" in message[0] and "--resume" in message[0]
    last = message[0].split("last checkpoint: ")[1].split(" ")[0]
    assert Path(last).name.startswith("checkpoint-") and (Path(last) / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(last)  # a whole HF checkpoint, not a half-written one
    steps = [m["step"] for m in metric_lines(out_dir)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 6
