"""Alerts when a GRPO run goes wrong: pure functions over the stream of per-step metrics (metrics.jsonl).

Each kind of alert fires at most once per run, with the metric and the value that triggered it and a
one-line message. The loop calls ``AlertMonitor.update`` once per step with the step's metrics and
prints what comes back; the report calls ``check_alerts`` on the whole history, so both see the same
alerts at the same steps.

Design decisions:

* Thresholds are ``AlertOptions`` (report/options.py); any object with
  those attributes, or a plain dict such as a run's ``config.json``, will do, and a missing option takes
  the ``AlertOptions`` default. A threshold of 0 turns its alert off.
* Conditions that a single noisy step could meet (entropy, zero-std groups, format without accuracy)
  must hold for ``alert_patience`` logged steps in a row; a KL or clip fraction over its limit is
  reported at once, because one such step is already an update far from the sampling policy.
* A process reward model used as a reward is hacked when the policy learns what the PRM pays for rather
  than the task: the PRM's score (``rewards/prm``) and held-out accuracy (``eval/pass@1``) part ways.
  The PRM score is smoothed over ``alert_patience`` steps (one step's 16 completions are noisy) and
  compared with its first ``alert_patience`` steps; accuracy is compared with the first evaluation.
* Reward timeouts are counted over the whole run, per reward: a timed-out sample scores 0, so a reward
  that keeps timing out quietly trains on zeros.
* Rows without the training metrics (the step-0 evaluation line) are skipped, and a metric a row lacks
  (no ``template_copy_rate`` in an old run) never fires; so old metrics.jsonl files can be checked too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from r1kit.report.options import AlertOptions


@dataclass(frozen=True)
class Alert:
    """One alert: which kind, at which step, the metric and its value that triggered it, and why."""

    kind: str
    step: int
    metric: str
    value: float
    message: str

    def line(self) -> str:
        """The one line the loop prints."""
        return f"r1kit: alert at step {self.step}: {self.kind}: {self.message}"


def alert_thresholds(config: Any = None) -> AlertOptions:
    """The alert options of ``config`` (AlertOptions, any object with alert_* attributes, or a dict such as a
    run's config.json); options it lacks take AlertOptions' defaults, the one table of them."""
    return config if isinstance(config, AlertOptions) else AlertOptions.from_config(config or {})


def _number(metrics: dict, key: str) -> float | None:
    value = metrics.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class AlertMonitor:
    """Alerts over a run's metrics, one step at a time: ``update(metrics)`` returns the new alerts only.

    Feed it the metrics dict of each step in order (as the loop writes them to metrics.jsonl); it keeps
    the streaks and counts it needs, so each call is O(1).
    """

    config: Any = None
    thresholds: AlertOptions = field(init=False)
    fired: set[str] = field(default_factory=set, init=False)
    _streaks: dict[str, int] = field(default_factory=dict, init=False)
    _timeouts: dict[str, int] = field(default_factory=dict, init=False)
    _first_format: float | None = field(default=None, init=False)
    _prm_scores: list[float] = field(default_factory=list, init=False)  # rewards/prm of every step so far
    _first_pass: float | None = field(default=None, init=False)
    _first_think: float | None = field(default=None, init=False)  # think length at the first evaluation

    def __post_init__(self) -> None:
        self.thresholds = alert_thresholds(self.config)

    def _streak(self, name: str, condition: bool) -> int:
        """Logged steps in a row on which `condition` held, this one included."""
        self._streaks[name] = self._streaks.get(name, 0) + 1 if condition else 0
        return self._streaks[name]

    def _fire(self, found: list[Alert], kind: str, step: int, metric: str, value: float, message: str) -> None:
        if kind not in self.fired:
            self.fired.add(kind)
            found.append(Alert(kind, step, metric, value, message))

    def update(self, metrics: dict) -> list[Alert]:
        """The alerts that this step's metrics raise for the first time (empty for most steps)."""
        t = self.thresholds
        step = int(metrics.get("step", 0))
        found: list[Alert] = []
        patience = max(1, int(t.alert_patience))

        entropy = _number(metrics, "entropy")
        if entropy is not None and t.alert_entropy_min > 0 and \
                self._streak("entropy", entropy < t.alert_entropy_min) >= patience:
            self._fire(found, "entropy_collapsed", step, "entropy", entropy,
                       f"entropy {entropy:.3g} nats/token < {t.alert_entropy_min:g} for {patience} steps: the policy "
                       f"samples almost one completion per prompt and stops exploring")

        zero_std = _number(metrics, "frac_reward_zero_std")
        if zero_std is not None and t.alert_zero_std_max > 0 and \
                self._streak("zero_std", zero_std >= t.alert_zero_std_max) >= patience:
            self._fire(found, "no_learning_signal", step, "frac_reward_zero_std", zero_std,
                       f"{zero_std:.0%} of groups have zero reward spread for {patience} steps: no advantage, "
                       f"no learning signal")

        fmt, acc = _number(metrics, "format_rate"), _number(metrics, "accuracy")
        if fmt is not None and acc is not None:
            if self._first_format is None:
                self._first_format = fmt
            rising = t.alert_format_rate > 0 and fmt >= t.alert_format_rate and fmt > self._first_format
            if self._streak("format_no_accuracy", acc == 0.0) >= patience and rising:
                self._fire(found, "format_without_accuracy", step, "format_rate", fmt,
                           f"format rate rose to {fmt:.2f} (from {self._first_format:.2f}) while accuracy stayed 0 "
                           f"for {patience} steps: the rewards pay for the form, not the task")

        for kind, key, what in (("template_copies", "template_copy_rate", "the template's example text"),
                                ("example_copies", "example_copy_rate", "the think of a worked example in the prompt")):
            copies = _number(metrics, key)
            if copies is not None and t.alert_template_copy_max > 0 and copies > t.alert_template_copy_max:
                self._fire(found, kind, step, key, copies,
                           f"{copies:.0%} of completions copy {what} (> {t.alert_template_copy_max:g})")

        kl = _number(metrics, "kl")
        if kl is not None and t.alert_kl_max > 0 and kl > t.alert_kl_max:
            self._fire(found, "kl_exploding", step, "kl", kl,
                       f"KL to the reference {kl:.3g} > {t.alert_kl_max:g} per token: the policy has moved far; "
                       f"lower the learning rate or raise beta")

        clip = _number(metrics, "clip_ratio")
        if clip is not None and t.alert_clip_max > 0 and clip > t.alert_clip_max:
            self._fire(found, "clip_exploding", step, "clip_ratio", clip,
                       f"{clip:.0%} of tokens clipped (> {t.alert_clip_max:g}): updates leave the trust region")

        self._check_prm(found, step, metrics)
        self._think_alerts(found, metrics, step, patience)
        if t.alert_timeouts_max > 0:
            for key in sorted(k for k in metrics if k.startswith("rewards/") and k.endswith("/timeouts")):
                count = _number(metrics, key)
                if count is None:
                    continue
                total = self._timeouts[key] = self._timeouts.get(key, 0) + int(count)
                if total >= t.alert_timeouts_max:
                    name = key[len("rewards/"):-len("/timeouts")]
                    self._fire(found, f"reward_timeouts:{name}", step, key, float(total),
                               f"reward {name!r} timed out on {total} samples so far (>= {t.alert_timeouts_max}); "
                               f"each scored 0 (see reward_failures.jsonl)")
        return found

    def _check_prm(self, found: list[Alert], step: int, metrics: dict) -> None:
        """prm_hacking: the PRM's score up by alert_prm_rise, held-out pass@1 down by alert_prm_drop."""
        t = self.thresholds
        score, passed = _number(metrics, "rewards/prm"), _number(metrics, "eval/pass@1")
        if score is not None:
            self._prm_scores.append(score)
        if passed is None:
            return
        if self._first_pass is None:
            self._first_pass = passed
        k = max(1, int(t.alert_patience))
        if t.alert_prm_rise <= 0 or t.alert_prm_drop <= 0 or len(self._prm_scores) < 2 * k:
            return
        rise = sum(self._prm_scores[-k:]) / k - sum(self._prm_scores[:k]) / k
        drop = self._first_pass - passed
        if rise >= t.alert_prm_rise and drop >= t.alert_prm_drop:
            self._fire(found, "prm_hacking", step, "rewards/prm", rise,
                       f"the process reward model's score rose by {rise:.3f} while held-out pass@1 fell from "
                       f"{self._first_pass:.3f} to {passed:.3f}: the policy is learning what the PRM pays for, not "
                       f"the task (reward hacking, DeepSeek-R1 section 4.2)")

    def _think_alerts(self, found: list[Alert], metrics: dict, step: int, patience: int) -> None:
        """The think stops mattering (held-out think_gain near 0 while the think shrinks), or the policy
        answers without a closed think (training completions)."""
        t = self.thresholds
        gain, think = _number(metrics, "eval/think_gain"), _number(metrics, "eval/think_tokens")
        if think is not None and self._first_think is None:
            self._first_think = think
        shrunk = think is not None and self._first_think and think < 0.75 * self._first_think
        if gain is not None and t.alert_think_gain_min > 0 and step > 0 and gain < t.alert_think_gain_min and shrunk:
            self._fire(found, "think_unused", step, "eval/think_gain", gain,
                       f"held-out accuracy with the think is {gain:+.3f} from accuracy without it (< "
                       f"{t.alert_think_gain_min:g}) while the think shrank from {self._first_think:.0f} to "
                       f"{think:.0f} tokens: the policy is dropping a think that does no work")
        guess = _number(metrics, "guess_rate")
        if guess is not None and t.alert_guess_rate_max > 0 and \
                self._streak("guessing", guess >= t.alert_guess_rate_max) >= patience:
            self._fire(found, "guessing", step, "guess_rate", guess,
                       f"{guess:.0%} of completions answer after an unclosed or empty think for {patience} steps "
                       f"(>= {t.alert_guess_rate_max:g}): the policy guesses instead of working the problem out")


def check_alerts(history: Iterable[dict], config: Any = None) -> list[Alert]:
    """All alerts of a run's metrics history (metrics.jsonl rows in step order), as the loop raised them."""
    monitor = AlertMonitor(config)
    return [alert for metrics in history for alert in monitor.update(metrics)]
