"""The pipeline's record of what each stage did: summary.md (a table), summary.json (its rows) and
summary.png (the picture), in the run's folder; with several seeds (`r1kit pipeline --seeds`), the same
three files one folder up, over the seeds: mean, spread and every seed's value.

Every row carries what the issue of a stage is measured by: held-out pass@1 and pass@k (k = the samples per
problem: the ceiling RL sharpens toward), cons@k, think_gain (pass@1 minus pass@1 with the think removed:
whether the think does the work), the think's length and the whole response's, the readable-format rate
and language consistency (readability), each extra held-out set's pass@1 and pass@k, and the stage's wall
time.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable

from r1kit.core.files import write_atomic, write_json

# the per-evaluation metrics a row keeps (pass@k is stored under "pass@k", with "k" alongside)
EVAL_KEYS = ("problems", "pass@1", "pass@k", "cons@k", "pass@1_no_think", "think_gain", "think_tokens",
             "mean_length", "format_rate", "language_consistency", "truncated_frac", "style")
SEED_DIR = re.compile(r"^seed(\d+)$")


def eval_row(ev: dict) -> dict:
    """The kept metrics of one evaluation (an entry's "eval" in the manifest)."""
    k = ev.get("samples_per_problem")
    row = {"k": k, **{key: ev.get(key) for key in EVAL_KEYS}}
    row["pass@k"] = ev.get(f"pass@{k}") if k and k > 1 else ev.get("pass@1")
    row["cons@k"] = ev.get(f"cons@{k}") if k else None
    return row


def summary_rows(stages: list[tuple[str, str]], manifest: dict) -> list[dict]:
    """One row per (stage name, type): its status, times, evaluation and extra evaluations."""
    rows = []
    for name, kind in stages:
        entry = manifest["stages"].get(name, {})
        ev = entry.get("eval")
        row = {"stage": name, "type": kind, "status": entry.get("status", "not run"), "seconds": entry.get("seconds"),
               "eval_seconds": entry.get("eval_seconds"), **eval_row(ev or {})}
        row["extra_evals"] = {x: eval_row(e) for x, e in (entry.get("extra_evals") or {}).items()}
        rows.append(row)
    return rows


def _f(x, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


COLUMNS = [  # (header, row key, digits, signed)
    ("pass@1", "pass@1", 3, False), ("pass@k", "pass@k", 3, False), ("cons@k", "cons@k", 3, False),
    ("think_gain", "think_gain", 3, True), ("think tokens", "think_tokens", 1, False),
    ("length", "mean_length", 1, False), ("format", "format_rate", 2, False),
    ("language", "language_consistency", 2, False),
]


def format_summary(header: str, rows: list[dict], extras: list[str]) -> str:
    """One run's table: evaluation after every stage, side by side."""
    k = next((r["k"] for r in rows if r.get("k")), "k")
    heads = [h.replace("@k", f"@{k}") for h, *_ in COLUMNS] + [f"{x} pass@1 / pass@{k}" for x in extras]
    lines = [header, "", "| stage | type | " + " | ".join(heads) + " | style | stage time (s) | eval time (s) |",
             "| --- | --- | " + " | ".join("---:" for _ in heads) + " | --- | ---: | ---: |"]
    for r in rows:
        cells = [_f(r.get(key), d, s) for _, key, d, s in COLUMNS]
        for x in extras:
            e = r["extra_evals"].get(x, {})
            cells.append(f"{_f(e.get('pass@1'))} / {_f(e.get('pass@k'))}" if e else "-")
        lines.append(f"| {r['stage']} | {r['type']} | " + " | ".join(cells) +
                     f" | {r.get('style') or '-'} | {_f(r['seconds'], 0)} | {_f(r['eval_seconds'], 0)} |")
    total = sum((r["seconds"] or 0) + (r["eval_seconds"] or 0) for r in rows)
    lines += ["", f"Total stage and evaluation time: {total:.0f} s ({total / 60:.1f} min)"]
    return "\n".join(lines)


def write_run_summary(out: Path, header: str, rows: list[dict], extras: list[str], title: str,
                      log: Callable[[str], None] = print) -> str:
    """summary.md, summary.json and summary.png of one run."""
    from r1kit.report.stages import write_stage_plot

    text = format_summary(header, rows, extras)
    write_atomic(out / "summary.md", text + "\n")
    write_json(out / "summary.json", rows)
    write_stage_plot(out / "summary.png", [rows], extras, title)
    log(text)
    return text


# --- several seeds


def seed_runs(out: Path) -> dict[int, list[dict]]:
    """The rows of every finished seed folder (OUT/seed<N>/summary.json), by seed."""
    runs = {}
    for d in sorted(out.iterdir()) if out.is_dir() else []:
        m = SEED_DIR.match(d.name)
        if m and (d / "summary.json").is_file():
            runs[int(m.group(1))] = json.loads((d / "summary.json").read_text(encoding="utf-8"))
    return dict(sorted(runs.items()))


def spread(values: list[float | None]) -> dict | None:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": mean, "sd": sd, "min": min(xs), "max": max(xs), "n": len(xs)}


def spread_cell(st: dict | None, digits: int = 3, sign: bool = False) -> str:
    if st is None:
        return "-"
    return f"{_f(st['mean'], digits, sign)} ± {st['sd']:.{digits}f}" if st["n"] > 1 else _f(st["mean"], digits, sign)


def aggregate_rows(runs: dict[int, list[dict]]) -> list[dict]:
    """Per stage: each metric's mean, sd, min, max over the seeds, and every seed's value."""
    stages = list(dict.fromkeys(r["stage"] for rows in runs.values() for r in rows))
    out = []
    for stage in stages:
        by_seed = {s: next((r for r in rows if r["stage"] == stage), {}) for s, rows in runs.items()}
        keys = [key for _, key, *_ in COLUMNS] + ["seconds", "eval_seconds"]
        agg = {"stage": stage, "k": next((r.get("k") for r in by_seed.values() if r.get("k")), None),
               "seeds": {key: {s: r.get(key) for s, r in by_seed.items()} for key in keys}}
        agg.update({key: spread(list(agg["seeds"][key].values())) for key in keys})
        extras = sorted({x for r in by_seed.values() for x in r.get("extra_evals", {})})
        agg["extra_evals"] = {x: {key: spread([r.get("extra_evals", {}).get(x, {}).get(key) for r in by_seed.values()])
                                  for key in ("pass@1", "pass@k", "think_tokens")} for x in extras}
        out.append(agg)
    return out


def format_seed_summary(header: str, runs: dict[int, list[dict]], agg: list[dict], extras: list[str]) -> str:
    seeds = list(runs)
    k = next((a["k"] for a in agg if a.get("k")), "k")
    heads = [h.replace("@k", f"@{k}") for h, *_ in COLUMNS] + [f"{x} pass@1" for x in extras] + \
        [f"{x} pass@{k}" for x in extras]
    lines = [header, "", f"Seeds {', '.join(map(str, seeds))}: mean ± sd over the seeds (each seed's run in "
                         f"seed<N>/).", "",
             "| stage | " + " | ".join(heads) + " | stage time (s) | eval time (s) |",
             "| --- | " + " | ".join("---:" for _ in heads) + " | ---: | ---: |"]
    for a in agg:
        cells = [spread_cell(a[key], d, s) for _, key, d, s in COLUMNS]
        cells += [spread_cell(a["extra_evals"].get(x, {}).get("pass@1")) for x in extras]
        cells += [spread_cell(a["extra_evals"].get(x, {}).get("pass@k")) for x in extras]
        lines.append(f"| {a['stage']} | " + " | ".join(cells) +
                     f" | {spread_cell(a['seconds'], 0)} | {spread_cell(a['eval_seconds'], 0)} |")
    lines += ["", "pass@1 per seed:", "", "| stage | " + " | ".join(f"seed {s}" for s in seeds) + " | min |",
              "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: |"]
    for a in agg:
        if a["pass@1"] is None:
            continue
        vals = a["seeds"]["pass@1"]
        lines.append(f"| {a['stage']} | " + " | ".join(_f(vals.get(s)) for s in seeds) + f" | {_f(a['pass@1']['min'])} |")
    return "\n".join(lines)


def write_seed_summary(out: Path, header: str, extras: list[str], title: str,
                       log: Callable[[str], None] = print) -> str | None:
    """OUT/summary.{md,json,png} over every seed folder that has finished; None when there is none."""
    from r1kit.report.stages import write_stage_plot

    runs = seed_runs(out)
    if not runs:
        return None
    agg = aggregate_rows(runs)
    text = format_seed_summary(header, runs, agg, extras)
    write_atomic(out / "summary.md", text + "\n")
    write_json(out / "summary.json", {"seeds": list(runs), "stages": agg, "runs": {str(s): r for s, r in runs.items()}})
    write_stage_plot(out / "summary.png", list(runs.values()), extras, f"{title} (seeds {', '.join(map(str, runs))})")
    log(text)
    return text
