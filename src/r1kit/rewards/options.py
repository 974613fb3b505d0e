"""The options of scoring: which rewards, their weights, the time limit and what a failing sample scores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from r1kit.core.errors import ConfigError
from r1kit.core.options import Options, need, opt

FAILURE_POLICIES = ("zero", "abort")


@dataclass
class RewardOptions(Options):
    """rewards"""

    reward_funcs: list[str | Callable] = opt(["format", "accuracy"], "reward functions: registered names "
                                                                     "(r1kit.rewards.REWARDS), dotted paths "
                                                                     "my_pkg.rewards.fn, or path/to/file.py:fn (in "
                                                                     "Python also the functions themselves); r1kit's "
                                                                     "fn(completions, answers) or TRL's "
                                                                     "fn(completions, **kwargs)")
    reward_weights: list[float] | None = opt(None, "one weight per reward function (default 1.0 each)")
    reward_timeout: float = opt(10.0, "seconds one reward call may run, in a forked worker process (0: no limit, "
                                      "rewards run in this process)")
    reward_failure: str = opt("zero", "a reward that raises or times out on a sample: 'zero' (that sample scores 0, "
                                      "counted and logged) or 'abort'")
    reward_failure_steps: int = opt(2, "stop the run when one reward fails on every sample this many steps in a row "
                                       "(a reward that cannot run, e.g. one expecting other arguments, would "
                                       "otherwise train on zeros); 0: never stop")
    language: str = opt("en", "target language of the chain of thought for the language_consistency reward "
                              "(en, zh, ...)")
    special_token: str = opt("|special_token|", "the readable format's separator: TOKEN reasoning TOKEN summary "
                                                "(readable_* rewards)")

    def check(self) -> None:
        from r1kit.rewards.readable import TARGET_LANGUAGES
        from r1kit.rewards.registry import FOREIGN_REWARDS, REWARDS, load_reward_spec

        need(bool(self.reward_funcs), "reward_funcs: give at least one reward function")
        need(self.reward_weights is None or len(self.reward_weights) == len(self.reward_funcs),
             f"reward_weights has {len(self.reward_weights or [])} entries for {len(self.reward_funcs)} reward_funcs")
        need(self.reward_timeout >= 0 and math.isfinite(self.reward_timeout),
             f"reward_timeout={self.reward_timeout}: must be a number of seconds >= 0 (0: no limit)")
        need(self.reward_failure in FAILURE_POLICIES,
             f"reward_failure={self.reward_failure!r}: choose {' or '.join(FAILURE_POLICIES)}")
        need(self.reward_failure_steps >= 0, f"reward_failure_steps={self.reward_failure_steps}: must be >= 0 (0: never "
                                             "stop)")
        need(self.language in TARGET_LANGUAGES,
             f"language={self.language!r}: choose one of {', '.join(TARGET_LANGUAGES)}")
        need(bool(self.special_token.strip()), "special_token must not be blank")
        specs = [r for r in self.reward_funcs if not callable(r)]
        unknown = [r for r in specs if r not in REWARDS and r not in FOREIGN_REWARDS and "." not in r]
        need(not unknown, f"reward_funcs: unknown reward {', '.join(unknown)}; known: {', '.join(sorted(REWARDS))} "
                          f"(or a dotted path my_pkg.module.fn, or path/to/file.py:fn)")
        for spec in specs:  # dotted paths and files: imported now, so a bad one fails before any model loads
            try:
                load_reward_spec(spec)
            except ValueError as e:
                raise ConfigError(f"reward_funcs: {e}") from None
