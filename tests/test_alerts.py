"""Tests for r1kit.report.alerts: each alert fires once on a crafted metrics stream, none on a healthy one."""

from __future__ import annotations

import pytest

from r1kit.core.errors import ConfigError
from r1kit.report.alerts import Alert, AlertMonitor, check_alerts
from r1kit.trainers.grpo.config import GRPOConfig, make_config


def healthy(steps: int = 20) -> list[dict]:
    """A run that learns: entropy falls but stays up, groups keep a spread, accuracy follows format."""
    think = {"eval/think_gain": 0.1, "eval/think_tokens": 20.0}  # the think helps and keeps its length
    rows = [{"step": 0, "eval/pass@1": 0.1, "eval/format_rate": 0.0, **think}]  # the step-0 evaluation line
    for s in range(1, steps + 1):
        rows.append({"step": s, "entropy": 1.5 - 0.05 * s, "frac_reward_zero_std": 0.25,
                     "format_rate": min(1.0, 0.1 + 0.06 * s), "accuracy": 0.02 * s, "template_copy_rate": 0.0,
                     "guess_rate": 0.1, "kl": 0.002 * s, "clip_ratio": 0.01, "rewards/format/timeouts": 0,
                     "rewards/accuracy/timeouts": 1 if s == 7 else 0, **(think if s % 5 == 0 else {})})
    return rows


def with_changes(changes: dict[int, dict], steps: int = 20) -> list[dict]:
    """The healthy run with some metrics replaced from a step on: {from_step: {key: value}}."""
    rows = healthy(steps)
    for start, values in changes.items():
        for row in rows:
            if row["step"] >= start:
                row.update(values)
    return rows


def test_healthy_run_raises_no_alert() -> None:
    assert check_alerts(healthy(), GRPOConfig()) == []


@pytest.mark.parametrize(("changes", "kind", "step", "metric", "value"), [
    # entropy below 0.05 from step 10: the third such step in a row is step 12
    ({10: {"entropy": 0.01}}, "entropy_collapsed", 12, "entropy", 0.01),
    ({5: {"frac_reward_zero_std": 1.0}}, "no_learning_signal", 7, "frac_reward_zero_std", 1.0),
    ({5: {"frac_reward_zero_std": 0.96}}, "no_learning_signal", 7, "frac_reward_zero_std", 0.96),
    # accuracy 0 throughout: format passes 0.5 at step 7 (0.1 + 0.06 * 7 = 0.52), accuracy has been 0 for 7 steps
    ({1: {"accuracy": 0.0}}, "format_without_accuracy", 7, "format_rate", 0.1 + 0.06 * 7),
    ({9: {"template_copy_rate": 0.5}}, "template_copies", 9, "template_copy_rate", 0.5),
    ({6: {"example_copy_rate": 0.3}}, "example_copies", 6, "example_copy_rate", 0.3),
    ({14: {"kl": 3.0}}, "kl_exploding", 14, "kl", 3.0),
    ({4: {"clip_ratio": 0.4}}, "clip_exploding", 4, "clip_ratio", 0.4),
    # 3 timeouts a step from step 11, plus the 1 at step 7: 10 reached at step 13
    ({11: {"rewards/accuracy/timeouts": 3}}, "reward_timeouts:accuracy", 13, "rewards/accuracy/timeouts", 10.0),
    # the think stops paying while it shrinks (20 tokens at step 0, 6 from step 10)
    ({10: {"eval/think_gain": 0.0, "eval/think_tokens": 6.0}}, "think_unused", 10, "eval/think_gain", 0.0),
    ({5: {"guess_rate": 0.75}}, "guessing", 7, "guess_rate", 0.75),
])
def test_each_alert_fires_once_with_its_metric(changes: dict, kind: str, step: int, metric: str, value: float) -> None:
    alerts = check_alerts(with_changes(changes), GRPOConfig())
    assert [(a.kind, a.step, a.metric) for a in alerts] == [(kind, step, metric)]
    assert alerts[0].value == pytest.approx(value)
    line = alerts[0].line()
    assert "\n" not in line and f"step {step}" in line and kind in line


def test_short_dips_do_not_fire() -> None:
    # two low-entropy / all-zero-std steps, then recovery: patience 3 is never reached
    rows = with_changes({6: {"entropy": 0.01, "frac_reward_zero_std": 1.0}, 8: {"entropy": 1.0,
                                                                                 "frac_reward_zero_std": 0.2}})
    assert check_alerts(rows, GRPOConfig()) == []
    assert [a.kind for a in check_alerts(rows, {"alert_patience": 2})] == ["entropy_collapsed", "no_learning_signal"]


def test_format_alert_needs_format_to_rise() -> None:
    # format already at 0.9 at step 1 and flat: accuracy 0, but nothing was learned about the form either
    rows = with_changes({1: {"accuracy": 0.0, "format_rate": 0.9}})
    assert check_alerts(rows, GRPOConfig()) == []


def test_zero_turns_an_alert_off() -> None:
    rows = with_changes({5: {"kl": 3.0, "template_copy_rate": 0.9}})
    assert [a.kind for a in check_alerts(rows, GRPOConfig())] == ["template_copies", "kl_exploding"]
    assert check_alerts(rows, {"alert_kl_max": 0, "alert_template_copy_max": 0}) == []


def test_incremental_updates_return_only_new_alerts() -> None:
    rows = with_changes({3: {"clip_ratio": 0.5}, 10: {"kl": 2.0}})
    monitor = AlertMonitor(GRPOConfig())
    per_step = {row["step"]: monitor.update(row) for row in rows}
    assert {s: [a.kind for a in found] for s, found in per_step.items() if found} == \
        {3: ["clip_exploding"], 10: ["kl_exploding"]}
    assert per_step[3] == [Alert("clip_exploding", 3, "clip_ratio", 0.5, per_step[3][0].message)]


def test_thresholds_come_from_the_config_or_a_config_dict() -> None:
    rows = with_changes({5: {"kl": 0.5}})
    assert check_alerts(rows, GRPOConfig()) == []  # default alert_kl_max 1.0
    assert [a.step for a in check_alerts(rows, GRPOConfig(alert_kl_max=0.4))] == [5]
    assert [a.step for a in check_alerts(rows, {"alert_kl_max": 0.4, "unrelated": 1})] == [5]  # config.json


@pytest.mark.parametrize(("override", "message"), [
    ({"alert_patience": 0}, "alert_patience=0"),
    ({"alert_kl_max": -1.0}, "alert_kl_max=-1.0"),
    ({"alert_timeouts_max": -2}, "alert_timeouts_max=-2"),
])
def test_bad_alert_options_name_the_option(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(None, override)


def constant_reward(completions, answers):
    return [1.0 for _ in completions]


def test_a_training_run_prints_each_alert_once_and_alert_stop_saves_and_stops(tmp_path, tiny_model, capsys) -> None:
    """A reward with no spread gives no learning signal: the loop says so once, after alert_patience steps,
    and with alert_stop ends the run there as a SIGTERM would, with a checkpoint to resume from."""
    import pytest

    from r1kit.core.errors import TrainingStopped
    from r1kit.trainers import checkpoint as ckpt
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import train

    def config(out, **kw):
        return make_config(overrides=dict(model=tiny_model, output_dir=str(out), num_generations=2,
                                          per_device_train_batch_size=4, max_completion_length=4, max_steps=5,
                                          save_steps=0, log_completions_steps=0, torch_threads=1, write_report=False,
                                          reward_funcs=["format"], alert_patience=2, **kw))

    history = train(config(tmp_path / "a"), reward_funcs=[constant_reward], show_progress=False)
    printed = capsys.readouterr().out
    assert len(history) == 5 and printed.count("alert at step 2: no_learning_signal") == 1
    assert "template_copy_rate" in history[0] and history[0]["template_copy_rate"] == 0.0
    with pytest.raises(TrainingStopped, match="stopped by alert no_learning_signal after step 2"):
        train(config(tmp_path / "b", alert_stop=True), reward_funcs=[constant_reward], show_progress=False)
    assert ckpt.latest_checkpoint(tmp_path / "b") == tmp_path / "b" / "checkpoint-2"


def test_a_think_that_does_not_help_but_keeps_its_length_is_no_alert() -> None:
    """think_unused needs both: no gain and a shrinking think (a base model whose think does not help yet
    is where a run starts, not a failure)."""
    assert check_alerts(with_changes({0: {"eval/think_gain": -0.05}}), GRPOConfig()) == []
    assert check_alerts(with_changes({10: {"eval/think_tokens": 4.0}}), GRPOConfig()) == []  # shorter, still useful
