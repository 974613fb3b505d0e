"""One-step-off-policy rollouts (async_rollout): while the policy trains on step t's completions, a second
process generates step t+1's with the weights step t started from.

    step t:  take rollout t (generated with the weights of step t-1)
             push the weights of step t to the engine; start rollout t+1     -> generated during ...
             rewards, advantages, update of step t                          <- ... this
The lag is exactly one step (zero at the first step, which has nothing generated ahead), logged as
`rollout/staleness`. The loss needs nothing new: with num_iterations 1, pi_old is the policy at the
update (pi_theta detached) and the samples come from the previous step's weights, whose log-probs the
sampler returned with them; importance_sampling_cap re-weights each token by min(pi_old / pi_sampler, C)
(algorithms.corrections), and `rollout_logprob_gap` measures the gap. The prompts and the sampling seed of
a step are pure functions of the step (select_prompts, rollout_request), so a rollout can be started a
step early and still draw what the step would have drawn.

Exact resume: a checkpoint after step t is saved once rollout t+1 is complete, and holds it (the weights
it came from are gone by then); a run resumed from it trains on that rollout, as the uninterrupted run
did. A checkpoint without one (written with async_rollout off) starts with a rollout of its own weights.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from r1kit.data.problems import Problem
from r1kit.rollout.sampling import Rollout
from r1kit.trainers.grpo.setup import GRPOSetup
from r1kit.trainers.grpo.step import rollout_request, select_prompts

STATE_KEY = "async_rollout"  # in training_state.pt: the rollout generated ahead, one entry per process


@dataclass
class Ahead:
    step: int  # the step it is for
    version: int  # the step whose starting weights generated it
    rollout: Rollout


class OneStepOff:
    """The rollout source of async_rollout; `take(step, batch)` is called once per step, in order."""

    def __init__(self, s: GRPOSetup) -> None:
        self.s = s
        self.in_flight: tuple[int, int] | None = None  # (step, version) being generated
        self.ahead: Ahead | None = None  # complete, not yet taken
        saved = s.run.saved_process_state(STATE_KEY)
        if saved is not None and saved["step"] == s.run.start_step:
            self.ahead = Ahead(saved["step"], saved["version"], Rollout(**saved["rollout"]))
        self.staleness = 0
        self.pushed: int | None = None  # the step whose weights the engine holds
        s.run.process_state[STATE_KEY] = self.checkpoint_state

    def take(self, step: int, batch: list[Problem]) -> Rollout:
        """Step `step`'s rollout (`batch` are its prompts); starts the next step's."""
        s = self.s
        self._collect()
        if self.ahead is None or self.ahead.step != step:  # nothing was generated ahead for this step
            prompts, kw = rollout_request(s, batch, step)
            self._push(step)
            self.ahead = Ahead(step, step, s.engine.generate(s.tokenizer, prompts, **kw))
        ahead, self.ahead = self.ahead, None
        if step + 1 < s.run.o.max_steps:
            self._push(step)  # the weights this step starts from
            prompts, kw = rollout_request(s, select_prompts(s, step + 1), step + 1)
            s.engine.submit(s.tokenizer, prompts, **kw)
            self.in_flight = (step + 1, step)
        self.staleness = step - ahead.version
        return ahead.rollout

    def _push(self, step: int) -> None:
        if self.pushed != step:
            self.s.engine.sync_weights(self.s.policy, step)
            self.pushed = step

    def _collect(self) -> None:
        if self.in_flight is not None:
            (step, version), self.in_flight = self.in_flight, None
            self.ahead = Ahead(step, version, self.s.engine.result())

    def metrics(self) -> dict:
        return {"rollout/staleness": self.staleness}

    def checkpoint_state(self) -> dict | None:
        """The rollout generated ahead (waited for), for the checkpoint being written."""
        self._collect()
        if self.ahead is None:
            return None
        rollout = self.ahead.rollout.to("cpu")
        return {"step": self.ahead.step, "version": self.ahead.version,
                "rollout": {f.name: getattr(rollout, f.name) for f in fields(rollout)}}
