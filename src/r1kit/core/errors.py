"""r1kit's error classes, in one module that imports nothing of r1kit.

Design decisions:
- Every module can raise these without importing the module that happens to use them most, so no
  error class pulls a chain of imports (and an import cycle) behind it. `r1kit` and its old path
  `r1kit.config` re-export the common ones for users' code.
- The command line sorts failures by class, not by message: ConfigError, DataError, ModelError and
  RewardError are bad input (one line `r1kit: error: ...`, exit 2); TrainingError is a run that cannot go
  on (exit 1); TrainingStopped is a stop on request after a checkpoint (exit 0 with the `--resume` line).
- TrackerError and PipelineError are ConfigErrors, so they are reported the same way; TrackerError is
  also a ValueError, as the trackers' callers expect of a bad name.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A bad option; the message names the option (and the config file when it came from one)."""


class DataError(Exception):
    """Bad dataset input; the message names the file and line or the option at fault."""


class ModelError(Exception):
    """A model could not be found or loaded; the message says which and why."""


class RewardError(Exception):
    """A reward function raised or returned something that is not a valid score."""


class TrainingError(Exception):
    """A run that had to stop (repeated non-finite updates, a checkpoint that cannot be written); one line."""


class TrainingStopped(Exception):
    """A run stopped on request (SIGINT/SIGTERM) after saving a checkpoint; `--resume` continues it.

    Raised by every process of a multi-process run; only the main process's copy has main_process True.
    """

    def __init__(self, message: str, step: int, checkpoint: str | None, main_process: bool = True) -> None:
        super().__init__(message)
        self.step, self.checkpoint, self.main_process = step, checkpoint, main_process


class TrackerError(ConfigError, ValueError):
    """An unknown tracker, or one whose package is not installed (a ValueError, and a ConfigError so the
    command line reports it as one line)."""


class PipelineError(ConfigError):
    """A pipeline that cannot run as configured; the message names the stage (and the key)."""


class CheckpointError(TrainingError):
    """A checkpoint could not be written; the message names the folder and the previous checkpoint."""


class EngineError(TrainingError):
    """A rollout engine that stopped working mid-run (a vLLM server unreachable or dead); one line. The
    training loop adds the step and the last checkpoint, which is left as it was."""
