"""Reading a run folder back for the report: its metrics (metrics.jsonl, sorted by step), its config, and
display names that tell runs apart."""

from __future__ import annotations

import json
import math
from pathlib import Path

from r1kit.core.errors import DataError
from r1kit.core.files import read_jsonl


def load_run(run_dir: str | Path) -> dict:
    """A run's metrics (one dict per logged line, sorted by step), its config, and how many lines of
    metrics.jsonl could not be read ("unreadable"); DataError if it holds no metrics or samples, or if
    metrics.jsonl has lines but none can be read."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run {path}: no such folder")
    if not (path / "metrics.jsonl").is_file() and not (path / "samples.jsonl").is_file():
        raise DataError(f"run {path}: no metrics.jsonl or samples.jsonl (not an r1kit run folder)")
    records, unreadable = read_jsonl(path / "metrics.jsonl")
    metrics = [m for m in records if is_number(m.get("step"))]
    unreadable += len(records) - len(metrics)  # JSON objects without a step number
    if unreadable and not metrics:
        raise DataError(f"run {path}: none of the {unreadable} lines of metrics.jsonl is a metrics record "
                        f"(a JSON object with a step); no report written")
    metrics.sort(key=lambda m: m["step"])
    config: dict = {}
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return {"dir": path, "name": path.resolve().name, "metrics": metrics, "unreadable": unreadable,
            "config": config if isinstance(config, dict) else {}}


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def label_runs(runs: list[dict]) -> None:
    """Give each run a distinct display name: its folder name, or more of its path when names clash."""
    names = [r["name"] for r in runs]
    for r in runs:
        if names.count(r["name"]) > 1:
            parts = r["dir"].resolve().parts
            r["name"] = "/".join(parts[-2:])
    seen: dict[str, int] = {}
    for r in runs:  # the same folder given twice
        seen[r["name"]] = seen.get(r["name"], 0) + 1
        if seen[r["name"]] > 1:
            r["name"] = f"{r['name']} ({seen[r['name']]})"


def series(metrics: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric, only where it was logged as a finite number."""
    xs, ys = [], []
    for m in metrics:
        if is_number(m.get(key)):
            xs.append(m["step"])
            ys.append(float(m[key]))
    return xs, ys


def numeric_keys(runs: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in runs:
        for m in r["metrics"]:
            for k, v in m.items():
                if k != "step" and is_number(v):
                    keys.setdefault(k, None)
    return list(keys)
