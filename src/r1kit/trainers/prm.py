"""Training a process reward model (`r1kit prm`) or a tree search's value head: a one-logit token head read
at each step's last token, fitted to step labels with binary cross-entropy.

Labels come from `r1kit prm-data` (Math-Shepherd: the share of N completions from a step's prefix that
reach the right answer) or from a tree search's rollouts (r1kit.pipeline.mcts). `label_type: soft` fits
that share itself (Math-Shepherd's soft estimation), `hard` fits 1 when any completion reached the answer
(its hard estimation).

Design decisions:
- The loss is the binary cross-entropy of sigmoid(logit) against the label, summed over every labelled
  step of a micro-batch and divided by the labelled steps of the whole global batch (every micro-batch,
  every process; counted from the step plan, so no communication), so accumulation and data-parallel
  processes give the update of one big batch, as in SFT.
- The held-out split is by problem, not by record: the solutions of one problem share their early steps,
  and a step seen in training would flatter the held-out accuracy. Held-out step accuracy (prediction and
  label on the same side of 0.5), the Brier score and the loss are measured before training (untrained
  head) and after, so a run shows what the head learned.
- The loop is r1kit.trainers.loop's (checkpoints, exact resume, SIGTERM, skipped non-finite updates); the
  order of examples is the seeded endless shuffle of r1kit.data.prompt_indices, a pure function of the step.
- OUTPUT_DIR/model is a plain HF token-classification folder with r1kit_prm.json (template, step_mode,
  special_token, label_type), written under a temporary name and renamed; prm_summary.json is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from r1kit.core.errors import DataError
from r1kit.core.files import jsonl_text, write_atomic, write_json
from r1kit.core.options import load_config, need, need_choice, opt
from r1kit.data.order import prompt_indices
from r1kit.data.sources import read_records
from r1kit.data.templates import TEMPLATES, build_prompt
from r1kit.models.process_reward_model import PRM_INFO, encode_steps, load_token_classifier, step_logits
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN
from r1kit.rewards.steps import STEP_MODES
from r1kit.trainers.base_config import BaseConfig
from r1kit.trainers.reward_model import save_model_atomic, split_indices

LABEL_TYPES = ("soft", "hard")


@dataclass
class PRMConfig(BaseConfig):
    # model
    model: str = opt("embedded", "a causal LM (gets a new token head), a token-classification folder (trained on "
                                 "further), or 'embedded'")
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    # data
    dataset: str | None = opt(None, "step labels: the data.jsonl of `r1kit prm-data` (prompt, steps, labels)")
    template: str = opt("plain", "how the prompt is written before the steps: plain, chat or r1zero (as the policy "
                                 "saw it)")
    step_mode: str = opt("lines", f"how the solutions were split into steps: {', '.join(STEP_MODES)} (saved with the "
                                  f"model, so scorers split as its labels did)")
    special_token: str = opt(DEFAULT_SPECIAL_TOKEN, "the readable format's separator (saved with the model)")
    label_type: str = opt("soft", "soft: fit the share of completions that reached the answer (Math-Shepherd SE); "
                                  "hard: 1 if any did (HE)")
    max_length: int = opt(512, "records longer than this many tokens are dropped (and counted)")
    eval_fraction: float = opt(0.1, "share of problems held out (seeded split) and scored before and after training")
    # BaseConfig's, with the process reward model's defaults
    output_dir: str = opt("runs/prm", "folder for metrics.jsonl, prm_summary.json and the model (output_dir/model)")

    def check(self) -> None:
        need_choice("template", self.template, TEMPLATES)
        need_choice("step_mode", self.step_mode, STEP_MODES)
        need_choice("label_type", self.label_type, LABEL_TYPES)
        need(bool(self.special_token.strip()), "special_token must not be blank")
        need(self.max_length >= 2, f"max_length={self.max_length}: must be >= 2")
        need(0 <= self.eval_fraction < 1, f"eval_fraction={self.eval_fraction}: must be in [0, 1)")
        need(self.num_train_epochs > 0 and math.isfinite(self.num_train_epochs),
             f"num_train_epochs={self.num_train_epochs}: must be > 0")
        need(self.max_steps == -1 or self.max_steps >= 1,
             f"max_steps={self.max_steps}: must be >= 1, or -1 for num_train_epochs")


def make_prm_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PRMConfig:
    """Config file first, then overrides (from the command line) on top; unknown keys are an error."""
    return load_config(PRMConfig, None, yaml_path, overrides)


def prm_loss(logits: Tensor, labels: Tensor, num_steps: int | Tensor | None = None) -> Tensor:
    """Binary cross-entropy of sigmoid(logits) against labels in [0, 1], summed and divided by num_steps.

    logits, labels: [n] over the labelled steps of a micro-batch; num_steps: labelled steps of the whole
    global batch (default: n). The logits form is finite for any logit."""
    total = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="sum")  # []
    n = labels.numel() if num_steps is None else num_steps
    return total / torch.as_tensor(n, dtype=torch.float32, device=total.device).clamp(min=1)


# --- data ----------------------------------------------------------------------------------------------


def step_labels(record: dict, label_type: str) -> list[float]:
    """The record's labels as trained on: the shares themselves (soft), or 1.0 where any rollout reached the
    answer (hard)."""
    return [float(v) for v in record["labels"]] if label_type == "soft" else [float(v > 0) for v in record["labels"]]


def check_record(rec: Any, where: str, step_mode: str) -> dict:
    """A step-label record, or DataError naming where it is and what is wrong."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object with prompt, steps and labels")
    for name, kind in (("prompt", str), ("steps", list), ("labels", list)):
        if not isinstance(rec.get(name), kind):
            raise DataError(f"{where}: field '{name}' missing or not a {kind.__name__}")
    steps, labels = rec["steps"], rec["labels"]
    if not steps or len(steps) != len(labels) or not all(isinstance(s, str) for s in steps):
        raise DataError(f"{where}: 'steps' must be a non-empty list of strings with one label each")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in labels):
        raise DataError(f"{where}: every label must be a number in [0, 1]")
    if rec.get("step_mode", step_mode) != step_mode:
        raise DataError(f"{where}: steps split by {rec['step_mode']!r}, but step_mode={step_mode!r}")
    return rec


def read_step_records(c: PRMConfig, records: list[dict] | None) -> list[dict]:
    if records is not None:
        rows = [(f"records[{i}]", rec) for i, rec in enumerate(records)]
    elif c.dataset:
        rows = read_records(c.dataset)
    else:
        raise DataError("dataset: give the data.jsonl of `r1kit prm-data`")
    out = [check_record(rec, where, c.step_mode) for where, rec in rows]
    if not out:
        raise DataError("no step-label records to train on")
    return out


@dataclass
class PRMData:
    train: list[tuple[list[int], list[int], list[float]]]  # (ids, step ends, labels)
    held_out: list[tuple[list[int], list[int], list[float]]]
    held_out_records: list[int]  # record index of each held-out example
    dropped: int
    local_examples: int  # examples per process per step
    steps: int
    fingerprint: str


def prepare_prm_data(c: PRMConfig, records: list[dict], tokenizer, world: int, is_main: bool) -> PRMData:
    """Encode every record (prompt, then each step), drop over-long ones (counted), split by problem."""
    encoded = []
    for rec in records:
        ids, ends = encode_steps(tokenizer, build_prompt(rec["prompt"], tokenizer, c.template), rec["steps"], c.template)
        encoded.append((ids, ends, step_labels(rec, c.label_type)))
    keep = [i for i, e in enumerate(encoded) if len(e[0]) <= c.max_length]
    dropped = len(encoded) - len(keep)
    if not keep:
        raise DataError(f"all {len(records)} records are longer than max_length={c.max_length} tokens")
    if dropped and is_main:
        print(f"r1kit: prm: dropped {dropped} of {len(records)} records longer than max_length={c.max_length} tokens")
    problems = sorted({str(records[i].get("problem_id", records[i]["prompt"])) for i in keep})
    train_p, held_p = split_indices(len(problems), c.eval_fraction, c.seed) if len(problems) > 1 else ([0], [])
    held = {problems[i] for i in held_p}
    is_held = [str(records[i].get("problem_id", records[i]["prompt"])) in held for i in keep]
    train = [encoded[i] for i, h in zip(keep, is_held) if not h]
    held_idx = [i for i, h in zip(keep, is_held) if h]
    local = c.per_device_train_batch_size * c.gradient_accumulation_steps
    steps = c.max_steps if c.max_steps > 0 else max(1, math.ceil(c.num_train_epochs * len(train) / (local * world)))
    fingerprint = hashlib.sha256(json.dumps([train, held_idx]).encode()).hexdigest()[:16]
    return PRMData(train, [encoded[i] for i in held_idx], held_idx, dropped, local, steps, fingerprint)


# --- training ------------------------------------------------------------------------------------------


def held_out_metrics(run, body: torch.nn.Module, data: PRMData, pad_id: int, batch: int) -> tuple[dict, list[list[float]]]:
    """Step accuracy, Brier score and loss on the held-out examples (sharded over processes), and each
    example's step probabilities."""
    shard = list(range(run.rank, len(data.held_out), run.world))
    was_training = body.training
    body.eval()
    probs: list[tuple[int, list[float]]] = []
    with torch.no_grad():
        for start in range(0, len(shard), batch):
            chunk = shard[start:start + batch]
            logits = step_logits(body, [data.held_out[i][:2] for i in chunk], pad_id, run.acc.device)
            probs += [(i, torch.sigmoid(z).tolist()) for i, z in zip(chunk, logits)]
    body.train(was_training)
    probs = sorted(run.gather_objects(probs))
    pairs = [(p, y) for i, ps in probs for p, y in zip(ps, data.held_out[i][2])]
    if not pairs:
        return {"step_accuracy": None, "brier": None, "loss": None, "steps": 0}, []
    eps = 1e-7
    return {"step_accuracy": sum((p >= 0.5) == (y >= 0.5) for p, y in pairs) / len(pairs),
            "brier": sum((p - y) ** 2 for p, y in pairs) / len(pairs),
            "loss": -sum(y * math.log(max(p, eps)) + (1 - y) * math.log(max(1 - p, eps)) for p, y in pairs) / len(pairs),
            "steps": len(pairs)}, [ps for _, ps in probs]


def prm_step(run, c: PRMConfig, model: torch.nn.Module, data: PRMData, pad_id: int, step: int) -> dict:
    """One optimizer step over this process's slice of the step's examples, in micro-batches; the loss is
    normalised by the labelled steps of the whole global batch."""
    t_step = time.perf_counter()
    B, accum, world = c.per_device_train_batch_size, c.gradient_accumulation_steps, run.world
    order = prompt_indices(len(data.train), step * data.local_examples * world, data.local_examples * world, c.seed)
    n_global = sum(len(data.train[i][2]) for i in order)
    mine = order[run.rank * data.local_examples:(run.rank + 1) * data.local_examples]
    totals = torch.zeros(3, device=run.acc.device)  # [loss, steps on the right side of 0.5, steps]
    for micro in range(accum):
        batch = [data.train[i] for i in mine[micro * B:(micro + 1) * B]]
        with contextlib.nullcontext() if micro == accum - 1 or world == 1 else run.acc.no_sync(model):
            logits = torch.cat(step_logits(model, [b[:2] for b in batch], pad_id, run.acc.device))  # [steps]
            labels = torch.tensor([y for b in batch for y in b[2]], device=logits.device)  # [steps]
            loss = prm_loss(logits, labels, n_global)  # []
            run.acc.backward(loss * world)  # DDP averages gradients; the loss is already normalised globally
        right = ((logits.detach() >= 0) == (labels >= 0.5)).sum().float()
        totals += torch.stack([loss.detach(), right, torch.tensor(float(len(labels)), device=run.acc.device)])
    lr = run.learning_rate
    update = run.update(~torch.isfinite(totals[0]))
    totals = run.acc.reduce(totals, reduction="sum") if world > 1 else totals
    return {"step": step + 1, "epoch": round((step + 1) * data.local_examples * world / len(data.train), 4),
            "loss": totals[0].item(), "step_accuracy": totals[1].item() / max(totals[2].item(), 1.0),
            "grad_norm": update.grad_norm, "learning_rate": lr, "skipped_update": update.skipped,
            "seconds": time.perf_counter() - t_step}


def train_prm(config: PRMConfig, records: list[dict] | None = None, show_progress: bool = True) -> dict:
    """Train a process reward model (or value head); returns prm_summary.json's contents.

    `records` (prompt, steps, labels; as `r1kit prm-data` writes them) replace the config's dataset. Writes
    OUTPUT_DIR/metrics.jsonl, checkpoints (resume, SIGTERM), OUTPUT_DIR/model (token-classification folder
    with r1kit_prm.json), OUTPUT_DIR/eval_scores.jsonl (each held-out record's step probabilities) and
    OUTPUT_DIR/prm_summary.json."""
    from r1kit.trainers.loop import LoopOptions, open_run

    c = config
    c.validate()
    t_start = time.perf_counter()
    options = LoopOptions.from_config(c, name="PRM", max_steps=0, run_markers=("metrics.jsonl", "prm_summary.json", "model"))
    with open_run(options, show_progress) as run:
        recs = read_step_records(c, records)  # checked before any model loads
        model, tokenizer = load_token_classifier(str(run.checkpoint or c.model), c.trust_remote_code,
                                                 new_head=run.checkpoint is None, seed=c.seed)
        pad_id = model.config.pad_token_id
        data = prepare_prm_data(c, recs, tokenizer, run.world, run.is_main)
        model, body = run.start(model, tokenizer, extra_state={"data_fingerprint": data.fingerprint},
                                max_steps=data.steps, warmup_steps=c.warmup(data.steps))
        if run.is_main and run.start_step == 0:
            (run.out_dir / "prm_summary.json").unlink(missing_ok=True)  # an overwritten run's
        batch = 2 * c.per_device_train_batch_size
        before = run.state.get("eval_before") or held_out_metrics(run, body, data, pad_id, batch)[0]
        run.extra_state["eval_before"] = before
        model.train()
        for step in run.steps():
            metrics = prm_step(run, c, model, data, pad_id, step)
            run.end_step(step + 1, metrics, postfix=dict(loss=f"{metrics['loss']:.3f}",
                                                         acc=f"{metrics['step_accuracy']:.2f}"))
        run.finish()
        after, probs = held_out_metrics(run, body, data, pad_id, batch)
        summary = {"model_dir": str(run.out_dir / "model"), "base_model": c.model, "label_type": c.label_type,
                   "records": len(recs), "dropped": data.dropped, "train_records": len(data.train),
                   "held_out_records": len(data.held_out), "steps": data.steps,
                   **{f"held_out_{k}_before": v for k, v in before.items()},
                   **{f"held_out_{k}_after": v for k, v in after.items()},
                   "seconds": round(time.perf_counter() - t_start, 2)}
        if run.is_main:  # while the folder is still this run's
            info = {"template": c.template, "step_mode": c.step_mode, "special_token": c.special_token,
                    "label_type": c.label_type, "base_model": c.model}
            save_model_atomic(body, tokenizer, run.out_dir / "model", info, PRM_INFO)
            scores = [{**recs[i], "scores": p} for i, p in zip(data.held_out_records, probs)]
            write_atomic(run.out_dir / "eval_scores.jsonl", jsonl_text(scores))
            write_json(run.out_dir / "prm_summary.json", summary)  # last: its presence marks a finished run
            if data.held_out:
                print(f"r1kit: process reward model held-out step accuracy {before['step_accuracy']:.3f} -> "
                      f"{after['step_accuracy']:.3f} ({after['steps']} steps); saved to {run.out_dir / 'model'}",
                      file=sys.stderr)
        run.acc.wait_for_everyone()
    return summary
