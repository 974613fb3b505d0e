"""Optional experiment trackers: TensorBoard, Weights & Biases, trackio.

metrics.jsonl stays the source of truth and needs none of them; a tracker only mirrors each metrics
line when the user asks for it (`report_to`, TRL's name for the option) and has its package installed.
Asking for one whose package is missing is an error before training starts, not a silent no-op.

    check_trackers(["tensorboard"])                      # before a model loads: fails early
    trackers = make_trackers(["tensorboard"], run_dir, config)
    for t in trackers: t.log(metrics, step)
    for t in trackers: t.close()
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

from r1kit.core.errors import TrackerError


def scalars(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics line (step excluded): what trackers can plot."""
    out = {}
    for key, value in metrics.items():
        if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def _need(name: str, module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        package = TRACKERS[name].package
        raise TrackerError(f"report_to={name}: the '{package}' package is not installed "
                           f"(pip install {package})") from None


def _unknown(name: str) -> TrackerError:
    return TrackerError(f"report_to={name}: unknown tracker; choose from {', '.join(TRACKERS)}, all or none")


def normalize_names(names: list[str] | str | None) -> list[str]:
    """The tracker names asked for: 'none' or nothing means none, 'all' means every installed one."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [names]
    wanted = [n.strip().lower() for n in names if n and n.strip()]
    if wanted in ([], ["none"]):
        return []
    if wanted == ["all"]:
        found = []
        for name in TRACKERS:
            try:
                check_tracker(name)
                found.append(name)
            except TrackerError:
                pass
        return found
    for name in wanted:
        if name not in TRACKERS:
            raise _unknown(name)
    return list(dict.fromkeys(wanted))


def check_tracker(name: str) -> None:
    """Raise TrackerError unless `name`'s package can be imported (cheap; call before a model loads)."""
    if name not in TRACKERS:
        raise _unknown(name)
    *first, last = TRACKERS[name].modules
    for module in first:  # any one of a tracker's modules will do
        try:
            _need(name, module)
            return
        except TrackerError:
            pass
    _need(name, last)


class TensorBoardTracker:
    """Scalars to RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR/tensorboard`)."""

    package, modules = "tensorboard", ("torch.utils.tensorboard", "tensorboardX")  # pip name; any module will do

    def __init__(self, run_dir: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            SummaryWriter = _need("tensorboard", "tensorboardX").SummaryWriter
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in config.items()))

    def log(self, metrics: dict, step: int) -> None:
        for key, value in scalars(metrics).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    """A Weights & Biases run (project from WANDB_PROJECT, default 'r1kit'; name: the run folder's)."""

    package, modules = "wandb", ("wandb",)

    def __init__(self, run_dir: Path, config: dict):
        wandb = _need("wandb", "wandb")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "r1kit"), name=run_dir.resolve().name,
                              dir=str(run_dir), config=config)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class TrackioTracker:
    """A trackio run (project from TRACKIO_PROJECT, default 'r1kit'; name: the run folder's)."""

    package, modules = "trackio", ("trackio",)

    def __init__(self, run_dir: Path, config: dict):
        self.trackio = _need("trackio", "trackio")
        self.trackio.init(project=os.environ.get("TRACKIO_PROJECT", "r1kit"), name=run_dir.resolve().name,
                          config=config)

    def log(self, metrics: dict, step: int) -> None:
        self.trackio.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.trackio.finish()


# The one table of trackers: name (as report_to takes it) -> class (its package, its modules, how it logs).
TRACKERS = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "trackio": TrackioTracker}


def check_trackers(names: list[str] | str | None) -> list[str]:
    """The tracker names asked for, each checked (TrackerError otherwise); starts nothing."""
    wanted = normalize_names(names)
    for name in wanted:
        check_tracker(name)
    return wanted


def make_trackers(names: list[str] | str | None, run_dir: str | Path, config: dict) -> list:
    """Start the trackers asked for; each has log(metrics, step) and close().

    Every package is checked before any tracker starts, so a missing one leaves nothing half-open.
    """
    wanted = check_trackers(names)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return [TRACKERS[name](run_dir, config) for name in wanted]
