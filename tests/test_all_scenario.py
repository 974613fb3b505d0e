"""All-scenario RL (R1 stage 4) and the trainer's reward options: general prompts are scored by reward models,
helpfulness on the summary only and harmlessness on the whole response; reasoning prompts by rules; options
such as the target language reach the rewards."""

import json
import math

import pytest

from r1kit.core.errors import ConfigError
from r1kit.data.problems import Example
from r1kit.data.sources import general_examples
from r1kit.rewards.readable import to_readable
from r1kit.rewards.registry import bind_reward_options
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.scoring import general_prompts_per_step, score_batch
from r1kit.trainers.grpo.trainer import train


class LengthJudge:
    """A stand-in reward model whose score is the length of the text it is shown."""

    def __init__(self):
        self.seen: list[tuple[str, str]] = []

    def score(self, prompts, responses):
        self.seen += list(zip(prompts, responses))
        return [float(len(r)) for r in responses]


def test_general_rows_scored_by_reward_models_reasoning_rows_by_rules():
    c = make_config(overrides=dict(reward_model="rm", reward_funcs=["readable_accuracy", "language_consistency"],
                                   reward_weights=[1.0, 0.5], helpfulness_weight=1.0, harmlessness_weight=0.1))
    rewards = bind_reward_options(c.reward_funcs, language=c.language, special_token=c.special_token)
    helpful, harmless = LengthJudge(), LengthJudge()
    good = to_readable("I add 2 and 3 to get 5.", "The answer is 5.")
    general = to_readable("be kind", "Hello Bob, nice to meet you.")
    texts = [good, "no idea", general, general + " extra"]
    kinds = ["reasoning", "reasoning", "general", "general"]
    totals, per_fn, failures = score_batch(c, rewards, texts, ["5", "5", "", ""], kinds,
                                           ["What is 2 + 3?"] * 2 + ["Say hi to Bob"] * 2,
                                           {"helpfulness": helpful, "harmlessness": harmless})
    assert failures == []
    # rule rewards on reasoning rows only; NaN marks the rows a reward does not apply to
    assert per_fn["readable_accuracy"][:2] == [1.0, 0.0] and all(math.isnan(x) for x in per_fn["readable_accuracy"][2:])
    assert all(math.isnan(x) for x in per_fn["helpfulness"][:2])
    # helpfulness sees the summary only, harmlessness the whole response
    summary = "Hello Bob, nice to meet you."
    assert [r for _, r in helpful.seen] == [summary, summary + " extra"]
    assert [r for _, r in harmless.seen] == [general, general + " extra"]
    assert [p for p, _ in helpful.seen] == ["Say hi to Bob"] * 2
    assert totals[2] == pytest.approx(len(summary) + 0.1 * len(general))
    assert totals[0] == pytest.approx(1.0 + 0.5 * 1.0)  # correct, all-English chain of thought


def test_target_language_option_reaches_the_reward():
    zh = to_readable("我们把二和三相加得到五", "The answer is 5.")
    for language, expected in (("zh", 1.0), ("en", 0.0)):
        c = make_config(overrides=dict(reward_funcs=["language_consistency"], language=language))
        rewards = bind_reward_options(c.reward_funcs, language=c.language, special_token=c.special_token)
        _, per_fn, _ = score_batch(c, rewards, [zh], ["5"], ["reasoning"], ["q"], {})
        assert per_fn["language_consistency"] == [expected]
    with pytest.raises(ConfigError, match="language='xx'"):
        make_config(overrides=dict(language="xx"))


@pytest.mark.parametrize("prompts, fraction, expected", [(2, 0.5, 1), (4, 0.5, 2), (4, 0.25, 1), (8, 0.1, 1),
                                                         (3, 0.9, 2), (1, 0.5, 1)])
def test_general_prompts_per_step(prompts, fraction, expected):
    assert general_prompts_per_step(prompts, fraction) == expected


def test_bad_all_scenario_options(tmp_path):
    with pytest.raises(ConfigError, match="general_dataset needs reward_model"):
        make_config(overrides=dict(general_dataset="g.jsonl"))
    with pytest.raises(ConfigError, match="at least 2 prompts per step"):
        make_config(overrides=dict(general_dataset="g.jsonl", reward_model="rm", num_generations=8,
                                   per_device_train_batch_size=8))
    bad = tmp_path / "g.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"text": "no prompt"}\n')
    from r1kit.core.errors import DataError

    with pytest.raises(DataError, match=r"g.jsonl:2: missing field 'prompt'"):
        general_examples(bad)


def test_mixed_batches_train_with_a_reward_model(tiny_model, tmp_path):
    """Each step mixes both kinds in the configured share; the reward model's scores drive general groups."""
    from r1kit.data.preferences import toy_preferences
    from r1kit.trainers.reward_model import make_rm_config, train_reward_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in toy_preferences(64, seed=0)))
    rm = make_rm_config(overrides=dict(model=tiny_model, dataset=str(pairs), output_dir=str(tmp_path / "rm"),
                                       learning_rate=1e-3, per_device_train_batch_size=16, torch_threads=1))
    train_reward_model(rm, show_progress=False)
    reasoning = [Example(f"What is {i} + 1?", str(i + 1), f"r{i}") for i in range(8)]
    general = [Example(r["prompt"], "", f"g{i}", kind="general") for i, r in enumerate(toy_preferences(8, seed=1))]
    c = make_config(overrides=dict(model=tiny_model, template="plain", stop_strings=[], num_generations=2,
                                   per_device_train_batch_size=8, max_completion_length=8, max_steps=2, beta=0.0,
                                   reward_funcs=["readable_accuracy"], reward_model=str(tmp_path / "rm" / "model"),
                                   general_fraction=0.25, save_steps=0, log_completions_steps=0, reward_timeout=0,
                                   write_report=False, torch_threads=1, output_dir=str(tmp_path / "run")))
    history = train(c, examples=reasoning + general, show_progress=False)
    assert len(history) == 2 and all("rewards/helpfulness" in m for m in history)
    samples = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    for step in (1, 2):
        rows = [s for s in samples if s["step"] == step]
        assert sum(s.get("kind") == "general" for s in rows) == 2  # 1 of 4 prompts x G=2
        assert all(("helpfulness" in s["rewards"]) == (s.get("kind") == "general") for s in rows)
