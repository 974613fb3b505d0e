"""The GRPO step: prompts -> rollout -> rewards -> advantages -> policy update -> metrics and records.

The loop around it (accelerate, run folder, resume, optimizer and schedule, checkpoints, signals, the
non-finite policy, trackers, progress) is r1kit.trainers.loop's, shared with SFT and reward-model training.
`grpo_step` below reads top to bottom as the algorithm does; each stage is a named function.

Design decisions:
- Data-parallel with `accelerate launch --num_processes N`: each process owns whole groups (its prompts
  and their G completions), so advantages need no communication; the loss is normalised by whole-batch
  counts (all processes, all micro-batches), so the update equals the single-process update on the same
  global batch.
- Prompt order and sampling noise are pure functions of (seed, step, rank): a resumed run draws exactly
  what the uninterrupted run would have drawn.
- pi_old: with num_iterations == 1 the policy that sampled is the policy being updated, so
  pi_old = pi_theta.detach() exactly (ratio 1, no extra forward). With num_iterations > 1, pi_old is
  recomputed once, before the first update, and kept fixed for all mu updates.
- The reference model is a frozen copy of the initial policy, or with LoRA the base with the adapter
  switched off; with beta == 0 it is never loaded or run.
- Rollouts come from a rollout engine (r1kit.rollout.engines): anything with sync_weights(policy, version) and
  generate(tokenizer, prompts, ...) -> Rollout; `train(config, engine=...)` takes a user's own.
- metrics.jsonl (one JSON line per step) is the source of truth; samples.jsonl keeps every completion
  with its rewards and advantage.
- Rewards run under a time limit in a forked worker and a failing sample scores 0
  (reward_failures.jsonl), see docs/reliability.md.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from r1kit.data.problems import Example
from r1kit.models.loading import load_model, load_policy, load_tokenizer, resolve_dtype  # noqa: F401 (resolve_dtype: public here too)
from r1kit.rewards.worker import close_reward_worker, start_reward_worker
from r1kit.rollout.engines import RolloutEngine
from r1kit.trainers.grpo.config import GRPOConfig
from r1kit.trainers.grpo.metrics import initial_eval, progress_postfix, raise_alerts
from r1kit.trainers.grpo.setup import bound_rewards, setup
from r1kit.trainers.grpo.step import grpo_step
from r1kit.trainers.loop import LoopOptions, open_run

RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "reward_failures.jsonl")










# --------------------------------------------------------------------------
# Set-up: what every step reads
# --------------------------------------------------------------------------










# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


def train(config: GRPOConfig, examples: list[Example] | None = None,
          reward_funcs: list[str | Callable] | None = None, show_progress: bool = True,
          engine: RolloutEngine | None = None) -> list[dict]:
    """Run GRPO with `config`; returns the metrics of each step (also written to metrics.jsonl).

    `examples` and `reward_funcs` override the config's dataset and reward names, `engine` the rollout
    engine (for library use). Raises TrainingStopped after SIGINT/SIGTERM (once the step is finished and
    a checkpoint saved) and TrainingError after `max_consecutive_nonfinite` non-finite updates in a row
    or a failed checkpoint.
    """
    return list(iter_train(config, examples, reward_funcs, show_progress, engine))


def iter_train(config: GRPOConfig, examples: list[Example] | None = None,
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
        if c.eval_steps and run.start_step == 0:
            yield initial_eval(s)
        for step in run.steps():
            metrics = grpo_step(s, step)
            raise_alerts(s, metrics)
            run.end_step(step + 1, metrics, postfix=progress_postfix(metrics))
            yield metrics
        run.finish()






# --------------------------------------------------------------------------
# The stages of a step
# --------------------------------------------------------------------------




































# --------------------------------------------------------------------------
# Rewards of a batch
# --------------------------------------------------------------------------










