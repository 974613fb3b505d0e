"""Supervised fine-tuning (SFT) on prompt -> response pairs: the cold-start stage of the R1 pipeline.

Design decisions:
- One flat SFTConfig with TRL's SFTConfig names (max_length, per_device_train_batch_size,
  num_train_epochs, group_by_length, ...), read from YAML and overridden from the command line through
  the same builder as GRPOConfig, so unknown or ill-typed options are errors naming the option.
- The prompt is rendered with r1kit.templates.build_prompt and tokenized on its own, exactly as the
  rollout engine tokenizes prompts at generation time (tokenizer(prompt), special tokens included); the
  response is tokenized separately without special tokens, and the two id lists are concatenated. The
  prompt/response boundary is therefore exact, and the model is trained on the very prompt ids it will
  later be asked to continue. The response ends with EOS (append_eos) so the model learns to stop.
- Loss only on response tokens (labels are -100 on the prompt), summed and divided by the number of
  response tokens in the whole global batch (all micro-batches, all processes). Gradient accumulation
  and data-parallel processes thus give the same update as one big batch, with no padding bias.
- Examples longer than max_length are dropped, counted and reported, never silently truncated: a
  truncated reasoning trace would teach the model to stop mid-thought (or never to stop).
- Batches are a pure function of (seed, epoch): length-grouped (shuffle, sort by length inside
  mega-chunks of 50 batches, shuffle the batches) to cut padding, or a plain seeded shuffle. Step s
  maps to (epoch, first batch) by arithmetic, so --resume replays exactly the batches the uninterrupted
  run would have seen. Token counts, padding and the loss normaliser come from the batch plan itself,
  identical on every process, so they need no communication.
- The loop is r1kit.trainers.loop's, shared with GRPO and reward models: AdamW, a transformers scheduler,
  atomic checkpoints with optimizer, scheduler, step and random states (with LoRA they hold the
  adapter), SIGINT/SIGTERM save and stop, non-finite updates skipped. A run folder is never
  overwritten by accident: an existing run needs resume or overwrite_output_dir, and overwrite removes
  the old run's checkpoints so that the latest checkpoint is always this run's. Here: acc.no_sync
  during accumulation and `loss * world`, because DDP averages gradients.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from r1kit.core.errors import ConfigError, DataError
from r1kit.core.files import iter_jsonl, write_json
from r1kit.core.options import load_config, need, opt
from r1kit.data.sources import read_records
from r1kit.data.templates import TEMPLATES, build_prompt
from r1kit.models.options import LoraOptions, ModelOptions
from r1kit.trainers.base_config import BaseConfig
from r1kit.trainers.checkpoint import latest_checkpoint

IGNORE_INDEX = -100  # label of tokens that are not trained on (prompt and padding)
MEGA_BATCHES = 50  # length grouping sorts within chunks of this many batches


@dataclass
class SFTConfig(LoraOptions, ModelOptions, BaseConfig):
    # data
    dataset: str | None = opt(None, "prompt/response records: a .jsonl/.json/.parquet/.csv/.arrow file, a folder "
                                    "of them, a save_to_disk folder or a cached hub dataset id")
    prompt_field: str = opt("prompt", "JSONL field holding the prompt (the question)")
    response_field: str = opt("response", "JSONL field holding the target response")
    template: str = opt("plain", "how the prompt is rendered: 'plain' (as it is), 'r1zero' (the paper's template) "
                                 "or 'chat' (the model's chat template)")
    max_length: int = opt(1024, "most prompt + response tokens; longer examples are dropped (counted), not truncated")
    append_eos: bool = opt(True, "end each response with the tokenizer's EOS so the model learns to stop")
    group_by_length: bool = opt(True, "batch examples of similar length together (less padding)")
    # BaseConfig's, with SFT's defaults
    num_train_epochs: int = opt(1, "passes over the data (when max_steps is -1)")
    learning_rate: float = opt(2e-5, "AdamW learning rate")
    output_dir: str = opt("runs/sft", "folder for metrics.jsonl, sft_summary.json and checkpoints")

    def check(self) -> None:
        need(self.template in TEMPLATES, f"template={self.template!r}: choose {', '.join(TEMPLATES)}")
        need(bool(self.prompt_field) and bool(self.response_field), "prompt_field and response_field must be non-empty")
        need(self.max_length >= 2, f"max_length={self.max_length}: must be >= 2 (a prompt token and a response token)")
        need(self.num_train_epochs >= 1, f"num_train_epochs={self.num_train_epochs}: must be >= 1")
        need(self.max_steps == -1 or self.max_steps >= 1,
             f"max_steps={self.max_steps}: must be >= 1, or -1 (from num_train_epochs)")


def make_sft_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SFTConfig:
    """Config file first, then overrides (from the command line) on top; unknown keys are an error."""
    return load_config(SFTConfig, None, yaml_path, overrides)


# ---------------------------------------------------------------- data

def _assemble(prompt_ids: list[int], response_ids: list[int], eos_id: int | None, max_length: int) -> dict | None:
    """input_ids = prompt + response (+ EOS); labels hide the prompt; None when over max_length."""
    target = list(response_ids) + ([eos_id] if eos_id is not None else [])
    if len(prompt_ids) + len(target) > max_length:
        return None
    return {"input_ids": list(prompt_ids) + target, "labels": [IGNORE_INDEX] * len(prompt_ids) + target}


def tokenize_example(tokenizer, prompt_text: str, response: str, max_length: int, append_eos: bool) -> dict | None:
    """One training example: {"input_ids", "labels"} with labels -100 on every prompt token, or None
    when prompt + response (+ EOS) is longer than max_length tokens.

    `prompt_text` is the rendered prompt (build_prompt); it is tokenized as generation tokenizes it
    (special tokens such as BOS included), the response without special tokens.
    """
    prompt_ids = tokenizer(prompt_text)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return _assemble(prompt_ids, response_ids, _eos_id(tokenizer) if append_eos else None, max_length)


def _eos_id(tokenizer) -> int:
    if tokenizer.eos_token_id is None:
        raise ConfigError("append_eos: this tokenizer has no EOS token; set append_eos false")
    return tokenizer.eos_token_id


def tokenize_all(tokenizer, prompts: list[str], responses: list[str], max_length: int,
                  append_eos: bool, chunk: int = 1024) -> list[dict | None]:
    """tokenize_example over many pairs, batched through the (fast) tokenizer: same result, faster."""
    eos = _eos_id(tokenizer) if append_eos else None
    out: list[dict | None] = []
    for i in range(0, len(prompts), chunk):
        p_ids = tokenizer(prompts[i:i + chunk])["input_ids"]
        r_ids = tokenizer(responses[i:i + chunk], add_special_tokens=False)["input_ids"]
        out.extend(_assemble(p, r, eos, max_length) for p, r in zip(p_ids, r_ids))
    return out


def _text_field(rec: dict, field: str, option: str, where: str) -> str:
    value = rec.get(field)
    if value is None:
        raise DataError(f"{where}: missing field '{field}' (set {option})")
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{field}' is a {type(value).__name__}, expected a string")
    return value


def load_pairs(c: SFTConfig, records: list[dict] | None = None) -> list[tuple[str, str]]:
    """(prompt, response) pairs from `records` or the config's JSONL file; DataError names file:line
    (or records[i]) when a field is missing or not a string."""
    if records is not None:
        rows = [(f"records[{i}]", rec) for i, rec in enumerate(records)]
        if not rows:
            raise DataError("records: no examples given")
    elif c.dataset:
        rows = read_records(c.dataset)  # JSONL by line, or any file/folder/cached hub dataset by row
    else:
        raise ConfigError("dataset: give a .jsonl file of prompt/response records")
    pairs = []
    for where, rec in rows:
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected an object with fields '{c.prompt_field}' and '{c.response_field}'")
        pairs.append((_text_field(rec, c.prompt_field, "prompt_field", where),
                      _text_field(rec, c.response_field, "response_field", where)))
    return pairs


def num_targets(example: dict) -> int:
    """Tokens the loss is computed on: response positions that have a preceding token to predict them."""
    return sum(1 for label in example["labels"][1:] if label != IGNORE_INDEX)


def collate(examples: list[dict], pad_id: int) -> dict[str, Tensor]:
    """Right-padded input_ids, attention_mask and labels (-100 on padding) for one micro-batch."""
    T = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)  # [B, T]
    attention_mask = torch.zeros((len(examples), T), dtype=torch.long)  # [B, T]
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, :n] = torch.tensor(e["input_ids"])
        attention_mask[i, :n] = 1
        labels[i, :n] = torch.tensor(e["labels"])  # from lengths, not pad ids: pad may equal EOS
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# ---------------------------------------------------------------- batching

def _epoch_rng(seed: int, epoch: int) -> random.Random:
    return random.Random(seed * 1_000_003 + epoch)


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of indices with similar lengths: a seeded shuffle, then within mega-chunks of
    MEGA_BATCHES * batch_size sort by length and cut into batches, then shuffle the batch order.

    Every index appears exactly once. The batch holding the longest example comes first, so a run that
    would run out of memory does so at step 1 rather than hours in.
    """
    rng = _epoch_rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = MEGA_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start:start + mega], key=lambda i: lengths[i], reverse=True)
        batches.extend(chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]), default=0)
    if batches:
        batches[0], batches[longest] = batches[longest], batches[0]
    return batches


def shuffled_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Batches of a plain seeded shuffle (group_by_length off)."""
    order = list(range(num_examples))
    _epoch_rng(seed, epoch).shuffle(order)
    return [order[k:k + batch_size] for k in range(0, num_examples, batch_size)]


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """The micro-batches of one epoch: a pure function of its arguments (what makes resume exact)."""
    if group_by_length:
        return length_grouped_batches(lengths, batch_size, seed, epoch)
    return shuffled_batches(len(lengths), batch_size, seed, epoch)


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of padded positions when each batch is padded to its longest example."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / max(padded, 1)


# ---------------------------------------------------------------- loss

def sft_loss(logits: Tensor, labels: Tensor, num_tokens: int | Tensor | None = None) -> Tensor:
    """Next-token cross-entropy over positions whose label is not -100, summed and divided by num_tokens.

    logits: [B, T, V] from the model on input_ids [B, T]; labels: [B, T] (input ids, -100 where not
    trained). Position t predicts labels[:, t + 1]. num_tokens: the number of trained tokens in the whole
    global batch (every micro-batch, every process), so accumulated micro-batch losses add up to the
    mean over the global batch; default: the count in this micro-batch.
    """
    targets = labels[:, 1:]  # [B, T-1]
    mask = targets != IGNORE_INDEX  # [B, T-1]
    if num_tokens is None:
        num_tokens = mask.sum()
    # only the trained positions go through the float32 softmax: prompts are often most of the tokens
    picked = logits[:, :-1][mask].float()  # [n, V]
    nll = F.cross_entropy(picked, targets[mask], reduction="sum")  # []
    return nll / torch.as_tensor(num_tokens, dtype=torch.float32, device=nll.device).clamp(min=1)


# ---------------------------------------------------------------- outputs


def final_model_dir(output_dir: str | Path) -> Path:
    """The folder of the run's last complete checkpoint (the next stage's model).

    A full HF model folder, or with use_lora an adapter folder (adapter_config.json, no config.json).
    Raises ConfigError when output_dir holds no complete checkpoint.
    """
    ckpt = latest_checkpoint(output_dir)
    if ckpt is None:
        raise ConfigError(f"output_dir {output_dir}: no complete checkpoint (has the SFT run finished?)")
    return ckpt


def _data_fingerprint(examples: list[dict]) -> str:
    """Identifies the tokenized training set, so resume can refuse data that changed under it."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps(e["input_ids"]).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- training

def sft_train(config: SFTConfig, records: list[dict] | None = None, show_progress: bool = True) -> list[dict]:
    """Fine-tune config.model on prompt -> response pairs; returns the metrics of each step run here
    (also written to metrics.jsonl). `records` (dicts with prompt_field/response_field) replace the
    config's dataset file. The final checkpoint is final_model_dir(config.output_dir). The loop (resume,
    checkpoints, signals, non-finite updates) is r1kit.trainers.loop's."""
    from r1kit.models.loading import load_policy, resolve_dtype
    from r1kit.trainers.loop import LoopOptions, open_run

    c = config
    c.validate()
    t_begin = time.perf_counter()
    options = LoopOptions.from_config(c, name="SFT", max_steps=0, config={"stage": "sft", **asdict(c)})
    with open_run(options, show_progress) as run:
        data = prepare_sft_data(c, records, run.world, run.is_main)
        torch.manual_seed(c.seed)
        model = load_policy(ModelOptions.from_config(c), LoraOptions.from_config(c), run.checkpoint, resolve_dtype(c.dtype))
        model.config.use_cache = False
        model, _ = run.start(model, data.tokenizer, extra_state={"data_fingerprint": data.fingerprint},
                             max_steps=data.max_steps, warmup_steps=c.warmup(data.max_steps))
        if run.is_main and run.start_step == 0:
            (run.out_dir / "sft_summary.json").unlink(missing_ok=True)  # an overwritten run's
        history: list[dict] = []
        for step in run.steps():
            metrics = sft_step(run, c, model, data, step)
            history.append(metrics)
            run.end_step(step + 1, metrics, postfix=dict(loss=f"{metrics['loss']:.4f}",
                                                         epoch=f"{metrics['epoch']:.2f}", s=f"{metrics['step_time']:.2f}"))
        run.finish()
        if run.is_main:
            last = history[-1] if history else [{}, *iter_jsonl(run.out_dir / "metrics.jsonl")][-1]
            steps = max(data.max_steps, run.start_step)
            write_json(run.out_dir / "sft_summary.json", {
                "examples": len(data.examples), "dropped_examples": data.dropped, "steps": steps,
                "steps_per_epoch": data.steps_per_epoch, "epochs": steps / data.steps_per_epoch,
                "final_loss": last.get("loss"), "seconds": time.perf_counter() - t_begin,
                "final_checkpoint": str(latest_checkpoint(run.out_dir)), "world_size": run.world})
        run.acc.wait_for_everyone()
    return history


@dataclass
class SFTData:
    """The tokenized training set and its step plan: step s uses micro-batches [k*M, (k+1)*M) of epoch
    s // steps_per_epoch, M = processes x gradient_accumulation_steps."""

    tokenizer: Any
    examples: list[dict]
    lengths: list[int]
    targets: list[int]  # response tokens per example
    dropped: int  # examples longer than max_length
    micro_per_step: int  # M
    steps_per_epoch: int
    max_steps: int
    fingerprint: str
    plan: dict = field(default_factory=dict)  # epoch -> its batches (the current epoch only)

    def step_batches(self, c: SFTConfig, step: int) -> list[list[int]]:
        """The global batch of `step`: M micro-batches of example indices."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch not in self.plan:
            self.plan = {epoch: epoch_batches(self.lengths, c.per_device_train_batch_size, c.seed, epoch,
                                              c.group_by_length)}
        return self.plan[epoch][k * self.micro_per_step:(k + 1) * self.micro_per_step]


def prepare_sft_data(c: SFTConfig, records: list[dict] | None, world: int, is_main: bool) -> SFTData:
    """Pairs -> prompts rendered with the template -> tokenized examples, over-long ones dropped (counted)."""
    from r1kit.models.loading import load_tokenizer

    pairs = load_pairs(c, records)
    tokenizer = load_tokenizer(c.model, c.trust_remote_code)
    try:
        prompts = [build_prompt(p, tokenizer, c.template) for p, _ in pairs]
    except ValueError as e:  # template=chat with a tokenizer that has none
        raise ConfigError(str(e)) from None
    tokenized = tokenize_all(tokenizer, prompts, [r for _, r in pairs], c.max_length, c.append_eos)
    examples = [e for e in tokenized if e is not None]
    dropped = len(tokenized) - len(examples)
    if not examples:
        raise DataError(f"all {len(pairs)} examples are longer than max_length={c.max_length} tokens")
    if dropped and is_main:
        print(f"r1kit: sft: dropped {dropped} of {len(pairs)} examples longer than max_length={c.max_length} tokens")
    M = world * c.gradient_accumulation_steps
    steps_per_epoch = math.ceil(math.ceil(len(examples) / c.per_device_train_batch_size) / M)
    max_steps = c.max_steps if c.max_steps > 0 else c.num_train_epochs * steps_per_epoch
    return SFTData(tokenizer, examples, [len(e["input_ids"]) for e in examples], [num_targets(e) for e in examples],
                   dropped, M, steps_per_epoch, max_steps, _data_fingerprint(examples))


def sft_step(run, c: SFTConfig, model: torch.nn.Module, data: SFTData, step: int) -> dict:
    """One optimizer step over the step's global batch; loss on response tokens, normalised by the
    global batch's response tokens. Every process runs the same number of micro-batch slots (DDP needs
    the same collectives everywhere); a process short of data repeats a batch with weight 0."""
    t_start = time.perf_counter()
    step_batches = data.step_batches(c, step)
    slots = math.ceil(len(step_batches) / run.world)
    mine = step_batches[run.rank::run.world]
    n_targets = sum(data.targets[i] for b in step_batches for i in b)
    model.train()
    loss_sum = torch.zeros((), device=run.acc.device)  # summed on the device: no sync per micro-batch
    for s in range(slots):
        batch_idx, weight = (mine[s], 1.0) if s < len(mine) else (step_batches[0], 0.0)
        batch = {key: v.to(run.acc.device) for key, v in collate([data.examples[i] for i in batch_idx],
                                                                 data.tokenizer.pad_token_id).items()}
        sync = contextlib.nullcontext() if s == slots - 1 else run.acc.no_sync(model)
        with sync:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [b, T, V]
            loss = sft_loss(logits, batch["labels"], n_targets) * weight
            # DDP averages gradients over processes; the loss is already normalised globally
            run.acc.backward(loss * run.world)
        loss_sum += loss.detach()
    lr = run.learning_rate  # the rate this update uses
    update = run.update(~torch.isfinite(loss_sum))
    loss_sum = (run.acc.reduce(loss_sum, reduction="sum") if run.world > 1 else loss_sum).item()
    step_time = time.perf_counter() - t_start
    tokens = sum(data.lengths[i] for b in step_batches for i in b)
    return {
        "step": step + 1,
        "epoch": (step + 1) / data.steps_per_epoch,
        "loss": loss_sum,  # mean next-token NLL over the step's response tokens
        "grad_norm": update.grad_norm,
        "learning_rate": lr,
        "tokens": tokens,
        "response_tokens": n_targets,
        "tokens_per_second": tokens / step_time,
        "padding_fraction": padding_fraction(step_batches, data.lengths),
        "step_time": step_time,
        "skipped_update": update.skipped,
        "dropped_examples": data.dropped,
    }
