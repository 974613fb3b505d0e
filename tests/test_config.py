"""Configuration: YAML first, command line on top, unknown keys and bad values rejected by name."""

import pytest

from r1kit.core.errors import ConfigError
from r1kit.trainers.grpo.config import make_config


def test_yaml_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("num_generations: 4\nlearning_rate: 1e-5\nreward_funcs: [format]\nbeta: 0.0\n")
    c = make_config(f, {"learning_rate": 3e-6})
    assert c.num_generations == 4 and c.learning_rate == 3e-6 and c.reward_funcs == ["format"] and c.beta == 0.0
    assert c.epsilon == 0.2 and c.epsilon_high == 0.2  # paper defaults stand where not given


def test_paper_defaults():
    c = make_config()
    assert (c.beta, c.epsilon, c.loss_type, c.scale_rewards, c.num_iterations) == (0.001, 0.2, "grpo", True, 1)


@pytest.mark.parametrize("yaml_text,message", [
    ("num_generation: 4\n", "c.yaml: unknown option 'num_generation' (did you mean num_generations?)"),
    ("num_generations: four\n", "option 'num_generations' expects an integer"),
    ("use_lora: maybe\n", "option 'use_lora' expects true or false"),
    ("learning_rate: fast\n", "option 'learning_rate' expects a number"),
    ("num_generations: 1\n", "num_generations=1: GRPO needs at least 2"),
    ("num_generations: 3\nper_device_train_batch_size: 4\n", "does not divide into groups of num_generations=3"),
    ("reward_funcs: [format, nope]\n", "unknown reward nope"),
    ("loss_type: ppo\n", "loss_type='ppo'"),
    ("- a\n- b\n", "expected a mapping"),
    ("a: [1\n", "c.yaml:2: invalid YAML"),
])
def test_bad_config_names_the_option(tmp_path, yaml_text, message):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        make_config(f)
    assert message in str(err.value)


def test_unknown_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="command line: unknown option 'bogus'"):
        make_config(overrides={"bogus": 1})
    with pytest.raises(ConfigError, match="not found"):
        make_config(tmp_path / "nope.yaml")
