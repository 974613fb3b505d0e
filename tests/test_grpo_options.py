"""The GRPO-family options reach the training step: each option's value arrives in the loss call, the advantage
estimators, the overlong penalty and the truncation mask act on the real batch (checked against formulas written
here), and DAPO's dynamic sampling keeps zero-spread groups out of the loss while every step keeps its full batch."""

import json
from pathlib import Path

import pytest
import torch

from r1kit.data.problems import Example
from r1kit.trainers.grpo import step, trainer
from r1kit.trainers.grpo.config import make_config

G = 4


def _config(model: str, out: Path, **kw):
    return make_config(overrides={**dict(model=model, output_dir=str(out), num_generations=G, per_device_train_batch_size=8,
                                         max_completion_length=6, learning_rate=1e-3, beta=0.0, save_steps=0,
                                         log_completions_steps=0, torch_threads=1, write_report=False, seed=5,
                                         max_steps=2), **kw})


def _examples(n: int = 16) -> list[Example]:
    return [Example(question=f"{i}+{i}=", answer=("const" if i % 2 else str(2 * i)), id=str(i)) for i in range(n)]


def length_reward(completions, answers):
    """Constant 1.0 on prompts whose answer is 'const'; the completion's length mod 3 elsewhere."""
    return [1.0 if a == "const" else float(len(c) % 3) for c, a in zip(completions, answers)]


def constant_reward(completions, answers):
    return [1.0 for _ in completions]


def _samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def _record_loss_calls(monkeypatch) -> list[dict]:
    calls = []
    real = step.grpo_loss

    def recording(*args, **kwargs):
        calls.append({"advantages": args[3].detach().clone(), "mask": args[4].clone(), **kwargs})
        return real(*args, **kwargs)

    monkeypatch.setattr(step, "grpo_loss", recording)
    return calls


@pytest.mark.parametrize("option", [
    dict(loss_type="cispo", epsilon_high=5.0), dict(loss_type="sapo", sapo_temperature_pos=0.5),
    dict(loss_type="bnpo"), dict(importance_sampling_level="sequence", epsilon=3e-4, epsilon_high=4e-4),
    dict(top_entropy_quantile=0.5), dict(entropy_coef=0.01),
])
def test_each_loss_option_reaches_the_loss_call(tmp_path, tiny_model, monkeypatch, option):
    calls = _record_loss_calls(monkeypatch)
    history = trainer.train(_config(tiny_model, tmp_path / "run", **option), examples=_examples(),
                            reward_funcs=[length_reward], show_progress=False)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(m["loss"])) for m in history)
    for key, value in option.items():
        assert all(call[key] == value for call in calls), key
    if "top_entropy_quantile" in option:  # one batch-wide threshold, the same for every micro-batch of a step
        assert all(call["entropy_threshold"] is not None and call["entropy"] is not None for call in calls)
    if "entropy_coef" in option:
        assert all(call["entropy"].requires_grad for call in calls)


def test_rloo_advantages_in_the_step_are_leave_one_out(tmp_path, tiny_model, monkeypatch):
    calls = _record_loss_calls(monkeypatch)
    out = tmp_path / "run"
    trainer.train(_config(tiny_model, out, advantage_estimator="rloo", max_steps=1), examples=_examples(),
                  reward_funcs=[length_reward], show_progress=False)
    rewards = [r["reward"] for r in _samples(out)]
    for i, r in enumerate(rewards):  # A_i = r_i - mean of the other G-1 rewards of its group
        group = rewards[i // G * G:(i // G + 1) * G]
        expected = r - (sum(group) - r) / (G - 1)
        assert calls[0]["advantages"][i].item() == pytest.approx(expected, abs=1e-6)


def test_soft_overlong_penalty_and_truncation_mask_act_on_the_batch(tmp_path, tiny_model, monkeypatch):
    calls = _record_loss_calls(monkeypatch)
    out = tmp_path / "run"
    trainer.train(_config(tiny_model, out, overlong_buffer_length=8, overlong_penalty_factor=0.5,
                          mask_truncated_completions=True, stop_strings=[], max_steps=1, max_completion_length=24),
                  examples=_examples(), reward_funcs=[length_reward], show_progress=False)
    samples = _samples(out)
    for r in samples:  # DAPO: 0 up to L_max - L_b, then linear down to -1 at L_max; times the factor
        L = r["length"]
        expected = 0.0 if L <= 16 else 0.5 * (16 - L) / 8
        assert r["rewards"]["soft_overlong"] == pytest.approx(expected)
        assert r["reward"] == pytest.approx(r["rewards"]["length_reward"] + expected)
    truncated = torch.tensor([r["truncated"] for r in samples])
    assert truncated.any() and not truncated.all()
    mask = calls[0]["mask"]
    assert (mask[truncated].sum() == 0) and (mask[~truncated].sum(dim=1) > 0).all()


def test_dynamic_sampling_keeps_zero_spread_groups_out_and_the_batch_full(tmp_path, tiny_model, monkeypatch):
    calls = _record_loss_calls(monkeypatch)
    out = tmp_path / "run"
    history = trainer.train(_config(tiny_model, out, dynamic_sampling=True, max_resample_rounds=8, max_steps=3),
                            examples=_examples(), reward_funcs=[length_reward], show_progress=False)
    samples = _samples(out)
    assert [sum(r["step"] == s for r in samples) for s in (1, 2, 3)] == [8, 8, 8]  # the full batch every step
    assert all(r["answer"] != "const" for r in samples)  # the constant-reward groups never reached the loss
    assert all(call["advantages"].numel() == 8 for call in calls)
    for m in history:
        assert m["dynamic_sampling/groups_dropped"] >= 1 and m["dynamic_sampling/filled_groups"] == 0
        assert m["dynamic_sampling/prompts_drawn"] == 2 * m["dynamic_sampling/rounds"]
        assert m["frac_reward_zero_std"] == 0.0


def test_dynamic_sampling_stops_at_the_limit_and_says_so(tmp_path, tiny_model, capsys):
    out = tmp_path / "run"
    history = trainer.train(_config(tiny_model, out, dynamic_sampling=True, max_resample_rounds=2, max_steps=1),
                            examples=_examples(), reward_funcs=[constant_reward], show_progress=False)
    m = history[0]
    assert m["dynamic_sampling/rounds"] == 3 and m["dynamic_sampling/filled_groups"] == 2
    assert "dynamic_sampling: 2 of 2 groups have no reward spread after 2 extra rounds" in capsys.readouterr().out
    assert sum(1 for _ in _samples(out)) == 8
