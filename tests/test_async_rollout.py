"""async_rollout: step t's completions come from a second process holding the weights of step t-1 (exactly
one step behind), the importance ratio's denominators are that sampler's log-probs, and a resumed run
continues bitwise like an uninterrupted one. One thread in both processes, so runs are bitwise repeatable."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import r1kit.trainers.grpo.step as step_module
from r1kit.algorithms.logprobs import completion_logprobs
from r1kit.core.errors import ConfigError
from r1kit.models.loading import load_model
from r1kit.models.weights import copy_weights_into
from r1kit.rollout.engines import LocalEngine
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.trainer import train
from tests.conftest import is_volatile


def _config(model, out, **kw):
    base = dict(model=model, max_steps=3, save_steps=1, num_generations=4, per_device_train_batch_size=8,
                max_completion_length=8, learning_rate=2e-2, beta=0.0, log_completions_steps=0, write_report=False,
                reward_funcs=["tag_count", "accuracy"], output_dir=str(out), seed=5, torch_threads=1,
                async_rollout=True, importance_sampling_cap=2.0)
    return make_config(overrides={**base, **kw})


def _logprobs_under(weights_dir, rollout):
    model = load_model(weights_dir)
    rows = torch.arange(len(rollout.completions)) // rollout.num_generations
    with torch.no_grad():
        lp, _ = completion_logprobs(model, rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids,
                                    rollout.completion_mask, rows)
    return lp


class CopyEngine:
    """A user's engine holding its own copy of the weights, as a server's client does: async_rollout runs its
    generate in a thread of the trainer (rollout.background.ThreadEngine)."""

    def __init__(self, model_path):
        self.inner = LocalEngine(load_model(model_path), "cpu")

    def sync_weights(self, policy, version):
        copy_weights_into(self.inner.sampler, policy)

    def generate(self, tokenizer, prompts, **kw):
        return self.inner.generate(tokenizer, prompts, **kw)


@pytest.mark.parametrize("where", ["worker process", "user engine in a thread"])
def test_rollouts_lag_exactly_one_step_and_the_ratio_uses_the_samplers_logprobs(tmp_path, tiny_model, monkeypatch,
                                                                                where):
    seen = []  # per step: the rollout, and the (pi_old, pi_sampler) log-probs the importance weights were given
    update, weights = step_module.policy_update, step_module.rollout_importance_weights

    def spy_update(s, rollout, *a, **kw):
        seen.append({"rollout": rollout})
        return update(s, rollout, *a, **kw)

    def spy_weights(old, sampler, *a, **kw):
        seen[-1]["old"], seen[-1]["sampler"] = old.detach().clone(), sampler.clone()
        return weights(old, sampler, *a, **kw)

    monkeypatch.setattr(step_module, "policy_update", spy_update)
    monkeypatch.setattr(step_module, "rollout_importance_weights", spy_weights)
    out = tmp_path / "run"
    engine = CopyEngine(tiny_model) if where.startswith("user") else None
    metrics = train(_config(tiny_model, out), show_progress=False, engine=engine)
    assert [m["rollout/staleness"] for m in metrics] == [0, 1, 1]
    # the weights each step started from: the initial model, then checkpoint-t (saved after t steps)
    starts = [tiny_model] + [out / f"checkpoint-{t}" for t in (1, 2)]
    for t, record in enumerate(seen):
        rollout, mask = record["rollout"], record["rollout"].completion_mask.bool()
        assert torch.equal(record["sampler"], rollout.logprobs)
        under = [_logprobs_under(w, rollout) for w in starts]
        sampler_step = max(t - 1, 0)
        # the sampler's log-probs are those of the weights one step behind, and of no other step's
        for k, lp in enumerate(under):
            gap = (lp[mask] - rollout.logprobs[mask]).abs().max().item()
            assert (gap < 1e-5) == (k == sampler_step), (t, k, gap)
        # pi_old in the ratio is the policy being updated (num_iterations 1)
        assert (record["old"][mask] - under[t][mask]).abs().max() < 1e-5


def _metrics(path):
    return [{k: v for k, v in json.loads(line).items() if not is_volatile(k)}
            for line in path.read_text().splitlines()]


def test_async_resume_matches_the_uninterrupted_run(tmp_path, tiny_model):
    """The checkpoint after step 2 holds step 3's rollout, generated from step 2's weights, which the
    resumed run no longer has; training on it, the resumed run ends bitwise where the uninterrupted one did."""
    full = tmp_path / "full"
    train(_config(tiny_model, full, max_steps=4, save_steps=2), show_progress=False)
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(full / "checkpoint-2", part / "checkpoint-2")
    for name in ("metrics.jsonl", "samples.jsonl", "config.json"):
        shutil.copy(full / name, part / name)
    train(_config(tiny_model, part, max_steps=4, save_steps=2, resume=True), show_progress=False)
    a = load_file(full / "checkpoint-4" / "model.safetensors")
    b = load_file(part / "checkpoint-4" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(full / "metrics.jsonl") == _metrics(part / "metrics.jsonl")
    assert [m["rollout/staleness"] for m in _metrics(part / "metrics.jsonl")] == [0, 1, 1, 1]
    assert (full / "samples.jsonl").read_text() == (part / "samples.jsonl").read_text()


def test_an_in_process_local_engine_is_refused(tmp_path, tiny_model):
    engine = LocalEngine(load_model(tiny_model), "cpu")
    with pytest.raises(ConfigError, match="generation worker process"):
        train(_config(tiny_model, tmp_path / "run"), show_progress=False, engine=engine)


@pytest.mark.parametrize("extra, message", [
    (dict(dynamic_sampling=True), "async_rollout with dynamic_sampling"),
    (dict(rollout_engine="vllm"), "vllm_mode=server"),
])
def test_settings_async_rollout_cannot_run_are_refused(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides=dict(async_rollout=True, output_dir=str(tmp_path), **extra)).validate()
