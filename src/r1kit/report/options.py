"""The options of the alerts over a run's metrics (r1kit.report.alerts): printed once each as one line and
shown at the top of the report; a threshold of 0 turns its alert off."""

from __future__ import annotations

import math
from dataclasses import dataclass

from r1kit.core.options import Options, need, opt

THRESHOLDS = ("alert_entropy_min", "alert_zero_std_max", "alert_format_rate", "alert_template_copy_max",
              "alert_kl_max", "alert_clip_max", "alert_think_gain_min", "alert_guess_rate_max", "alert_prm_rise",
              "alert_prm_drop")


@dataclass
class AlertOptions(Options):
    """alerts"""

    alert_entropy_min: float = opt(0.05, "alert when the mean entropy (nats per token) stays below this for "
                                         "alert_patience steps")
    alert_zero_std_max: float = opt(0.95, "alert when the share of groups with zero reward spread stays at or above "
                                          "this for alert_patience steps")
    alert_format_rate: float = opt(0.5, "alert when format_rate has risen to at least this while accuracy stayed 0 "
                                        "for alert_patience steps")
    alert_template_copy_max: float = opt(0.2, "alert when template_copy_rate (completions copying the template's "
                                              "example) or example_copy_rate (thinks copying a worked example shown "
                                              "in the prompt) exceeds this")
    alert_kl_max: float = opt(1.0, "alert when the KL to the reference (per token) exceeds this")
    alert_clip_max: float = opt(0.2, "alert when the share of clipped tokens exceeds this")
    alert_prm_rise: float = opt(0.1, "reward hacking of a process reward model: alert when its score (rewards/prm, "
                                     "the mean of the last alert_patience steps) has risen by at least this over its "
                                     "first alert_patience steps while held-out accuracy fell by alert_prm_drop")
    alert_prm_drop: float = opt(0.05, "see alert_prm_rise: the fall of held-out pass@1 below the first evaluation's")
    alert_think_gain_min: float = opt(0.02, "alert when held-out think_gain (pass@1 with the think minus without) "
                                            "falls below this while the think has shrunk below 3/4 of its first "
                                            "length")
    alert_guess_rate_max: float = opt(0.5, "alert when the share of training completions that answer after an "
                                           "unclosed or empty think stays at or above this for alert_patience steps")
    alert_timeouts_max: int = opt(10, "alert when one reward has timed out on this many samples in the run")
    alert_patience: int = opt(3, "logged steps in a row a sustained alert condition must hold")
    alert_stop: bool = opt(False, "stop the run (after saving a checkpoint) when an alert fires; default: print it "
                                  "and go on")

    def check(self) -> None:
        for name in THRESHOLDS:
            value = getattr(self, name)
            need(value >= 0 and math.isfinite(value), f"{name}={value}: must be a finite number >= 0 (0: off)")
        need(self.alert_timeouts_max >= 0, f"alert_timeouts_max={self.alert_timeouts_max}: must be >= 0 (0: off)")
        need(self.alert_patience >= 1, f"alert_patience={self.alert_patience}: must be >= 1")
