"""The stage-by-stage picture of a pipeline (summary.png next to summary.md): held-out pass@1 after every
evaluated stage (with pass@k, and each extra held-out set), and the think's length, each the mean over the
seeds run with every seed's value drawn as a dot and the min-max range as an error bar."""

from __future__ import annotations

import math
from pathlib import Path

from r1kit.core.files import write_atomic
from r1kit.report.plots import finish_axes, png_bytes, text_for_plot


def _draw(ax, stages: list[str], per_stage: list[list[float | None]], label: str, style: str, color: str) -> bool:
    """One series: the seeds' mean per stage joined by a line, min-max bars, every seed's value as a dot."""
    xs, means, lo, hi = [], [], [], []
    for x, values in enumerate(per_stage):
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if vals:
            xs.append(x)
            means.append(sum(vals) / len(vals))
            lo.append(means[-1] - min(vals))
            hi.append(max(vals) - means[-1])
            if len(vals) > 1:
                ax.scatter([x] * len(vals), vals, s=10, color=color, alpha=0.45, linewidths=0)
    if not xs:
        return False
    several = any(len([v for v in values if v is not None]) > 1 for values in per_stage)
    ax.errorbar(xs, means, yerr=[lo, hi] if several else None, fmt=style, color=color, capsize=3, linewidth=1.6,
                markersize=5, label=text_for_plot(label))
    return True


def render_stage_plot(stages: list[str], panels: list[dict], title: str) -> bytes:
    """PNG bytes. `panels`: [{title, ylim, series: [{label, style, values: [[value per seed] per stage]}]}]."""
    several_seeds = any(len(v) > 1 for panel in panels for s in panel["series"] for v in s["values"])
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(max(7.0, 1.1 * len(stages) + 2) * len(panels) / 1.6, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        drawn = sum(_draw(ax, stages, s["values"], s["label"], s.get("style", "o-"), colors[i % len(colors)])
                    for i, s in enumerate(panel["series"]))
        ax.set_title(text_for_plot(panel["title"]), fontsize=10)
        ax.set_xticks(range(len(stages)))
        ax.set_xlim(-0.4, len(stages) - 0.6)
        ax.set_xticklabels([text_for_plot(s) for s in stages], rotation=30, ha="right", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        finish_axes(ax, panel.get("ylim"), drawn)
    fig.suptitle(text_for_plot(title), fontsize=11)
    if several_seeds:
        fig.text(0.99, 0.01, "line: mean over the seeds; bar: min-max; dots: each seed", ha="right", fontsize=7)
    return png_bytes(fig)


def stage_plot_panels(runs: list[list[dict]], extra_names: list[str]) -> tuple[list[str], list[dict]]:
    """(the evaluated stages, the panels) from summary rows, one list of rows per seed (r1kit.pipeline.summary
    rows: stage, pass@1, pass@k, k, think_tokens, extra_evals)."""
    order = list(dict.fromkeys(r["stage"] for run in runs for r in run))
    stages = [s for s in order if any(r["stage"] == s and r.get("pass@1") is not None for run in runs for r in run)]

    def values(key: str, extra: str | None = None) -> list[list[float | None]]:
        out = []
        for stage in stages:
            vals = []
            for run in runs:
                row = next((r for r in run if r["stage"] == stage), {})
                src = (row.get("extra_evals") or {}).get(extra, {}) if extra else row
                vals.append(src.get(key))
            out.append(vals)
        return out

    k = next((r["k"] for run in runs for r in run if r.get("k")), None)
    accuracy = [{"label": "pass@1", "style": "o-", "values": values("pass@1")}]
    if k and k > 1:
        accuracy.append({"label": f"pass@{k}", "style": "s--", "values": values("pass@k")})
    accuracy.append({"label": "pass@1, think removed", "style": "v:", "values": values("pass@1_no_think")})
    for name in extra_names:
        accuracy.append({"label": f"pass@1 ({name})", "style": "D-.", "values": values("pass@1", name)})
    think = [{"label": "think", "style": "o-", "values": values("think_tokens")},
             {"label": "whole response", "style": "s--", "values": values("mean_length")}]
    return stages, [{"title": "held-out accuracy after each stage", "ylim": (0, 1), "series": accuracy},
                    {"title": "think and response length (tokens)", "ylim": None, "series": think}]


def write_stage_plot(path: str | Path, runs: list[list[dict]], extra_names: list[str], title: str) -> Path | None:
    """Draw the stage plot to `path` (PNG, written to a temporary file and renamed); None when no stage was
    evaluated."""
    stages, panels = stage_plot_panels(runs, extra_names)
    if not stages:
        return None
    path = Path(path)
    write_atomic(path, render_stage_plot(stages, panels, title))
    return path
