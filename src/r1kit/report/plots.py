"""The report's figures: which metrics go on which panel (FIGURES), and each figure drawn to PNG with
matplotlib, several runs overlaid."""

from __future__ import annotations

import functools
import io
import math

from r1kit.report.runs import series

LINESTYLES = ("-", "--", ":", "-.")


# Figures in page order: (file name, title, panels); a panel is (title, [(metric key, label)], y range or
# None). The response-length panel also shades the min-max band.
FIGURES = [
    ("reward", "Reward, accuracy and format rate (training completions)", [
        ("reward (total and per function)", [("reward", "total"), ("rewards/*", "")], None),
        ("accuracy, format rate and template copies", [("accuracy", "accuracy"), ("format_rate", "format rate"),
                                                      ("template_copy_rate", "template copies"),
                                                      ("example_copy_rate", "worked-example copies")], (0, 1)),
    ]),
    ("eval", "Evaluation on the held-out set (paper, Figure 2)", [
        ("pass@1 (and cons@k), with the think and with it removed",
         [("eval/pass@1", "pass@1"), ("eval/pass@1_no_think", "pass@1, think removed"), ("eval/pass@*", ""),
          ("eval/cons@*", "")], (0, 1)),
        ("think_gain: pass@1 minus pass@1 with the think removed", [("eval/think_gain", "think_gain")], None),
        ("format rate", [("eval/format_rate", "format rate")], (0, 1)),
        ("mean response and think length (tokens)", [("eval/mean_length", "response"), ("eval/think_tokens", "think")],
         None),
        ("thinks left unclosed or empty", [("eval/think_unclosed_rate", "unclosed"), ("eval/think_empty_rate", "empty"),
                                           ("eval/think_closed_rate", "closed")], (0, 1)),
    ]),
    ("length", "Response length (paper, Figure 3)", [
        ("response length (tokens): mean and min-max", [("completion_length", "mean length")], None),
        ("truncated fraction (hit max_completion_length)", [("truncated_frac", "truncated")], (0, 1)),
        ("think length (tokens), training completions", [("think_length", "think")], None),
        ("answers after an unclosed or empty think (guesses)", [("guess_rate", "guesses")], (0, 1)),
    ]),
    ("training", "Optimisation", [
        ("KL to the reference", [("kl", "kl")], None),
        ("clip fraction", [("clip_ratio", "total"), ("clip_ratio/low", "low"), ("clip_ratio/high", "high")], None),
        ("entropy (nats per token)", [("entropy", "entropy")], None),
        ("learning rate", [("learning_rate", "learning rate")], None),
        ("zero-std group fraction", [("frac_reward_zero_std", "zero-std groups")], (0, 1)),
        ("reward std within groups", [("reward_std", "reward std")], None),
        ("gradient norm (before clipping)", [("grad_norm", "grad norm")], None),
        ("loss", [("loss", "loss")], None),
        ("skipped updates (non-finite gradient)", [("skipped_updates", "skipped")], None),
    ]),
    ("speed", "Time and throughput", [
        ("seconds", [("step_time", "step"), ("generation_time", "generation"), ("eval/seconds", "evaluation")], None),
        ("seconds per phase of the step", [("timing/*", "")], None),
        ("tokens per second", [("tokens_per_second", "all tokens"),
                               ("generated_tokens_per_second", "generated")], None),
    ]),
]


LENGTH_BAND = ("completion_length_min", "completion_length_max")


def figure_specs(keys: list[str]) -> list[dict]:
    """The figures that the logged `keys` can fill, each {name, title, panels: [{title, series, ylim, band}]}.

    "prefix/*" in FIGURES stands for every logged key under that prefix (labelled by the rest of the
    key). Panels with no logged key are left out, and so are empty figures; numeric keys that no figure
    uses go to a last "other" figure, one panel each, so new metrics are shown without a code change.
    """
    used = set(LENGTH_BAND)
    figures = []
    for name, title, panels in FIGURES:
        kept = []
        for panel_title, wanted, ylim in panels:
            found = []
            for key, label in wanted:
                if key.endswith("*"):
                    prefix = key[:-1]
                    matches = [(k, k[len(prefix):] if prefix.endswith("/") else k.split("/", 1)[1])
                               for k in keys if k.startswith(prefix) and k not in used]
                else:
                    matches = [(key, label)] if key in keys and key not in used else []
                found += matches
                used.update(k for k, _ in matches)
            if found:
                kept.append({"title": panel_title, "series": found, "ylim": ylim,
                             "band": LENGTH_BAND if found[0][0] == "completion_length" else None})
        if kept:
            figures.append({"name": name, "title": title, "panels": kept})
    other = [k for k in keys if k not in used]
    if other:
        figures.append({"name": "other", "title": "Other logged metrics",
                        "panels": [{"title": k, "series": [(k, k)], "ylim": None, "band": None} for k in other]})
    return figures


@functools.lru_cache(maxsize=1)
def _plot_font():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    return FT2Font(font_manager.findfont(font_manager.FontProperties()))


def _text_for_plot(text: str) -> str:
    """Text matplotlib's default font can draw: '$' stays literal, glyphs it lacks are written as escapes."""
    font = _plot_font()
    if not all(ch.isspace() or font.get_char_index(ord(ch)) for ch in text):
        text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text.replace("$", r"\$")


def render_figure(spec: dict, runs: list[dict]) -> bytes:
    """One figure as PNG bytes: a panel per metric group, runs overlaid.

    With one run each series gets its own colour; with several, colour tells the run and line style
    the series. Drawn on a bare Figure with the Agg canvas, so no pyplot backend is switched.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = spec["panels"]
    n = len(panels)
    ncols = {1: 1, 2: 2, 3: 3, 4: 2, 7: 4, 8: 4}.get(n, 3)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols if ncols > 1 else 7.5, 3.1 * nrows + 0.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    several = len(runs) > 1
    for ax, panel in zip(axes.flat, panels):
        lines = 0
        for r_i, run in enumerate(runs):
            metrics = run["metrics"]
            for s_i, (key, label) in enumerate(panel["series"]):
                xs, ys = series(metrics, key)
                if not xs:
                    continue
                # colour tells the series with one run (or when the panel asks), else the run
                by_series = not several or panel.get("color_by") == "series"
                color = colors[(s_i if by_series else r_i) % len(colors)]
                style = "-" if not several else LINESTYLES[(r_i if by_series else s_i) % len(LINESTYLES)]
                name = run["name"] if several else label
                if several and len(panel["series"]) > 1:
                    name = f"{run['name']}: {label}"
                ax.plot(xs, ys, style, color=color, label=_text_for_plot(name), linewidth=1.6,
                        marker="o" if len(xs) <= 30 else None, markersize=3)
                lines += 1
                if panel.get("band") and s_i == 0:
                    lo_key, hi_key = panel["band"]
                    lo = dict(zip(*series(metrics, lo_key)))
                    hi = dict(zip(*series(metrics, hi_key)))
                    steps = [x for x in xs if x in lo and x in hi]
                    if steps:
                        ax.fill_between(steps, [lo[x] for x in steps], [hi[x] for x in steps], color=color,
                                        alpha=0.15, linewidth=0, label=_text_for_plot(
                                            f"{run['name']}: min-max" if several else "min-max"))
                        lines += 1
        ax.set_title(_text_for_plot(panel["title"]), fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(True, alpha=0.3)
        if panel.get("ylim"):
            lo, hi = panel["ylim"]
            ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo))
        if lines > 1:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(_text_for_plot(spec["title"]), fontsize=12)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def aha_metrics(stats: dict, top: int = 6) -> tuple[list[dict], list[str]]:
    """The tracker's per-step shares as metric rows, and the (up to `top`) most frequent markers."""
    frequent = sorted((m for m, info in stats["per_marker"].items() if info["total"]),
                      key=lambda m: -stats["per_marker"][m]["total"])[:top]
    rows = []
    for s in stats["steps"]:
        row = {"step": s["step"], "aha/share": s["share"]}
        if s["share_correct"] is not None:
            row["aha/share_correct"] = s["share_correct"]
        for m in frequent:
            row[f"aha/marker/{m}"] = s["per_marker"][m] / s["n"] if s["n"] else 0.0
        rows.append(row)
    return rows, frequent


def render_aha_figure(runs: list[dict]) -> bytes | None:
    """The reflection-marker figure, or None when no run has samples."""
    pseudo, markers = [], []
    for run in runs:
        rows, frequent = aha_metrics(run["aha"])
        pseudo.append({"name": run["name"], "metrics": rows})
        markers += [m for m in frequent if m not in markers]
    if not any(p["metrics"] for p in pseudo):
        return None
    panels = [{"title": "completions with a reflection marker", "ylim": (0, 1), "band": None,
               "series": [("aha/share", "all completions"), ("aha/share_correct", "correct completions")]}]
    if markers:
        panels.append({"title": "share of completions per marker", "ylim": None, "band": None, "color_by": "series",
                       "series": [(f"aha/marker/{m}", m) for m in markers]})
    return render_figure({"name": "aha", "title": "Reflection markers over training (the \"aha moment\")",
                          "panels": panels}, pseudo)
