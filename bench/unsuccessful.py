"""The tables and plots of docs/unsuccessful.md, read from the runs of scripts/unsuccessful.sh.

    python bench/unsuccessful.py runs/unsuccessful --docs docs

Writes RUNS/results.md (every table) and RUNS/results.json, and the PNGs (into --docs, else RUNS):
unsuccessful_accuracy.png (held-out pass@1 against training wall-minutes for GRPO, GRPO + PRM in both modes and
the MCTS rounds, with the SFT model's pass@1, cons@8 and PRM best-of-8 as lines), unsuccessful_hacking.png (the
PRM's score against rule accuracy over the GRPO + PRM steps), unsuccessful_labels.png (Math-Shepherd labels of
steps that are right or wrong by arithmetic) and unsuccessful_cap.png (the children cap).

Training wall time is the sum of the runs' own step timings (GRPO: step_time; MCTS: search, value and actor
seconds), held-out evaluation excluded, so an arm is not charged for how often it was evaluated. A step's truth
(for the label quality) is this task's: every line so far is true arithmetic and ends on the right partial sum.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from r1kit.data.arithmetic import line_is_right, worked_lines
from r1kit.report.alerts import check_alerts

TOK = "|special_token|"
ARMS = {"grpo": "GRPO (rules)", "grpo_prm": "GRPO + PRM (outcome)", "grpo_prm_steps": "GRPO + PRM (step advantages)"}
CAPS = (1, 2, 4, 8)
_RESULT = re.compile(r"=\s*(-?\d+)\s*$")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def on_track(steps: list[str], question: str) -> bool:
    """Every line so far is true arithmetic ending on the right running total (this task's ground truth)."""
    totals = [int(line.rsplit("=", 1)[1]) for line in worked_lines(question) or []]
    for k, step in enumerate(steps):
        line = step.replace(TOK, "").strip()
        m = _RESULT.search(line)
        if k >= len(totals) or not m or line_is_right(line) is not True or int(m.group(1)) != totals[k]:
            return False
    return True


def label_quality(records: list[dict]) -> dict:
    """Math-Shepherd labels of the rolled-out steps against the truth: how often soft (share >= 0.5) and hard
    (share > 0) labels call a step right or wrong correctly, and the labels' means on right and wrong steps."""
    right, wrong = [], []
    for r in records:
        for k in range(len(r["steps"]) - 1):  # the last step's label is the outcome itself
            (right if on_track(r["steps"][:k + 1], r["prompt"]) else wrong).append(r["labels"][k])
    n = max(len(right) + len(wrong), 1)
    return {"steps": len(right) + len(wrong), "right_steps": len(right), "wrong_steps": len(wrong),
            "soft_agreement": (sum(v >= 0.5 for v in right) + sum(v < 0.5 for v in wrong)) / n,
            "hard_agreement": (sum(v > 0 for v in right) + sum(v == 0 for v in wrong)) / n,
            "right_labelled_below_half": sum(v < 0.5 for v in right) / max(len(right), 1),
            "wrong_labelled_above_zero": sum(v > 0 for v in wrong) / max(len(wrong), 1),
            "mean_label_right": statistics.mean(right) if right else None,
            "mean_label_wrong": statistics.mean(wrong) if wrong else None, "labels_right": right, "labels_wrong": wrong}


def prm_against_truth(scored: list[dict]) -> dict:
    """The trained PRM on its held-out records: its step verdicts (>= 0.5) against the truth."""
    hits = total = 0
    for r in scored:
        for k in range(len(r["steps"]) - 1):
            hits += (r["scores"][k] >= 0.5) == on_track(r["steps"][:k + 1], r["prompt"])
            total += 1
    return {"held_out_steps": total, "agreement_with_truth": hits / max(total, 1)}


def grpo_arm(run: Path) -> dict:
    """pass@1 against training minutes, and the PRM's course over the steps."""
    history = rows(run / "metrics.jsonl")
    train = [r for r in history if "step_time" in r]
    clock, minutes = 0.0, {0: 0.0}
    for r in train:
        clock += r["step_time"]
        minutes[r["step"]] = clock / 60
    evals = [(minutes[r["step"]], r["eval/pass@1"], r["step"]) for r in history if "eval/pass@1" in r]
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    alerts = [f"step {a.step}: {a.kind}" for a in check_alerts(history, config)]
    hacked = [r["prm/accepts_wrong"] for r in train if "prm/accepts_wrong" in r]
    return {"curve": evals, "minutes": clock / 60, "steps": len(train),
            "final_pass@1": evals[-1][1] if evals else None, "start_pass@1": evals[0][1] if evals else None,
            "train_accuracy": [r["accuracy"] for r in train], "prm_score": [r.get("rewards/prm") for r in train],
            "prm_accepts_wrong": statistics.mean(hacked) if hacked else None,
            "prm_accepts_wrong_first_last": (statistics.mean(hacked[:10]), statistics.mean(hacked[-10:])) if hacked else None,
            "alerts": alerts, "mean_length": [r["completion_length"] for r in train]}


def mcts_arm(run: Path) -> dict:
    history = rows(run / "metrics.jsonl")
    evals = [(r["train_seconds"] / 60, r["eval/pass@1"], r["round"]) for r in history if "eval/pass@1" in r]
    rounds = [r for r in history if r.get("round", 0) >= 1]
    return {"curve": evals, "minutes": rounds[-1]["train_seconds"] / 60 if rounds else 0.0, "rounds": rounds,
            "final_pass@1": evals[-1][1] if evals else None, "start_pass@1": evals[0][1] if evals else None}


def cap_runs(root: Path) -> list[dict]:
    out = []
    for k in CAPS:
        line = next((r for r in rows(root / f"cap_{k}" / "metrics.jsonl") if r.get("round") == 1), None)
        if line:
            out.append({"max_children": k, **{key: line[key] for key in line if key.startswith(("search/", "seconds/"))}})
    return out


def best_of_n(root: Path) -> dict:
    found = list((root / "eval_sft").glob("*/summary.json"))
    return json.loads(found[0].read_text()) if found else {}


def fmt(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def tables(res: dict) -> str:
    e = res["eval_settings"]
    lines = [f"## Accuracy per wall-minute (held-out pass@1, {e.get('eval_limit', '?')} problems x "
             f"{e.get('eval_num_samples', '?')} samples, temperature {e.get('eval_temperature', '?')})", "",
             "| arm | training wall time (min) | pass@1 at start | pass@1 at end | gain per minute | evaluations |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, arm in res["arms"].items():
        gain = ((arm["final_pass@1"] - arm["start_pass@1"]) / arm["minutes"]) if arm["minutes"] and arm["curve"] else None
        points = ", ".join(f"{m:.1f} min: {p:.3f}" for m, p, _ in arm["curve"])
        lines.append(f"| {name} | {arm['minutes']:.1f} | {fmt(arm['start_pass@1'])} | {fmt(arm['final_pass@1'])} | "
                     f"{fmt(gain, 4)} | {points} |")
    b = res["best_of_n"]
    if b:
        k = b["samples_per_problem"]
        lines += ["", f"## PRM best-of-{k} on the SFT model (the same {b['problems']} held-out problems, {k} samples each)", "",
                  f"| pass@1 | cons@{k} (majority) | prm@{k} (PRM's pick) | pass@{k} (oracle) | sampling + scoring (s) |",
                  "| ---: | ---: | ---: | ---: | ---: |",
                  f"| {fmt(b['pass@1'])} | {fmt(b[f'cons@{k}'])} | {fmt(b.get(f'prm@{k}'))} | {fmt(b.get(f'pass@{k}'))} "
                  f"| {b['seconds']:.0f} |"]
    q = res["labels"]
    lines += ["", f"## Step labels (Math-Shepherd, {res['label_counts'].get('num_rollouts', '?')} rollouts per step) "
                  "against the arithmetic truth", "",
              f"{q['steps']} rolled-out steps, {q['right_steps']} right and {q['wrong_steps']} wrong by arithmetic.", "",
              "| soft label (>= 0.5) agrees | hard label (> 0) agrees | right steps labelled < 0.5 | wrong steps "
              "labelled > 0 | mean label, right steps | mean label, wrong steps |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| {fmt(q['soft_agreement'])} | {fmt(q['hard_agreement'])} | {fmt(q['right_labelled_below_half'])} | "
              f"{fmt(q['wrong_labelled_above_zero'])} | {fmt(q['mean_label_right'])} | {fmt(q['mean_label_wrong'])} |"]
    p = res["prm"]
    lines += ["", "## The process reward model (held-out problems)", "",
              "| step accuracy vs labels, before | after | Brier before | after | agreement with the truth |",
              "| ---: | ---: | ---: | ---: | ---: |",
              f"| {fmt(p.get('held_out_step_accuracy_before'))} | {fmt(p.get('held_out_step_accuracy_after'))} | "
              f"{fmt(p.get('held_out_brier_before'))} | {fmt(p.get('held_out_brier_after'))} | "
              f"{fmt(p.get('agreement_with_truth'))} |"]
    cost = res["cost"]
    lines += ["", "## What the PRM costs (training wall time, evaluation excluded)", "",
              f"Step labels (`r1kit prm-data`): {fmt(cost['labels_minutes'], 1)} min for {cost['rollouts']} rollouts; "
              f"the PRM (`r1kit prm`): {fmt(cost['prm_minutes'], 1)} min.", "",
              "| arm | steps | seconds per step | training minutes | + labels and PRM |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, arm in res["arms"].items():
        if arm.get("steps"):
            extra = arm["minutes"] + (cost["labels_minutes"] or 0) + (cost["prm_minutes"] or 0) if "PRM" in name else None
            lines.append(f"| {name} | {arm['steps']} | {60 * arm['minutes'] / arm['steps']:.1f} | {arm['minutes']:.1f} "
                         f"| {fmt(extra, 1)} |")
    lines += ["", "## Reward hacking: the PRM inside GRPO", "",
              "| arm | PRM accepts a rule-wrong completion (mean over steps) | first 10 steps | last 10 steps | alerts |",
              "| --- | ---: | ---: | ---: | --- |"]
    for key in ("grpo_prm", "grpo_prm_steps"):
        arm = res["arms"].get(ARMS[key])
        if arm and arm["prm_accepts_wrong"] is not None:
            first, last = arm["prm_accepts_wrong_first_last"]
            lines.append(f"| {ARMS[key]} | {fmt(arm['prm_accepts_wrong'])} | {fmt(first)} | {fmt(last)} | "
                         f"{'; '.join(arm['alerts']) or 'none'} |")
    cap = res["cap_settings"]
    lines += ["", f"## The children cap (one round of search, {cap.get('prompts_per_round', '?')} prompts, "
                  f"{cap.get('num_simulations', '?')} simulations each)", "",
              "| max_children | found a correct leaf | chosen path correct | nodes | distinct children per expansion "
              "| value error | search seconds |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in res["caps"]:
        lines.append(f"| {c['max_children']} | {fmt(c['search/found_correct'])} | {fmt(c['search/chosen_correct'])} | "
                     f"{fmt(c['search/nodes'], 1)} | {fmt(c['search/children_per_expansion'], 2)} | "
                     f"{fmt(c['search/value_error'])} | {c['seconds/search']:.0f} |")
    m = res["arms"].get("MCTS rounds")
    if m:
        lines += ["", "## MCTS rounds", "", "| round | found a correct leaf | chosen path correct | value error | "
                  "value held-out step accuracy (before -> after) | actor solutions | held-out pass@1 |",
                  "| ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
        for r in m["rounds"]:
            lines.append(f"| {r['round']} | {fmt(r['search/found_correct'])} | {fmt(r['search/chosen_correct'])} | "
                         f"{fmt(r['search/value_error'])} | {fmt(r.get('value/held_out_step_accuracy_before'))} -> "
                         f"{fmt(r.get('value/held_out_step_accuracy_after'))} | {r['actor/solutions']} | "
                         f"{fmt(r.get('eval/pass@1'))} |")
    return "\n".join(lines) + "\n"


def plots(res: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, arm in res["arms"].items():
        if arm["curve"]:
            ax.plot([m for m, _, _ in arm["curve"]], [p for _, p, _ in arm["curve"]], marker="o", label=name)
    b = res["best_of_n"]
    if b:
        k = b["samples_per_problem"]
        for key, style, label in ((f"prm@{k}", "--", f"SFT model, PRM best-of-{k}"), (f"cons@{k}", ":", f"SFT model, majority of {k}")):
            if key in b:
                ax.axhline(b[key], linestyle=style, color="grey", label=label)
    ax.set(xlabel="training wall time (minutes, 2 CPU cores, evaluation excluded)", ylabel="held-out pass@1",
           title="Accuracy per wall-minute, sums of three numbers (SmolLM2-135M after SFT)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out / "unsuccessful_accuracy.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    prm_arms = [(n, a) for n, a in res["arms"].items() if a.get("prm_score") and a["prm_score"][0] is not None]
    if prm_arms:
        fig, axes = plt.subplots(1, len(prm_arms), figsize=(6 * len(prm_arms), 3.8), squeeze=False)
        for ax, (name, arm) in zip(axes[0], prm_arms):
            steps = range(1, len(arm["prm_score"]) + 1)
            ax.plot(steps, _smooth(arm["prm_score"]), label="PRM score (sum of step scores)")
            ax.plot(steps, _smooth(arm["train_accuracy"]), label="rule accuracy (training)")
            ax.plot([s for _, _, s in arm["curve"]], [p for _, p, _ in arm["curve"]], "o-", label="held-out pass@1")
            ax.set(xlabel="step", title=name)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "unsuccessful_hacking.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)

    q = res["labels"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = [i / 8 for i in range(10)]
    ax.hist([q["labels_right"], q["labels_wrong"]], bins=[b - 1 / 16 for b in bins], label=["right steps", "wrong steps"])
    ax.set(xlabel="Math-Shepherd label (share of 8 rollouts reaching the answer)", ylabel="steps",
           title="Automatic step labels against the arithmetic truth")
    ax.legend()
    fig.tight_layout()
    written.append(out / "unsuccessful_labels.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    if res["caps"]:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ks = [c["max_children"] for c in res["caps"]]
        ax.plot(ks, [c["search/found_correct"] for c in res["caps"]], "o-", label="found a correct leaf")
        ax.plot(ks, [c["search/chosen_correct"] for c in res["caps"]], "s-", label="chosen path correct")
        ax.plot(ks, [c["search/children_per_expansion"] / c["max_children"] for c in res["caps"]], "^:",
                label="distinct children / cap")
        ax.set(xscale="log", xticks=ks, xticklabels=[str(k) for k in ks], xlabel="max_children (the cap)",
               ylabel="share", title="The children cap, one round of search")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "unsuccessful_cap.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def _smooth(xs: list, k: int = 5) -> list[float]:
    return [statistics.mean(xs[max(0, i - k + 1):i + 1]) for i in range(len(xs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, help="the folder scripts/unsuccessful.sh wrote (runs/unsuccessful)")
    ap.add_argument("--docs", type=Path, default=None, help="where the PNGs go (default: RUNS)")
    a = ap.parse_args()
    root = a.runs
    arms = {label: grpo_arm(root / key) for key, label in ARMS.items() if (root / key / "metrics.jsonl").is_file()}
    if (root / "mcts" / "metrics.jsonl").is_file():
        arms["MCTS rounds"] = mcts_arm(root / "mcts")
    prm = json.loads((root / "prm" / "prm_summary.json").read_text()) if (root / "prm" / "prm_summary.json").is_file() else {}
    prm.update(prm_against_truth(rows(root / "prm" / "eval_scores.jsonl")))
    res = {"arms": arms, "best_of_n": best_of_n(root), "labels": label_quality(rows(root / "prm_data" / "data.jsonl")),
           "label_counts": json.loads((root / "prm_data" / "prm_data.json").read_text())
           if (root / "prm_data" / "prm_data.json").is_file() else {}, "prm": prm, "caps": cap_runs(root)}
    res["cost"] = {"labels_minutes": res["label_counts"]["seconds"] / 60 if "seconds" in res["label_counts"] else None,
                   "rollouts": res["label_counts"].get("rollouts"),
                   "prm_minutes": prm["seconds"] / 60 if "seconds" in prm else None}
    first_cap = next((root / f"cap_{k}" / "config.json" for k in CAPS if (root / f"cap_{k}" / "config.json").is_file()), None)
    res["cap_settings"] = json.loads(first_cap.read_text()) if first_cap else {}
    res["eval_settings"] = next((json.loads((root / k / "config.json").read_text()) for k in ARMS
                                 if (root / k / "config.json").is_file()), {})
    text = tables(res)
    (root / "results.md").write_text(text)
    (root / "results.json").write_text(json.dumps(res, indent=1, default=str))
    written = plots(res, a.docs or root)
    print(text)
    print("plots:", ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
