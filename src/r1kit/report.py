"""`r1kit report`: one self-contained HTML page (and a PNG per plot) from one or more runs.

The page shows a run the way the R1 paper does: reward and accuracy rising over steps (Figure 2),
response length growing (Figure 3), the "aha moment" (Table 3, see r1kit.aha), plus the optimisation
signals (KL, clip fraction, entropy, learning rate, zero-std groups) and throughput, and a sample
browser for chosen steps. Several runs given together are overlaid on the same axes.

Design decisions:
- metrics.jsonl, samples.jsonl and eval_samples.jsonl are the only inputs; every key is optional, so
  older runs, runs without evaluation and keys added later all render. Numeric keys that no figure
  knows go to an "other metrics" figure rather than being dropped.
- The HTML needs nothing from the network: plots are embedded as base64 PNG (the same bytes as the
  PNG files written next to it), samples as JSON, and a few lines of vanilla JS drive the browser.
  Sample text is put into the page with textContent, never as HTML.
- samples.jsonl can be large, so it is streamed twice (statistics, then the chosen steps) and only
  the chosen steps' completions, capped per step and per character, go into the page.
- Files are written to a temporary name and renamed, so a page open in a browser, or a report
  regenerated during training, never sees a half-written file.
"""

from __future__ import annotations

import base64
import datetime
import functools
import html
import io
import json
import math
import sys
from pathlib import Path
from typing import Iterable, Iterator

from . import aha
from .alerts import check_alerts
from .data import DataError
from .files import write_atomic

MAX_TEXT_CHARS = 6000  # completion characters embedded per sample; the rest is summarised
LINESTYLES = ("-", "--", ":", "-.")


# ----------------------------------------------------------------------------- reading runs

def iter_jsonl(path: Path) -> Iterator[dict]:
    """The JSON objects of a .jsonl file; blank or unreadable lines (a line being written) are skipped."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def load_run(run_dir: str | Path) -> dict:
    """A run's metrics (one dict per logged line, sorted by step) and config; DataError if it holds neither."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(f"run {path}: no such folder")
    if not (path / "metrics.jsonl").is_file() and not (path / "samples.jsonl").is_file():
        raise DataError(f"run {path}: no metrics.jsonl or samples.jsonl (not an r1kit run folder)")
    metrics = [m for m in iter_jsonl(path / "metrics.jsonl") if _is_number(m.get("step"))]
    metrics.sort(key=lambda m: m["step"])
    config: dict = {}
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return {"dir": path, "name": path.resolve().name, "metrics": metrics,
            "config": config if isinstance(config, dict) else {}}


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _label_runs(runs: list[dict]) -> None:
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
        if _is_number(m.get(key)):
            xs.append(m["step"])
            ys.append(float(m[key]))
    return xs, ys


# ----------------------------------------------------------------------------- which plots

def _numeric_keys(runs: list[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for r in runs:
        for m in r["metrics"]:
            for k, v in m.items():
                if k != "step" and _is_number(v):
                    keys.setdefault(k, None)
    return list(keys)


# Figures in page order: (file name, title, panels); a panel is (title, [(metric key, label)], y range or
# None). The response-length panel also shades the min-max band.
FIGURES = [
    ("reward", "Reward, accuracy and format rate (training completions)", [
        ("reward (total and per function)", [("reward", "total"), ("rewards/*", "")], None),
        ("accuracy, format rate and template copies", [("accuracy", "accuracy"), ("format_rate", "format rate"),
                                                      ("template_copy_rate", "template copies")], (0, 1)),
    ]),
    ("eval", "Evaluation on the held-out set (paper, Figure 2)", [
        ("pass@1 (and cons@k)", [("eval/pass@1", "pass@1"), ("eval/pass@*", ""), ("eval/cons@*", "")], (0, 1)),
        ("format rate", [("eval/format_rate", "format rate")], (0, 1)),
        ("mean response length (tokens)", [("eval/mean_length", "mean length")], None),
    ]),
    ("length", "Response length (paper, Figure 3)", [
        ("response length (tokens): mean and min-max", [("completion_length", "mean length")], None),
        ("truncated fraction (hit max_completion_length)", [("truncated_frac", "truncated")], (0, 1)),
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


# ----------------------------------------------------------------------------- drawing

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


# ----------------------------------------------------------------------------- samples for the page

def _utf16_spans(text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    """Python (code point) spans as JavaScript (UTF-16) string offsets."""
    def at(i: int) -> int:
        return len(text[:i].encode("utf-16-le")) // 2
    return [[at(a), at(b)] for a, b in spans]


def choose_steps(steps: list[int], extra: Iterable[int] = (), count: int = 12) -> list[int]:
    """`count` steps spread evenly over `steps` (first and last included), plus `extra`."""
    steps = sorted(set(steps))
    if len(steps) <= count:
        chosen = set(steps)
    else:
        chosen = {steps[round(i * (len(steps) - 1) / (count - 1))] for i in range(count)}
    return sorted(chosen | (set(extra) & set(steps)))


def _clip(text: str) -> tuple[str, int]:
    if len(text) <= MAX_TEXT_CHARS:
        return text, 0
    return text[:MAX_TEXT_CHARS], len(text) - MAX_TEXT_CHARS


def collect_samples(path: Path, steps: list[int], keep: dict[int, set[int]], max_per_step: int,
                    compiled_markers, kind: str) -> dict[int, list[dict]]:
    """The records of `steps` in a samples file (train or eval), as compact dicts for the page.

    A completion's index is its position within its step in file order, the numbering r1kit.aha uses
    for its links; indices in `keep` are embedded even past `max_per_step`.
    """
    wanted = set(steps)
    out: dict[int, list[dict]] = {s: [] for s in steps}
    position: dict[int, int] = {}
    for rec in iter_jsonl(path):
        step = rec.get("step")
        if not isinstance(step, int):
            continue
        index = position.get(step, 0)
        position[step] = index + 1
        if step not in wanted or (index >= max_per_step and index not in keep.get(step, ())):
            continue
        completion = str(rec.get("completion", ""))
        text, cut = _clip(completion)
        item = {"i": index, "c": text, "cut": cut, "ok": aha.is_correct(rec),
                "m": _utf16_spans(text, aha.marker_spans(text, compiled_markers)),
                "mk": aha.find_markers(completion, compiled_markers)}
        if kind == "train":
            item.update(pid=rec.get("prompt_id"), q=rec.get("question"), a=rec.get("answer"),
                        r=rec.get("reward"), rs=rec.get("rewards") or {}, adv=rec.get("advantage"),
                        len=rec.get("length"), tr=rec.get("truncated"))
        else:
            item.update(pid=rec.get("problem_id"), k=rec.get("sample"), p=rec.get("prompt"), a=rec.get("gold"),
                        x=rec.get("extracted"), fmt=rec.get("format_ok"), len=rec.get("length"),
                        tr=rec.get("truncated"))
        out[step].append(item)
    return {s: v for s, v in out.items() if v}


# ----------------------------------------------------------------------------- the page

def _fmt(x) -> str:
    if not _is_number(x):
        return "–"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}" if abs(x) < 0.01 or abs(x) >= 1000 else f"{x:.3f}"


def _first_last(metrics: list[dict], key: str) -> str:
    xs, ys = series(metrics, key)
    if not ys:
        return "–"
    return _fmt(ys[0]) if len(ys) == 1 else f"{_fmt(ys[0])} → {_fmt(ys[-1])}"


def summary_table(runs: list[dict]) -> str:
    """One row per run: setup from config.json, then first -> last values of the headline metrics."""
    head = ["run", "steps", "model", "dataset", "template", "G", "lr", "beta", "reward", "accuracy",
            "format rate", "length", "best eval pass@1"]
    rows = []
    for run in runs:
        c, m = run["config"], run["metrics"]
        train_steps = [x["step"] for x in m if "reward" in x]
        xs, ys = series(m, "eval/pass@1")
        best = f"{_fmt(max(ys))} (step {xs[ys.index(max(ys))]})" if ys else "–"
        cells = [run["name"], str(max(train_steps)) if train_steps else "–", str(c.get("model", "–")),
                 str(c.get("dataset", "–")), str(c.get("template", "–")), str(c.get("num_generations", "–")),
                 _fmt(c.get("learning_rate")), _fmt(c.get("beta")), _first_last(m, "reward"),
                 _first_last(m, "accuracy"), _first_last(m, "format_rate"), _first_last(m, "completion_length"), best]
        rows.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    return ("<table class='summary'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) +
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def alerts_section(runs: list[dict]) -> str:
    """The alerts each run raised, recomputed from metrics.jsonl with the run's own thresholds
    (config.json; defaults for options it lacks), so the page shows what the loop printed."""
    rows = []
    for run in runs:
        for a in check_alerts(run["metrics"], run["config"]):
            cells = [run["name"], str(a.step), a.kind, f"{a.metric} = {_fmt(a.value)}", a.message]
            rows.append("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in cells) + "</tr>")
    if not rows:
        return "<p class='muted'>No alerts.</p>"
    head = ["run", "step", "alert", "metric", "message"]
    return ("<table class='alerts'><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) +
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _sample_link(run_index: int, step: int, index: int, text: str) -> str:
    return (f"<a class='sample-link' href='#s-{run_index}-train-{step}-{index}'>"
            f"{html.escape(text)}</a>")


def aha_section(runs: list[dict]) -> str:
    """Per run: the marker table (total, first step, first step in a correct answer) and the first steps
    where a correct answer reflects, linked to those samples in the browser."""
    parts = []
    for r_i, run in enumerate(runs):
        stats = run["aha"]
        if not stats["steps"]:
            parts.append(f"<h3>{html.escape(run['name'])}</h3><p class='muted'>no samples.jsonl: nothing to track</p>")
            continue
        n = sum(s["n"] for s in stats["steps"])
        with_marker = sum(s["with_marker"] for s in stats["steps"])
        rows = []
        for marker, info in stats["per_marker"].items():
            first = info["first_correct"]
            link = _sample_link(r_i, first["step"], first["index"], f"step {first['step']}") if first else "–"
            first_step = info["first_step"] if info["first_step"] is not None else "–"
            rows.append(f"<tr><td><code>{html.escape(marker)}</code></td><td>{info['total']}</td>"
                        f"<td>{first_step}</td><td>{link}</td></tr>")
        firsts = []
        for entry in stats["first_correct_steps"]:
            links = ", ".join(_sample_link(r_i, entry["step"], i, f"#{i}") for i in entry["samples"])
            markers = ", ".join(html.escape(m) for m in entry["markers"])
            firsts.append(f"<li>step {entry['step']}: {links} <span class='muted'>({markers})</span></li>")
        first_html = ("<ol class='aha-firsts'>" + "".join(firsts) + "</ol>") if firsts else \
            "<p class='muted'>No correct answer contains a reflection marker yet.</p>"
        per_step = "".join(
            f"<tr><td>{s['step']}</td><td>{s['n']}</td><td>{s['with_marker']}</td><td>{s['share']:.1%}</td>"
            f"<td>{s['n_correct']}</td><td>{s['correct_with_marker']}</td></tr>" for s in stats["steps"])
        parts.append(
            f"<h3>{html.escape(run['name'])}</h3>"
            f"<p>{with_marker} of {n} completions ({with_marker / max(n, 1):.1%}) contain a reflection marker.</p>"
            f"<p>First steps where a <em>correct</em> answer reflects (links open the sample):</p>{first_html}"
            "<table class='aha-table'><thead><tr><th>marker</th><th>completions</th><th>first step</th>"
            "<th>first step in a correct answer</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            "<details><summary>per-step numbers</summary><table class='aha-steps'><thead><tr><th>step</th>"
            "<th>completions</th><th>with a marker</th><th>share</th><th>correct</th><th>correct with a marker</th>"
            "</tr></thead><tbody>" + per_step + "</tbody></table></details>")
    return "".join(parts)


def _json_for_script(data) -> str:
    """JSON that cannot end the <script> element it sits in (completions contain '</answer>' and worse)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _clean(value):
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1240px;
       padding: 0 20px 40px; color: #1d2330; background: #fff; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #dde; padding-bottom: 0.2em; margin-top: 1.6em; }
.muted { color: #667; } code { background: #f2f3f7; padding: 0 3px; border-radius: 3px; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #dde; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f6fa; }
table.alerts td { background: #fff4e5; }
figure.plot { margin: 1em 0; } figure.plot img { max-width: 100%; height: auto; border: 1px solid #eef; }
figcaption { font-size: 0.85em; color: #667; }
nav a { margin-right: 1em; }
#sb-controls { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 8px;
               background: #f5f6fa; border-radius: 6px; position: sticky; top: 0; z-index: 1; }
.sample { border: 1px solid #dde; border-radius: 6px; margin: 10px 0; padding: 8px 12px; }
.sample.correct { border-left: 5px solid #2a9d4b; } .sample.incorrect { border-left: 5px solid #c94a4a; }
.sample.target { box-shadow: 0 0 0 3px #f0b400; }
.sample .meta { font-size: 0.85em; color: #445; }
.sample pre { white-space: pre-wrap; word-break: break-word; background: #fafbfd; padding: 6px 8px;
              border-radius: 4px; margin: 6px 0 0; font-size: 0.88em; }
mark { background: #ffe08a; padding: 0 1px; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 0.8em; margin-left: 4px; }
.badge.ok { background: #d7f2df; } .badge.bad { background: #f7dada; } .badge.trunc { background: #eee; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var runSel = document.getElementById("sb-run"), setSel = document.getElementById("sb-set"),
      stepSel = document.getElementById("sb-step"), filterSel = document.getElementById("sb-filter"),
      list = document.getElementById("sb-list"), count = document.getElementById("sb-count");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(x, d) { return (typeof x === "number") ? x.toFixed(d === undefined ? 3 : d) : "–"; }
  function option(sel, value, text) { var o = el("option", null, text); o.value = value; sel.appendChild(o); }
  function steps(run, set) {
    var bySet = (DATA.runs[run].samples || {})[set] || {};
    return Object.keys(bySet).map(Number).sort(function (a, b) { return a - b; });
  }

  function fillSets() {
    var run = Number(runSel.value), keep = setSel.value;
    setSel.textContent = "";
    ["train", "eval"].forEach(function (set) {
      if (steps(run, set).length) option(setSel, set, set === "train" ? "training rollouts" : "evaluation");
    });
    var known = Array.prototype.some.call(setSel.options, function (o) { return o.value === keep; });
    if (keep && known) setSel.value = keep;
  }
  function fillSteps() {
    var run = Number(runSel.value), set = setSel.value, keep = stepSel.value;
    stepSel.textContent = "";
    if (!set) return;
    var all = DATA.runs[run].samples[set];
    steps(run, set).forEach(function (s) {
      var rows = all[s], ok = rows.filter(function (r) { return r.ok === true; }).length;
      option(stepSel, s, "step " + s + " (" + rows.length + " shown, " + ok + " correct)");
    });
    if (keep && all[keep]) stepSel.value = keep;
    else if (stepSel.options.length) stepSel.value = stepSel.options[stepSel.options.length - 1].value;
  }
  function highlighted(text, spans) {
    var pre = el("pre"), at = 0;
    (spans || []).forEach(function (sp) {
      if (sp[0] > at) pre.appendChild(document.createTextNode(text.slice(at, sp[0])));
      pre.appendChild(el("mark", null, text.slice(sp[0], sp[1])));
      at = sp[1];
    });
    pre.appendChild(document.createTextNode(text.slice(at)));
    return pre;
  }
  function card(run, set, step, s) {
    var c = el("article", "sample " + (s.ok === true ? "correct" : s.ok === false ? "incorrect" : "unknown"));
    c.id = "s-" + run + "-" + set + "-" + step + "-" + s.i;
    var meta = el("div", "meta");
    var parts = ["#" + s.i, s.pid === undefined || s.pid === null ? "" : String(s.pid)];
    if (set === "train") {
      var fns = Object.keys(s.rs || {}).map(function (k) { return k + " " + num(s.rs[k], 2); }).join(", ");
      parts.push("reward " + num(s.r) + (fns ? " (" + fns + ")" : ""), "advantage " + num(s.adv));
    } else {
      parts.push("sample " + s.k, "extracted " + (s.x === null || s.x === undefined ? "–" : s.x),
                 "format " + (s.fmt ? "ok" : "bad"));
    }
    parts.push((s.len === undefined || s.len === null ? "?" : s.len) + " tokens");
    meta.textContent = parts.filter(Boolean).join(" · ");
    if (s.ok === true) meta.appendChild(el("span", "badge ok", "correct"));
    if (s.ok === false) meta.appendChild(el("span", "badge bad", "incorrect"));
    if (s.tr) meta.appendChild(el("span", "badge trunc", "truncated"));
    if (s.mk && s.mk.length) meta.appendChild(el("span", "badge", "reflects: " + s.mk.join(", ")));
    c.appendChild(meta);
    if (s.q !== undefined && s.q !== null) c.appendChild(el("div", "question", "Q: " + s.q));
    if (s.p) {
      var d = el("details");
      d.appendChild(el("summary", null, "prompt"));
      d.appendChild(el("pre", null, s.p));
      c.appendChild(d);
    }
    c.appendChild(el("div", "gold", "gold answer: " + (s.a === undefined || s.a === null ? "–" : s.a)));
    c.appendChild(highlighted(s.c || "", s.m));
    if (s.cut) c.appendChild(el("div", "muted", "… " + s.cut + " more characters not shown"));
    return c;
  }
  function render() {
    var run = Number(runSel.value), set = setSel.value, step = stepSel.value, filter = filterSel.value;
    list.textContent = "";
    var rows = (set && step) ? DATA.runs[run].samples[set][step] || [] : [];
    var shown = rows.filter(function (s) {
      return filter === "all" || (filter === "correct" ? s.ok === true : s.ok === false);
    });
    shown.forEach(function (s) { list.appendChild(card(run, set, step, s)); });
    count.textContent = shown.length + " of " + rows.length + " completions";
    if (!rows.length) list.appendChild(el("p", "muted", "No samples recorded for this run."));
  }
  function openHash() {
    var m = /^#s-(\d+)-(train|eval)-(\d+)-(\d+)$/.exec(window.location.hash);
    if (!m || !DATA.runs[Number(m[1])]) return;
    runSel.value = m[1]; fillSets(); setSel.value = m[2]; fillSteps(); stepSel.value = m[3];
    filterSel.value = "all"; render();
    var target = document.getElementById(window.location.hash.slice(1));
    if (target) { target.classList.add("target"); target.scrollIntoView(); }
  }
  DATA.runs.forEach(function (r, i) { option(runSel, i, r.name); });
  runSel.addEventListener("change", function () { fillSets(); fillSteps(); render(); });
  setSel.addEventListener("change", function () { fillSteps(); render(); });
  stepSel.addEventListener("change", render);
  filterSel.addEventListener("change", render);
  window.addEventListener("hashchange", openHash);
  fillSets(); fillSteps(); render(); openHash();
  document.body.setAttribute("data-ready", "1");
})();
"""


def render_html(runs: list[dict], figures: list[tuple[dict, bytes]], markers: list[str], page_data: dict) -> str:
    """The report page: summary, plots (embedded PNG), aha tracker, sample browser."""
    names = ", ".join(r["name"] for r in runs)
    created = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    plots = "".join(
        f"<figure class='plot' id='plot-{spec['name']}'><img alt='{html.escape(spec['title'])}' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
        f"<figcaption>{html.escape(spec['title'])} (also {spec['name']}.png)</figcaption></figure>"
        for spec, png in figures if spec["name"] != "aha")
    aha_plot = "".join(
        f"<figure class='plot' id='plot-aha'><img alt='reflection markers' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
        f"<figcaption>share of completions with a reflection marker (also aha.png)</figcaption></figure>"
        for spec, png in figures if spec["name"] == "aha")
    marker_list = ", ".join(f"<code>{html.escape(m)}</code>" for m in markers)
    overlay = "<p class='muted'>Runs are overlaid: colour tells the run.</p>" if len(runs) > 1 else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>r1kit report: {html.escape(names)}</title>
<style>{STYLE}</style></head>
<body>
<h1>r1kit report</h1>
<p class="muted">{html.escape(names)} · generated {created}
from metrics.jsonl, samples.jsonl and eval_samples.jsonl</p>
<nav><a href="#alerts">alerts</a><a href="#runs">runs</a><a href="#plots">plots</a><a href="#aha">aha moment</a><a href="#samples">samples</a></nav>
<h2 id="alerts">Alerts</h2>
{alerts_section(runs)}
<h2 id="runs">Runs</h2>
{summary_table(runs)}
<h2 id="plots">Plots</h2>
{overlay}
{plots or "<p class='muted'>No metrics logged yet.</p>"}
<h2 id="aha">Aha moment: reflection markers</h2>
<p>Share of training completions per step that contain a reflection marker (case-insensitive, whole words
for Latin markers; markers: {marker_list}). A completion is correct when its accuracy reward is 1.</p>
{aha_plot}
{aha_section(runs)}
<h2 id="samples">Sample browser</h2>
<div id="sb-controls">
<label>run <select id="sb-run"></select></label>
<label>set <select id="sb-set"></select></label>
<label>step <select id="sb-step"></select></label>
<label>show <select id="sb-filter"><option value="all">all</option><option value="correct">correct</option>
<option value="incorrect">incorrect</option></select></label>
<span id="sb-count" class="muted"></span>
</div>
<div id="sb-list"></div>
<script type="application/json" id="report-data">{_json_for_script(_clean(page_data))}</script>
<script>{SCRIPT}</script>
</body></html>
"""


# ----------------------------------------------------------------------------- entry points


def default_output(run_dirs: list[Path]) -> Path:
    """RUN_DIR/report/report.html for one run; ./r1kit_report/report.html for several."""
    if len(run_dirs) == 1:
        return run_dirs[0] / "report" / "report.html"
    return Path("r1kit_report") / "report.html"


def write_report(run_dirs: list[str | Path] | str | Path, out: str | Path | None = None,
                 markers: list[str] | None = None, sample_steps: list[int] | None = None,
                 max_samples_per_step: int = 32, num_sample_steps: int = 12) -> Path:
    """Write the HTML report of one or more runs and a PNG per plot next to it; returns the HTML path.

    `out`: a .html file, or a folder that gets report.html (default: see default_output).
    `markers`: the reflection markers (default r1kit.aha.DEFAULT_MARKERS).
    `sample_steps`: the steps the sample browser offers (default: `num_sample_steps` spread over the run,
    plus the steps the aha tracker links to), each with up to `max_samples_per_step` completions.
    """
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise DataError("report: give at least one run folder")
    compiled = aha.compile_markers(markers)
    marker_names = [m for m, _ in compiled]
    runs = [load_run(d) for d in dirs]
    _label_runs(runs)

    html_path = Path(out) if out is not None else default_output(dirs)
    if html_path.suffix.lower() not in (".html", ".htm"):
        html_path = html_path / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)

    page_runs = []
    for run in runs:
        run["aha"] = aha.track(iter_jsonl(run["dir"] / "samples.jsonl"), compiled)
        linked: dict[int, set[int]] = {}
        for entry in run["aha"]["first_correct_steps"]:
            linked.setdefault(entry["step"], set()).update(entry["samples"])
        for info in run["aha"]["per_marker"].values():
            if info["first_correct"]:
                linked.setdefault(info["first_correct"]["step"], set()).add(info["first_correct"]["index"])
        train_steps = [s["step"] for s in run["aha"]["steps"]]
        chosen = sorted(set(sample_steps) & set(train_steps)) if sample_steps else \
            choose_steps(train_steps, linked, num_sample_steps)
        samples = {"train": collect_samples(run["dir"] / "samples.jsonl", chosen, linked, max_samples_per_step,
                                            compiled, "train")}
        eval_path = run["dir"] / "eval_samples.jsonl"
        eval_steps = sorted({r["step"] for r in iter_jsonl(eval_path) if isinstance(r.get("step"), int)})
        if eval_steps:
            chosen_eval = choose_steps(eval_steps, (), num_sample_steps)
            samples["eval"] = collect_samples(eval_path, chosen_eval, {}, max_samples_per_step, compiled, "eval")
        page_runs.append({"name": run["name"], "samples": samples})

    figures: list[tuple[dict, bytes]] = []
    for spec in figure_specs(_numeric_keys(runs)):
        figures.append((spec, render_figure(spec, runs)))
    aha_png = render_aha_figure(runs)
    if aha_png is not None:
        figures.append(({"name": "aha", "title": "Reflection markers"}, aha_png))
    for spec, png in figures:
        write_atomic(html_path.parent / f"{spec['name']}.png", png)
    page = render_html(runs, figures, marker_names, {"runs": page_runs, "markers": marker_names})
    write_atomic(html_path, page.encode("utf-8"))
    return html_path


def write_report_safely(run_dir: str | Path, markers: list[str] | None = None) -> Path | None:
    """write_report for the trainer: a failure prints one warning line instead of ending training."""
    try:
        return write_report([run_dir], markers=markers)
    except Exception as e:  # noqa: BLE001 - a report must never cost a finished training run
        print(f"r1kit: warning: could not write the report for {run_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        return None
