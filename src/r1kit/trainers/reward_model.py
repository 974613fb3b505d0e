"""Reward models for all-scenario RL (DeepSeek-R1 stage 4): train one on preference pairs, then score with it.

General prompts have no gold answer, so R1's last RL stage scores them with reward models (helpfulness
on the final summary only, harmlessness on the whole response). This module trains such a model on
(prompt, chosen, rejected) pairs with the Bradley-Terry loss and loads any local sequence-classification
folder to score (prompt, response) texts.

Design decisions:
- A reward model is an HF AutoModelForSequenceClassification with one label. A causal LM is turned into
  one by loading it with num_labels=1: the transformer body is kept and a score head is newly
  initialised (seeded). The model scores the last non-pad token of the text, so pad_token_id is always
  set in its config; batches are right-padded, so a real token never sits behind padding and a text
  scores the same alone or in any batch.
- The scored text is build_prompt(prompt, tokenizer, template) + response, the same function in training
  and in scoring. One space joins the two when neither side has whitespace at the seam (as build_prompt
  puts a space before a prefill), so the plain template does not score "say hi to Bobhi Bob". The
  template a model was trained with is saved in its folder (r1kit_rm.json) and is score()'s default.
- Training runs in r1kit.trainers.loop's loop, as GRPO and SFT do (checkpoints, exact resume, SIGTERM, skipped
  non-finite updates): each process takes its slice of a step's pairs, the loss is a per-micro-batch
  mean over equal-sized micro-batches, so the update equals the single-process one; the pair order is
  the seeded endless shuffle of r1kit.data.prompt_indices, a pure function of the step.
- The held-out split (eval_fraction, seeded) is scored before training (untrained head, about chance)
  and after, so a run shows that the model learned the preference rather than asserting it.
- The saved model is a plain HF folder (model + tokenizer), written under a temporary name and renamed,
  so output_dir/model is never half-written; rm_summary.json is written the same way, last.
- toy_preferences() is a separable synthetic preference set over the tiny model's characters (polite,
  relevant replies beat rude, irrelevant or empty-ish ones) for the tiny pipeline and the tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from r1kit.core.errors import DataError, TrainingError
from r1kit.core.files import jsonl_text, write_atomic, write_failure, write_json
from r1kit.core.options import load_config, need, opt
from r1kit.data.order import prompt_indices
from r1kit.data.preferences import check_pair, read_preference_pairs, toy_preferences
from r1kit.data.templates import TEMPLATES
from r1kit.models.reward_model import RM_INFO, encode_texts, forward_scores, load_sequence_classifier, scored_text
from r1kit.trainers.base_config import BaseConfig


@dataclass
class RMConfig(BaseConfig):
    # model
    model: str = opt("embedded", "local causal-LM or sequence-classification folder, or 'embedded' "
                                 "(SmolLM2-135M-Instruct); a causal LM gets a new score head")
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    # data
    dataset: str = opt("toy", "a .jsonl of preference pairs (prompt, chosen, rejected) or 'toy' (r1kit's synthetic "
                              "politeness set)")
    prompt_field: str = opt("prompt", "JSONL field holding the prompt")
    chosen_field: str = opt("chosen", "JSONL field holding the preferred response")
    rejected_field: str = opt("rejected", "JSONL field holding the dispreferred response")
    toy_examples: int = opt(2000, "dataset=toy: number of synthetic pairs")
    template: str = opt("plain", "how the prompt is written before the response: plain, chat or r1zero (as for GRPO)")
    max_length: int = opt(512, "pairs whose chosen or rejected text is longer than this many tokens are dropped "
                               "(and counted)")
    eval_fraction: float = opt(0.1, "fraction of pairs held out (seeded split) and scored before and after training")
    center_rewards_coefficient: float | None = opt(None, "TRL's centering term: adds coef * mean((r_chosen + "
                                                         "r_rejected)^2), keeping scores near 0")
    # BaseConfig's, with the reward model's defaults
    output_dir: str = opt("runs/rm", "folder for metrics.jsonl, rm_summary.json and the trained model "
                                     "(output_dir/model)")

    def check(self) -> None:
        need(self.template in TEMPLATES, f"template={self.template!r}: choose {', '.join(TEMPLATES)}")
        need(self.max_length >= 2, f"max_length={self.max_length}: must be >= 2")
        need(0 <= self.eval_fraction < 1, f"eval_fraction={self.eval_fraction}: must be in [0, 1)")
        need(self.toy_examples >= 2, f"toy_examples={self.toy_examples}: must be >= 2")
        need(self.num_train_epochs > 0 and math.isfinite(self.num_train_epochs),
             f"num_train_epochs={self.num_train_epochs}: must be > 0")
        need(self.max_steps == -1 or self.max_steps >= 1,
             f"max_steps={self.max_steps}: must be >= 1, or -1 for num_train_epochs")
        need(self.center_rewards_coefficient is None or self.center_rewards_coefficient >= 0,
             "center_rewards_coefficient must be >= 0 (or null)")
        need(bool(self.dataset), "dataset: give a .jsonl of prompt/chosen/rejected pairs or 'toy'")
        for name in ("prompt_field", "chosen_field", "rejected_field"):
            need(bool(getattr(self, name)), f"{name} must not be empty")


def make_rm_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RMConfig:
    """Config file first, then overrides (from the command line) on top; unknown keys are an error."""
    return load_config(RMConfig, None, yaml_path, overrides)


def bradley_terry_loss(chosen_scores: Tensor, rejected_scores: Tensor,
                       center_rewards_coefficient: float | None = None) -> Tensor:
    """-log sigmoid(r_chosen - r_rejected), averaged over pairs; optionally plus TRL's centering term.

    logsigmoid, not log(sigmoid(...)): it stays finite for large negative margins.
    """
    margin = chosen_scores.float() - rejected_scores.float()  # [pairs]
    loss = -F.logsigmoid(margin).mean()  # []
    if center_rewards_coefficient:
        # pulls the scores of each pair towards 0 without changing which one wins
        loss = loss + center_rewards_coefficient * ((chosen_scores.float() + rejected_scores.float()) ** 2).mean()
    return loss


# --- texts and batches ---------------------------------------------------------------------------------


# --- loading -------------------------------------------------------------------------------------------


# --- data ----------------------------------------------------------------------------------------------


def split_indices(n: int, eval_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) indices: a seeded shuffle, the held-out part at least 1 when eval_fraction > 0."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = 0 if eval_fraction <= 0 else min(n - 1, max(1, round(n * eval_fraction)))
    return sorted(order[n_eval:]), sorted(order[:n_eval])


# --- training ------------------------------------------------------------------------------------------


def save_model_atomic(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path,
                      info: dict, info_name: str = RM_INFO) -> None:
    """save_pretrained (and `info` as `info_name`, r1kit_rm.json) into a temporary folder, then rename it to
    `target` (replacing an old one)."""
    from r1kit.trainers.checkpoint import fsync_tree

    tmp, old = target.with_name(f".tmp-{target.name}"), target.with_name(f".old-{target.name}")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / info_name, info)
        fsync_tree(tmp)
    except Exception as e:  # noqa: BLE001 - safetensors reports a full disk as its own error
        shutil.rmtree(tmp, ignore_errors=True)
        raise TrainingError(f"could not write the reward model to {target}: {write_failure(e, target.parent)}") from None
    if target.exists():
        os.replace(target, old)  # a folder cannot be replaced while it has files
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate(model: torch.nn.Module, pairs: list[tuple[list[int], list[int]]], pad_id: int,
              device: torch.device, batch_size: int) -> tuple[dict, list[tuple[float, float]]]:
    """Held-out accuracy (chosen scored strictly higher) and mean margin, with each pair's two scores."""
    was_training = model.training
    model.eval()
    scores: list[tuple[float, float]] = []
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start:start + batch_size]
            values = forward_scores(model, [c for c, _ in chunk] + [r for _, r in chunk], pad_id, device)  # [2 * chunk]
            scores += list(zip(values[: len(chunk)].tolist(), values[len(chunk):].tolist()))
    model.train(was_training)
    if not scores:
        return {"accuracy": None, "margin": None}, scores
    return {"accuracy": sum(c > r for c, r in scores) / len(scores),
            "margin": sum(c - r for c, r in scores) / len(scores)}, scores


def train_reward_model(config: RMConfig, pairs: list[dict] | None = None, show_progress: bool = True) -> dict:
    """Train a Bradley-Terry reward model; returns rm_summary.json's contents plus "eval_records"
    (each held-out pair with its scores after training, also in eval_scores.jsonl).

    `pairs` (dicts with the config's prompt/chosen/rejected fields) replace the config's dataset.
    Writes OUTPUT_DIR/metrics.jsonl (one line per optimizer step), checkpoints (resume, SIGTERM), then
    OUTPUT_DIR/model (a plain HF sequence-classification folder for load_reward_model) and
    OUTPUT_DIR/rm_summary.json. The loop is r1kit.trainers.loop's, shared with GRPO and SFT.
    Raises ConfigError for an existing run (unless resume or overwrite_output_dir), DataError for bad
    pairs, ModelError for a model that cannot become a reward model.
    """
    from r1kit.trainers.loop import LoopOptions, open_run

    c = config
    t_start = time.perf_counter()
    options = LoopOptions.from_config(c, name="RM", max_steps=0, run_markers=("metrics.jsonl", "rm_summary.json", "model"))
    with open_run(options, show_progress) as run:
        records = _read_pairs(c, pairs)  # checked before any model loads
        model, tokenizer = load_sequence_classifier(str(run.checkpoint or c.model), c.trust_remote_code,
                                                    new_head=run.checkpoint is None, seed=c.seed)
        data = prepare_rm_data(c, records, tokenizer, model.config.pad_token_id, run.world, run.is_main)
        model, body = run.start(model, tokenizer, extra_state={"data_fingerprint": data.fingerprint},
                                max_steps=data.steps, warmup_steps=c.warmup(data.steps))
        if run.is_main and run.start_step == 0:
            (run.out_dir / "rm_summary.json").unlink(missing_ok=True)  # an overwritten run's
        # the untrained head's held-out scores, kept in each checkpoint so a resumed run reports them
        before = run.state.get("eval_before") or held_out_scores(run, body, data)[0]
        run.extra_state["eval_before"] = before
        model.train()
        for step in run.steps():
            metrics = rm_step(run, c, model, data, step)
            run.end_step(step + 1, metrics, postfix=dict(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['accuracy']:.2f}"))
        run.finish()
        after, after_scores = held_out_scores(run, body, data)
        eval_records = [{**records[data.keep[i]], "chosen_score": cs, "rejected_score": rs}
                        for i, (cs, rs) in zip(data.eval_idx, after_scores)]
        summary = {
            "model_dir": str(run.out_dir / "model"), "base_model": c.model, "template": c.template,
            "pairs": len(records), "dropped": data.dropped, "train_pairs": len(data.train_pairs),
            "eval_pairs": len(data.eval_pairs), "steps": data.steps, "eval_accuracy_before": before["accuracy"],
            "eval_margin_before": before["margin"], "eval_accuracy_after": after["accuracy"],
            "eval_margin_after": after["margin"], "seconds": round(time.perf_counter() - t_start, 2),
        }
        if run.is_main:  # while the folder is still this run's
            save_model_atomic(body, tokenizer, run.out_dir / "model", {"template": c.template, "base_model": c.model,
                                                                        "max_length": c.max_length})
            write_atomic(run.out_dir / "eval_scores.jsonl", jsonl_text(eval_records))
            write_json(run.out_dir / "rm_summary.json", summary)  # last: its presence marks a finished run
            if data.eval_pairs:
                print(f"r1kit: reward model held-out accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f} "
                      f"({len(data.eval_pairs)} pairs); saved to {run.out_dir / 'model'}", file=sys.stderr)
        run.acc.wait_for_everyone()
    return {**summary, "eval_records": eval_records}


def _read_pairs(c: RMConfig, pairs: list[dict] | None) -> list[dict]:
    fields = (c.prompt_field, c.chosen_field, c.rejected_field)
    if pairs is not None:
        records = [check_pair(rec, f"pairs[{i}]", fields) for i, rec in enumerate(pairs)]
    elif c.dataset == "toy":
        records = toy_preferences(c.toy_examples, c.seed)
    else:
        records = read_preference_pairs(c.dataset, *fields)
    if not records:
        raise DataError("no preference pairs to train on")
    return records


@dataclass
class RMData:
    """Tokenized pairs, the seeded train/held-out split and the step plan."""

    train_pairs: list[tuple[list[int], list[int]]]
    eval_pairs: list[tuple[list[int], list[int]]]
    keep: list[int]  # indices of the records that fit in max_length
    eval_idx: list[int]  # indices into keep
    dropped: int
    pad_id: int
    local_pairs: int  # pairs per process per step
    steps: int
    fingerprint: str
    eval_batch: int  # pairs per held-out forward


def prepare_rm_data(c: RMConfig, records: list[dict], tokenizer: PreTrainedTokenizerBase, pad_id: int, world: int,
                    is_main: bool) -> RMData:
    """Tokenise both sides of every pair, drop over-long pairs (counted), split, plan the steps."""
    chosen = encode_texts(tokenizer, [scored_text(r["prompt"], r["chosen"], tokenizer, c.template) for r in records], c.template)
    rejected = encode_texts(tokenizer, [scored_text(r["prompt"], r["rejected"], tokenizer, c.template) for r in records], c.template)
    keep = [i for i in range(len(records)) if len(chosen[i]) <= c.max_length and len(rejected[i]) <= c.max_length]
    dropped = len(records) - len(keep)
    if len(keep) < 2:
        raise DataError(f"{len(keep)} of {len(records)} pairs fit in max_length={c.max_length} tokens; need at least 2")
    if dropped and is_main:
        print(f"r1kit: dropped {dropped} of {len(records)} pairs longer than max_length={c.max_length} tokens")
    train_idx, eval_idx = split_indices(len(keep), c.eval_fraction, c.seed)
    train_pairs = [(chosen[keep[i]], rejected[keep[i]]) for i in train_idx]
    eval_pairs = [(chosen[keep[i]], rejected[keep[i]]) for i in eval_idx]
    local_pairs = c.per_device_train_batch_size * c.gradient_accumulation_steps
    steps = c.max_steps if c.max_steps > 0 else max(1, math.ceil(c.num_train_epochs * len(train_pairs) / (local_pairs * world)))
    fingerprint = hashlib.sha256(json.dumps([train_pairs, eval_pairs]).encode()).hexdigest()[:16]
    return RMData(train_pairs, eval_pairs, keep, eval_idx, dropped, pad_id, local_pairs, steps, fingerprint,
                  2 * c.per_device_train_batch_size)


def held_out_scores(run, body: torch.nn.Module, data: RMData) -> tuple[dict, list[tuple[float, float]]]:
    """Held-out accuracy and margin over all processes (each scores its shard), and each pair's scores."""
    shard = list(range(run.rank, len(data.eval_pairs), run.world))
    _, scores = _evaluate(body, [data.eval_pairs[i] for i in shard], data.pad_id, run.acc.device, data.eval_batch)
    all_scores = [s for _, s in sorted(run.gather_objects(list(zip(shard, scores))))]
    if not all_scores:
        return {"accuracy": None, "margin": None}, []
    return {"accuracy": sum(a > b for a, b in all_scores) / len(all_scores),
            "margin": sum(a - b for a, b in all_scores) / len(all_scores)}, all_scores


def rm_step(run, c: RMConfig, model: torch.nn.Module, data: RMData, step: int) -> dict:
    """One optimizer step: this process's slice of the step's pairs, in micro-batches; the loss is a
    mean over equal-sized micro-batches, so the update equals the single-process one."""
    t_step = time.perf_counter()
    B, accum = c.per_device_train_batch_size, c.gradient_accumulation_steps
    order = prompt_indices(len(data.train_pairs), step * data.local_pairs * run.world, data.local_pairs * run.world, c.seed)
    mine = order[run.rank * data.local_pairs:(run.rank + 1) * data.local_pairs]
    totals = torch.zeros(4, device=run.acc.device)  # [loss, correct, margin sum, pairs]
    for micro in range(accum):
        batch = [data.train_pairs[i] for i in mine[micro * B:(micro + 1) * B]]
        last = micro == accum - 1
        # gradients are all-reduced only on the last micro-batch of a step
        with contextlib.nullcontext() if last or run.world == 1 else run.acc.no_sync(model):
            scores = forward_scores(model, [ch for ch, _ in batch] + [rj for _, rj in batch], data.pad_id, run.acc.device)  # [2 * pairs]
            chosen_scores, rejected_scores = scores[: len(batch)], scores[len(batch):]  # [pairs], [pairs]
            loss = bradley_terry_loss(chosen_scores, rejected_scores, c.center_rewards_coefficient)  # []
            run.acc.backward(loss / accum)
        margin = (chosen_scores - rejected_scores).detach()  # [pairs]
        totals += torch.stack([loss.detach() / accum, (margin > 0).sum().float(), margin.sum(),
                               torch.tensor(float(len(batch)), device=run.acc.device)])
    lr = run.learning_rate  # the rate this update uses
    update = run.update(~torch.isfinite(totals[0]))
    totals = run.acc.reduce(totals, reduction="sum") if run.world > 1 else totals
    return {"step": step + 1, "epoch": round((step + 1) * data.local_pairs * run.world / len(data.train_pairs), 4),
            "loss": totals[0].item() / run.world, "accuracy": totals[1].item() / totals[3].item(),
            "margin": totals[2].item() / totals[3].item(), "grad_norm": update.grad_norm,
            "learning_rate": lr, "skipped_update": update.skipped, "seconds": time.perf_counter() - t_step}


# --- a toy preference set ------------------------------------------------------------------------------
