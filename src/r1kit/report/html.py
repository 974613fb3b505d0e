"""`r1kit report`: one self-contained HTML page (and a PNG per plot) from one or more runs.

The page shows a run the way the R1 paper does: reward and accuracy rising over steps (Figure 2),
response length growing (Figure 3), the "aha moment" (Table 3, see r1kit.report.aha), plus the optimisation
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
import importlib.resources
import json
import math
import sys
from pathlib import Path
from typing import Iterable

from r1kit.core.errors import ConfigError, DataError
from r1kit.core.files import iter_jsonl, write_atomic, write_failure
from r1kit.report import aha
from r1kit.report.alerts import check_alerts
from r1kit.report.plots import figure_specs, render_aha_figure, render_figure
from r1kit.report.runs import is_number, label_runs, load_run, numeric_keys, series

MAX_TEXT_CHARS = 6000  # completion characters embedded per sample; the rest is summarised


# ----------------------------------------------------------------------------- reading runs


# ----------------------------------------------------------------------------- which plots


# ----------------------------------------------------------------------------- drawing


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
                    compiled_markers, kind: str, mode: str | None = None) -> dict[int, list[dict]]:
    """The records of `steps` in a samples file (train or eval), as compact dicts for the page; with `mode`,
    only the evaluation records of that mode ("think", or "no_think": the think removed).

    A completion's index is its position within its step in file order, the numbering r1kit.report.aha uses
    for its links; indices in `keep` are embedded even past `max_per_step`.
    """
    wanted = set(steps)
    out: dict[int, list[dict]] = {s: [] for s in steps}
    position: dict[int, int] = {}
    for rec in iter_jsonl(path):
        step = rec.get("step")
        if not isinstance(step, int) or (mode is not None and rec.get("mode", "think") != mode):
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
    if not is_number(x):
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


@functools.cache
def _asset(name: str) -> str:
    """The page's CSS and JavaScript, shipped as package files next to this module."""
    return importlib.resources.files("r1kit.report").joinpath("assets", name).read_text(encoding="utf-8")


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
<style>{_asset('report.css')}</style></head>
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
<script>{_asset('report.js')}</script>
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
    label_runs(runs)

    html_path = output_path(Path(out) if out is not None else default_output(dirs))
    for run in runs:
        if run["unreadable"]:
            print(f"r1kit: report: {run['dir'] / 'metrics.jsonl'}: {run['unreadable']} of "
                  f"{run['unreadable'] + len(run['metrics'])} lines could not be read (not metrics records); "
                  f"left out", file=sys.stderr)

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
            for name, mode in (("eval", "think"), ("eval_no_think", "no_think")):
                samples[name] = collect_samples(eval_path, chosen_eval, {}, max_samples_per_step, compiled, "eval",
                                                mode)
        page_runs.append({"name": run["name"], "samples": samples})

    figures: list[tuple[dict, bytes]] = []
    for spec in figure_specs(numeric_keys(runs)):
        figures.append((spec, render_figure(spec, runs)))
    aha_png = render_aha_figure(runs)
    if aha_png is not None:
        figures.append(({"name": "aha", "title": "Reflection markers"}, aha_png))
    page = render_html(runs, figures, marker_names, {"runs": page_runs, "markers": marker_names})
    target = html_path
    try:
        for spec, png in figures:
            target = html_path.parent / f"{spec['name']}.png"
            write_atomic(target, png)
        target = html_path
        write_atomic(html_path, page.encode("utf-8"))
    except OSError as e:
        raise ConfigError(f"report: cannot write {target}: {write_failure(e, target)}") from None
    return html_path


def output_path(out: Path) -> Path:
    """The report's HTML file for `out` (a .html file, or a folder that gets report.html), its folder made;
    ConfigError for a path that cannot be one (a file that is not .html, a folder under a file)."""
    html_path = out if out.suffix.lower() in (".html", ".htm") else out / "report.html"
    if out.is_file() and html_path is not out:
        raise ConfigError(f"report: {out} is a file that is not .html; give a .html file or a folder")
    if html_path.is_dir():
        raise ConfigError(f"report: {html_path} is a folder; give a .html file or a folder to write report.html in")
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"report: cannot create {html_path.parent}: {write_failure(e, html_path.parent)}") from None
    return html_path


def write_report_safely(run_dir: str | Path, markers: list[str] | None = None) -> Path | None:
    """write_report for the trainer: a failure prints one warning line instead of ending training."""
    try:
        return write_report([run_dir], markers=markers)
    except Exception as e:  # noqa: BLE001 - a report must never cost a finished training run
        print(f"r1kit: warning: could not write the report for {run_dir}: {type(e).__name__}: {e}", file=sys.stderr)
        return None
