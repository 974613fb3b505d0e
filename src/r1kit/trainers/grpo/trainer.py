"""The GRPO trainer: `train` and `iter_train`, the loop that runs `grpo_step` (trainers/grpo/step.py).

The loop around the step (accelerate, run folder, resume, optimizer and schedule, checkpoints, signals,
the non-finite policy, trackers, progress) is r1kit.trainers.loop's, shared with SFT and reward-model
training. Rollouts come from a rollout engine (r1kit.rollout.engines): anything with
sync_weights(policy, version) and generate(tokenizer, prompts, ...) -> Rollout; `train(config,
engine=...)` takes a user's own. metrics.jsonl (one JSON line per step) is the source of truth;
samples.jsonl keeps every completion with its rewards and advantage; rewards run under a time limit in a
forked worker and a failing sample scores 0 (reward_failures.jsonl, docs/reliability.md).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from r1kit.data.problems import Problem
from r1kit.rewards.worker import close_reward_worker, start_reward_worker
from r1kit.rollout.engines import RolloutEngine
from r1kit.trainers.grpo.config import GRPOConfig
from r1kit.trainers.grpo.metrics import initial_eval, progress_postfix, raise_alerts
from r1kit.trainers.grpo.rollouts import OneStepOff
from r1kit.trainers.grpo.setup import bound_rewards, setup
from r1kit.trainers.grpo.step import grpo_step
from r1kit.trainers.loop import LoopOptions, open_run

RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "reward_failures.jsonl")


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


def train(config: GRPOConfig, examples: list[Problem] | None = None,
          reward_funcs: list[str | Callable] | None = None, show_progress: bool = True,
          engine: RolloutEngine | None = None) -> list[dict]:
    """Run GRPO with `config`; returns the metrics of each step (also written to metrics.jsonl).

    `examples` and `reward_funcs` override the config's dataset and reward names, `engine` the rollout
    engine (for library use). Raises TrainingStopped after SIGINT/SIGTERM (once the step is finished and
    a checkpoint saved) and TrainingError after `max_consecutive_nonfinite` non-finite updates in a row
    or a failed checkpoint.
    """
    return list(iter_train(config, examples, reward_funcs, show_progress, engine))


def iter_train(config: GRPOConfig, examples: list[Problem] | None = None,
               reward_funcs: list[str | Callable] | None = None, show_progress: bool = True,
               engine: RolloutEngine | None = None) -> Iterator[dict]:
    """The loop behind `train`, one step at a time: yields each step's metrics once the step is complete
    (update applied, metrics and samples written, checkpoint saved when due). Benchmarks use it to
    interleave r1kit steps with another trainer's."""
    c = config
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(close_reward_worker)
        if c.reward_timeout > 0:
            # fork the reward worker while this process is small: before accelerate starts threads and
            # before any model is loaded
            start_reward_worker([*bound_rewards(c, reward_funcs), "accuracy", "format"])
        options = LoopOptions.from_config(c, name="GRPO", updates_per_step=c.num_iterations, logs=RUN_LOGS)
        run = cleanup.enter_context(open_run(options, show_progress))
        s = setup(c, run, examples, reward_funcs, engine)
        if c.async_rollout:
            cleanup.callback(s.engine.close)
            s.rollouts = OneStepOff(s)
        if c.eval_steps and run.start_step == 0:
            initial = initial_eval(s)
            s.alerts.update(initial)  # the baseline of alerts that compare with the first evaluation (as on resume)
            yield initial
        for step in run.steps():
            metrics = grpo_step(s, step)
            raise_alerts(s, metrics)
            run.end_step(step + 1, metrics, postfix=progress_postfix(metrics))
            yield metrics
        run.finish()
