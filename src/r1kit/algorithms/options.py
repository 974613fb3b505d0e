"""The options of the GRPO family's math: the loss and its variants, advantages, corrections and shaping
(docs/algorithms.md; TRL's names where TRL has the option). Defaults are the R1 paper's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1kit.algorithms.corrections import AUTO_IMPORTANCE_SAMPLING_CAP
from r1kit.core.errors import ConfigError
from r1kit.core.options import Options, need, need_choice, opt


@dataclass
class AlgorithmOptions(Options):
    """loss, advantages and corrections (the GRPO family)"""

    beta: float = opt(0.001, "KL coefficient to the reference model (paper: 0.001); 0 skips the reference")
    epsilon: float = opt(0.2, "clip range: ratio is clipped to [1-epsilon, 1+epsilon_high]")
    epsilon_high: float | None = opt(None, "upper clip range (DAPO clip-higher); default: epsilon")
    loss_type: str = opt("grpo", "'grpo' (per-output token mean, the paper), 'dapo' (token-level), 'dr_grpo', "
                                 "'bnpo', 'cispo' (epsilon_high is its cap, e.g. 5.0), 'sapo', or a loss registered "
                                 "with r1kit.grpo.register_loss (docs/algorithms.md)")
    scale_rewards: bool | str = opt(True, "divide advantages by the std of each group ('group' or true: the paper), "
                                          "of the whole batch ('batch'), or not at all ('none' or false: Dr. GRPO)")
    num_iterations: int = opt(1, "mu: policy updates per batch of rollouts, pi_old fixed at sampling")
    advantage_estimator: str = opt("grpo", "'grpo' (group mean baseline), 'rloo' (leave-one-out baseline), "
                                           "'reinforce_plus_plus' (batch baseline, batch whitening), or one registered "
                                           "with r1kit.grpo.register_advantage_estimator")
    importance_sampling_level: str = opt("token", "'token': one ratio per token (the default); 'sequence': GSPO, one "
                                                  "ratio per output, exp of the mean token log-ratio (GSPO uses "
                                                  "epsilon 3e-4, epsilon_high 4e-4)")
    sapo_temperature_pos: float = opt(1.0, "loss_type=sapo: gate temperature for tokens with positive advantage")
    sapo_temperature_neg: float = opt(1.05, "loss_type=sapo: gate temperature for tokens with non-positive advantage")
    top_entropy_quantile: float = opt(1.0, "train the policy term only on this top fraction of tokens by entropy "
                                           "(the 80/20 paper: 0.2); 1.0 keeps every token")
    entropy_coef: float = opt(0.0, "entropy bonus: subtract entropy_coef x the token's entropy from the loss (0: off)")
    importance_sampling_cap: float | None = opt(None, "correction for a rollout engine whose weights differ from the "
                                                      "policy's (rollout_dtype=bfloat16, vllm): C > 0 weights each "
                                                      "token's loss by min(pi_old / pi_rollout, C) (see "
                                                      "importance_sampling_mode); 0: off; unset: "
                                                      f"{AUTO_IMPORTANCE_SAMPLING_CAP:g} when the engine's weights "
                                                      "differ from the policy's, else off (TRL's default)")
    importance_sampling_mode: str = opt("token_truncate", "with importance_sampling_cap C > 0: token_truncate (TIS, "
                                                          "min(w, C) per token), token_mask (IcePop: w outside "
                                                          "[1/C, C] set to 0), sequence_truncate, sequence_mask (one "
                                                          "w per completion)")
    logprob_chunk_tokens: int = opt(1024, "rows x positions sent through the LM head at a time when computing "
                                          "log-probs: the full-vocabulary logits are never held for more (with a "
                                          "gradient, each chunk's logits are recomputed in the backward); 0: all at "
                                          "once")
    mask_truncated_completions: bool = opt(False, "no loss on completions cut at max_completion_length (DAPO)")
    overlong_buffer_length: int = opt(0, "soft_overlong reward (DAPO): completions longer than max_completion_length "
                                         "minus this many tokens are penalised linearly, down to "
                                         "-overlong_penalty_factor at the limit (0: off)")
    overlong_penalty_factor: float = opt(1.0, "largest soft_overlong penalty, added to the reward")

    def __post_init__(self) -> None:
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon

    def check(self) -> None:
        from r1kit.algorithms.advantages import ADVANTAGE_ESTIMATORS, scale_mode
        from r1kit.algorithms.corrections import IMPORTANCE_SAMPLING_MODES
        from r1kit.algorithms.losses import IMPORTANCE_SAMPLING_LEVELS, LOSS_TYPES

        need(self.beta >= 0, f"beta={self.beta}: must be >= 0")
        need(0 < self.epsilon < 1, f"epsilon={self.epsilon}: must be in (0, 1)")
        need(self.epsilon_high > 0, f"epsilon_high={self.epsilon_high}: must be > 0")
        need_choice("loss_type", self.loss_type, LOSS_TYPES)
        need(self.loss_type != "cispo" or self.epsilon_high > 1,
             f"epsilon_high={self.epsilon_high}: loss_type=cispo reads epsilon_high as the cap on the importance "
             "weight; set it above 1 (TRL suggests 5.0)")
        try:
            scale_mode(self.scale_rewards)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        need(self.num_iterations >= 1, "num_iterations must be >= 1")
        need(self.advantage_estimator in ADVANTAGE_ESTIMATORS,
             f"advantage_estimator={self.advantage_estimator!r}: choose one of {', '.join(ADVANTAGE_ESTIMATORS)}")
        need(self.importance_sampling_level in IMPORTANCE_SAMPLING_LEVELS,
             f"importance_sampling_level={self.importance_sampling_level!r}: choose token or sequence")
        need(self.sapo_temperature_pos > 0, f"sapo_temperature_pos={self.sapo_temperature_pos}: must be > 0")
        need(self.sapo_temperature_neg > 0, f"sapo_temperature_neg={self.sapo_temperature_neg}: must be > 0")
        need(0 < self.top_entropy_quantile <= 1, f"top_entropy_quantile={self.top_entropy_quantile}: must be in (0, 1]")
        need(self.entropy_coef >= 0 and math.isfinite(self.entropy_coef),
             f"entropy_coef={self.entropy_coef}: must be a finite number >= 0")
        cap = AUTO_IMPORTANCE_SAMPLING_CAP if self.importance_sampling_cap is None else self.importance_sampling_cap
        need(cap >= 0 and math.isfinite(cap), f"importance_sampling_cap={cap}: must be a finite number >= 0 (0: off)")
        need(self.importance_sampling_mode in IMPORTANCE_SAMPLING_MODES,
             f"importance_sampling_mode={self.importance_sampling_mode!r}: choose one of "
             f"{', '.join(IMPORTANCE_SAMPLING_MODES)}")
        need(cap == 0 or not self.importance_sampling_mode.endswith("mask") or cap > 1,
             f"importance_sampling_cap={cap}: importance_sampling_mode="
             f"{self.importance_sampling_mode} keeps weights in [1/C, C], so C must be > 1")
        need(self.logprob_chunk_tokens >= 0, f"logprob_chunk_tokens={self.logprob_chunk_tokens}: must be >= 0 (0: no chunks)")
        need(self.overlong_penalty_factor >= 0, f"overlong_penalty_factor={self.overlong_penalty_factor}: must be >= 0")
