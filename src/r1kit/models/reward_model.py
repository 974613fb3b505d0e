"""Reward models as scorers: a one-label sequence-classification head on any model (a causal LM gets a new
head), the text it scores (prompt and response through a template), and `RewardModel.score` for
all-scenario RL. Training one is r1kit.trainers.reward_model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from r1kit.core.errors import ModelError
from r1kit.data.templates import build_prompt
from r1kit.models.loading import load_failure, load_tokenizer, resolve_model_path

RM_INFO = "r1kit_rm.json"  # in a saved reward model folder: the template it was trained with, its base model


def scored_text(prompt: str, response: str, tokenizer: PreTrainedTokenizerBase, template: str = "plain") -> str:
    """The text a reward model reads: the prompt as the policy saw it, then the response."""
    head = build_prompt(prompt, tokenizer, template)
    if head and response and not head[-1].isspace() and not response[0].isspace():
        return head + " " + response
    return head + response


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str], template: str) -> list[list[int]]:
    """Token ids of each text; a chat-template text already carries its special tokens."""
    return tokenizer(texts, add_special_tokens=template != "chat")["input_ids"]


def pad_right(seqs: list[list[int]], pad_id: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask), both [batch, longest], padded on the right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)  # [batch, seq_len]
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # [batch, seq_len]
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def forward_scores(model: torch.nn.Module, seqs: list[list[int]], pad_id: int, device: torch.device | str) -> Tensor:
    """One scalar score per sequence, [batch]: the model's own pooling (the last non-pad token for
    decoder models) of a right-padded batch."""
    ids, mask = pad_right(seqs, pad_id, device)  # [batch, seq_len]
    logits = model(input_ids=ids, attention_mask=mask).logits  # [batch, 1]
    return logits[:, 0].float()  # [batch]


def _context_length(model: PreTrainedModel) -> int | None:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


def _architectures(path: str, name: str, trust_remote_code: bool) -> tuple[Any, list[str]]:
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ModelError(f"model {name}: cannot read its config ({str(e).splitlines()[0]})") from None
    return config, list(getattr(config, "architectures", None) or [])


# what a model with a one-logit head is called in its config, and the transformers class that loads it
HEADS = {"sequence": ("ForSequenceClassification", AutoModelForSequenceClassification),
         "token": ("ForTokenClassification", AutoModelForTokenClassification)}
TRAIN_COMMAND = {"sequence": "r1kit rm", "token": "r1kit prm"}


def load_classifier(name: str, head: str = "sequence", trust_remote_code: bool = False, new_head: bool = False,
                    seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model with a one-logit classification head over whole sequences (a reward model) or over every
    token (a process reward model, a value head), and its tokenizer, pad_token_id set in the config.

    A folder that already has such a head is loaded as it is. A causal LM is accepted only with new_head
    (training): its body is kept and a head is initialised from `seed`. Anything else is a one-line
    ModelError.
    """
    suffix, auto_class = HEADS[head]
    path = resolve_model_path(name)
    config, archs = _architectures(path, name, trust_remote_code)
    is_classifier = any(a.endswith(suffix) for a in archs)
    is_causal_lm = any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs)
    if not is_classifier and not (is_causal_lm and new_head):
        what = f"a causal LM ({', '.join(archs)}) with no trained {head} head; train one with `{TRAIN_COMMAND[head]}`" \
            if is_causal_lm else f"not a {head}-classification model or a causal LM (architectures: " \
                                 f"{', '.join(archs) or 'none listed'})"
        raise ModelError(f"model {name}: {what}")
    if is_classifier and config.num_labels != 1:
        raise ModelError(f"model {name}: a classifier with {config.num_labels} labels; r1kit's heads have exactly 1")
    tokenizer = load_tokenizer(name, trust_remote_code)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialized: score.weight" warning is the intent here
    torch.manual_seed(seed)  # the new head's initialisation
    # a new token head without transformers' default dropout of 0.1: its labels (Monte Carlo shares) are
    # noisy already, and a value head scored during search must score what it was trained to score
    config.num_labels = 1
    if head == "token" and not is_classifier:
        config.classifier_dropout = 0.0
    try:
        model = auto_class.from_pretrained(path, config=config, dtype=torch.float32, local_files_only=True,
                                           trust_remote_code=trust_remote_code)
    except ValueError as e:  # no class with this head for this model type
        raise ModelError(f"model {name}: cannot be loaded as a {head} classifier ({str(e).splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - a damaged weights file (SafetensorError), a missing one (OSError)
        raise load_failure(name, "it", e) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.use_cache = False  # one forward per text: a KV cache would be built and thrown away
    if model.config.pad_token_id is None:
        # the sequence head scores the last token that is not pad_token_id; without one it cannot batch
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_sequence_classifier(name: str, trust_remote_code: bool = False, new_head: bool = False,
                             seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-label sequence-classification model (a reward model) and its tokenizer; see load_classifier."""
    return load_classifier(name, "sequence", trust_remote_code, new_head, seed)


class RewardModel:
    """A loaded reward model: `score(prompts, responses)` -> one float per pair, higher is better.

    `template` is how prompts are written before responses when score() is not told: the template the
    model was trained with (saved by train_reward_model in the folder's r1kit_rm.json), else plain.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 device: torch.device | str = "cpu", template: str = "plain") -> None:
        self.model, self.tokenizer, self.device = model.eval(), tokenizer, torch.device(device)
        self.template = template
        self.pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str], template: str | None = None, batch_size: int = 16,
              max_length: int | None = None) -> list[float]:
        """Score each (prompt, response), the prompt written with `template` (default: self.template);
        texts longer than max_length (default: the model's context) keep their last tokens, where the
        score is read."""
        template = template or self.template
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return []
        texts = [scored_text(p, r, self.tokenizer, template) for p, r in zip(prompts, responses)]
        seqs = encode_texts(self.tokenizer, texts, template)
        limit = max_length or _context_length(self.model)
        if limit:
            seqs = [s[-limit:] for s in seqs]
        # batches of similar lengths waste less compute on padding; scores return in the input order
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        scores = [0.0] * len(seqs)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            values = forward_scores(self.model, [seqs[i] for i in chunk], self.pad_id, self.device)  # [chunk]
            for i, v in zip(chunk, values.tolist()):
                scores[i] = v
        return scores


def load_reward_model(path: str, device: str | torch.device | None = None,
                      trust_remote_code: bool = False) -> RewardModel:
    """A reward model from a local sequence-classification folder (e.g. OUTPUT_DIR/model of `r1kit rm`).

    Raises ModelError (one line) for a missing folder, a causal LM without a trained head, or anything
    that is not a one-label sequence classifier.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer = load_sequence_classifier(path, trust_remote_code, new_head=False)
    info = Path(resolve_model_path(path)) / RM_INFO
    template = json.loads(info.read_text(encoding="utf-8")).get("template", "plain") if info.is_file() else "plain"
    return RewardModel(model.to(device), tokenizer, device, template)
