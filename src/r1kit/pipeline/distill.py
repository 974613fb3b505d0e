"""Distillation helpers: a smaller student, the teacher's data, and how close the student has come.

DeepSeek-R1's distilled models (Qwen2.5 / Llama 1.5B-70B) are plain SFT of smaller models on the 800k
samples curated with DeepSeek-R1 (the stage-3 rejection-sampled reasoning data plus non-reasoning
data, filtered the same way); no RL on the students. So distillation here is the rejection sampling
stage with the teacher as the model (r1kit.pipeline.rejection), then r1kit.trainers.sft on the student.

Design decisions:
- `make_student` builds a student from the teacher itself by keeping evenly spaced decoder layers,
  always the first and the last (DistilBERT's initialisation: a student that starts inside the
  teacher's function space learns faster than a random one). The student is a fresh model built
  from the teacher's config with num_hidden_layers (and per-layer lists such as layer_types) cut
  down, then loaded with the teacher's weights renamed layer by layer, so nothing of the teacher's
  module objects (e.g. the attention's layer_idx that indexes the KV cache) leaks into it.
- Only architectures whose decoder layers are `model.model.layers` (Llama, Qwen2, Mistral, SmolLM2,
  the tiny test models) are supported; others are a ModelError, not a half-converted model.
- The student folder is written under a temporary name and renamed, so a crash leaves no half model.
- `token_agreement` scores the student on the teacher's own greedy continuations (teacher forcing):
  the share of positions where the student's argmax next token is the teacher's. It is the quantity
  that SFT on teacher outputs drives up, measured without sampling noise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from r1kit.core.errors import ConfigError, ModelError
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.sampling import generate


def student_layers(num_teacher_layers: int, num_layers: int) -> list[int]:
    """Indices of `num_layers` evenly spaced layers of `num_teacher_layers`, first and last included."""
    if not 1 <= num_layers <= num_teacher_layers or (num_layers == 1 and num_teacher_layers > 1):
        raise ConfigError(f"num_layers={num_layers}: must be between 2 and {num_teacher_layers} "
                          f"(the teacher has {num_teacher_layers} layers; the first and last are always kept)")
    if num_layers == 1:
        return [0]
    step = (num_teacher_layers - 1) / (num_layers - 1)  # >= 1, so the rounded indices are distinct
    return [round(i * step) for i in range(num_layers)]


def make_student(model: str, out_dir: str | Path, num_layers: int, overwrite: bool = False) -> Path:
    """Write a student with `num_layers` of the teacher `model`'s decoder layers (evenly spaced, first
    and last kept) and all its other weights, plus the tokenizer, to out_dir; returns out_dir.

    ConfigError: num_layers out of range, or out_dir exists (without overwrite). ModelError: the model
    cannot be loaded or has no `model.layers`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"student folder {out_dir} already exists; choose another or pass overwrite")
    teacher = load_model(model, dtype="auto")  # keep the checkpoint's own dtype
    layers = getattr(getattr(teacher, "model", None), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ModelError(f"model {model}: a {type(teacher).__name__} has no model.layers decoder stack; "
                         f"make_student supports Llama-family models (Llama, Qwen2, Mistral, SmolLM2)")
    total = len(layers)
    keep = student_layers(total, num_layers)
    tokenizer = load_tokenizer(model)

    config = teacher.config.__class__.from_dict(teacher.config.to_dict())
    config.num_hidden_layers = num_layers
    for name in ("layer_types",):  # per-layer settings (sliding vs full attention) follow their layers
        value = getattr(config, name, None)
        if isinstance(value, list) and len(value) == total:
            setattr(config, name, [value[i] for i in keep])
    new_index = {old: new for new, old in enumerate(keep)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith("model.layers."):
            old, rest = key[len("model.layers."):].split(".", 1)
            if int(old) not in new_index:
                continue
            key = f"model.layers.{new_index[int(old)]}.{rest}"
        state[key] = tensor
    student = AutoModelForCausalLM.from_config(config, dtype=teacher.dtype)
    missing, unexpected = student.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelError(f"model {model}: student weights do not line up with the teacher's "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    student.generation_config = teacher.generation_config

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        student.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        info = {"teacher": str(model), "teacher_layers": total, "kept_layers": keep}
        (staging / "student_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out_dir


@torch.no_grad()
def token_agreement(student: PreTrainedModel, teacher: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    prompts: list[str], max_new_tokens: int, batch_size: int = 16) -> float:
    """Share of the teacher's greedy continuation tokens (its final EOS included) that the student,
    fed the same prefix, also predicts greedily. 1.0: the student reproduces the teacher's outputs."""
    if student.config.vocab_size != teacher.config.vocab_size:
        raise ModelError(f"student and teacher vocabularies differ ({student.config.vocab_size} vs "
                         f"{teacher.config.vocab_size}); they must share the tokenizer")
    device = next(student.parameters()).device
    was_training = student.training
    student.eval()
    agree, total = 0, 0
    for b in range(0, len(prompts), batch_size):
        r = generate(teacher, tokenizer, prompts[b: b + batch_size], num_generations=1,
                     max_new_tokens=max_new_tokens, temperature=0.0)
        P = r.prompt_ids.shape[1]
        ids = torch.cat([r.prompt_ids, r.completion_ids], dim=1).to(device)  # [B, P+T]
        mask = torch.cat([r.prompt_mask, r.completion_mask], dim=1).to(device)  # [B, P+T]
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, P+T]
        logits = student(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # [B, P+T, V]
        predicted = logits[:, P - 1: -1].argmax(dim=-1)  # [B, T] the student's guess for each continuation token
        target = r.completion_ids.to(device)  # [B, T]
        valid = r.completion_mask.to(device).bool()  # [B, T]
        agree += int(((predicted == target) & valid).sum())
        total += int(valid.sum())
    student.train(was_training)
    return agree / total if total else 0.0
