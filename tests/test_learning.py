"""GRPO must actually learn: on a toy task, mean reward rises from low to high within a bounded number of
steps. A flipped sign in the loss or a zero gradient leaves reward at chance and fails this test."""

import random

from r1kit.config import make_config
from r1kit.data import Example
from r1kit.trainer import train


def copy_reward(completions: list[str], answers: list[str]) -> list[float]:
    """1 if the completion starts by repeating the prompt's digit."""
    return [1.0 if c[:1] == a else 0.0 for c, a in zip(completions, answers)]


def test_reward_rises_on_a_toy_task(digit_model, tmp_path):
    rng = random.Random(0)
    examples = [Example(question=d, answer=d, id=str(i)) for i, d in enumerate(rng.choice("0123456789") for _ in range(200))]
    config = make_config(overrides=dict(
        model=digit_model, template="plain", prefill="", stop_strings=[], num_generations=8,
        per_device_train_batch_size=64, max_completion_length=2, learning_rate=3e-3, beta=0.0,
        max_steps=50, save_steps=0, log_completions_steps=0, output_dir=str(tmp_path / "run"), seed=0))
    history = train(config, examples=examples, reward_funcs=[copy_reward], show_progress=False)
    rewards = [m["reward"] for m in history]
    first, last = sum(rewards[:3]) / 3, sum(rewards[-5:]) / 5
    assert first < 0.3, rewards
    assert last > 0.75, rewards
