"""Process reward models and value heads: a one-logit token-classification head on any model, read at the
last token of each step of a solution (Math-Shepherd's place: the step's score once the step is written).

The same head is a process reward model (trained on Math-Shepherd step labels, `r1kit prm`) and the value
model of tree search (trained on the outcomes of the search's rollouts, `r1kit mcts`): both estimate the
probability that a solution continued from a step's prefix reaches the right answer. Training one is
r1kit.trainers.prm; splitting a solution into steps is r1kit.rewards.steps (the caller's, since the head
only reads positions).

Design decisions:
- A text is encoded as the prompt (tokenized as generation tokenizes it) followed by each step tokenized
  on its own, so a step's last token is known exactly and is the same in training and in scoring; the
  score of step k is sigmoid(logit) at that token.
- A solution's score from its step scores is one of AGGREGATIONS: min (Math-Shepherd's reranking),
  prod, last, mean, sum (step rewards summed into the outcome).
- The saved folder is a plain HF token-classification folder plus r1kit_prm.json: how its prompts were
  written (template, prefill) and how its solutions were split (step_mode, special_token), so a scorer
  loaded from it scores texts as it was trained on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r1kit.data.templates import build_prompt
from r1kit.models.loading import resolve_model_path
from r1kit.models.reward_model import load_classifier, pad_right

PRM_INFO = "r1kit_prm.json"
# a solution's score from its steps' scores (probabilities); a solution without steps scores 0. The names are
# models.options.PRM_AGGREGATIONS (the options check them without importing torch)
AGGREGATIONS = {
    "min": min,
    "prod": math.prod,
    "last": lambda scores: scores[-1],
    "mean": lambda scores: sum(scores) / len(scores),
    "sum": sum,
}


def aggregate(scores: list[float], how: str) -> float:
    """A solution's score from its step scores by one of AGGREGATIONS (0.0 without steps)."""
    return float(AGGREGATIONS[how](scores)) if scores else 0.0


def encode_steps(tokenizer: PreTrainedTokenizerBase, prompt_text: str, steps: list[str],
                 template: str = "plain") -> tuple[list[int], list[int]]:
    """(token ids of prompt + steps, the index of each step's last token). A step that tokenizes to
    nothing shares the previous step's last token."""
    ids = tokenizer(prompt_text, add_special_tokens=template != "chat")["input_ids"]
    ids = list(ids)
    ends = []
    for piece in tokenizer(steps, add_special_tokens=False)["input_ids"] if steps else []:
        ids += piece
        ends.append(max(len(ids) - 1, 0))
    return ids, ends


def step_logits(model: torch.nn.Module, encoded: list[tuple[list[int], list[int]]], pad_id: int,
                device: torch.device | str) -> list[Tensor]:
    """The head's logit at each step end of each encoded text: one tensor [steps] per text, with grad when
    the model is training. Texts are right-padded, so a text scores the same alone or in any batch."""
    ids, mask = pad_right([e[0] for e in encoded], pad_id, device)  # [batch, seq_len]
    logits = model(input_ids=ids, attention_mask=mask).logits[..., 0].float()  # [batch, seq_len]
    return [logits[i, torch.tensor(ends, dtype=torch.long, device=logits.device)]  # [steps]
            for i, (_, ends) in enumerate(encoded)]


def load_token_classifier(name: str, trust_remote_code: bool = False, new_head: bool = False,
                          seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-label token-classification model and its tokenizer (a causal LM gets a new head with
    new_head); see models.reward_model.load_classifier."""
    return load_classifier(name, "token", trust_remote_code, new_head, seed)


class ProcessRewardModel:
    """A loaded process reward model (or value head): `score(questions, steps)` -> each step's probability
    of leading to the right answer; `info` says how its prompts were written and its solutions split."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, device: torch.device | str = "cpu",
                 info: dict | None = None) -> None:
        self.model, self.tokenizer, self.device = model.eval(), tokenizer, torch.device(device)
        self.info = {"template": "plain", "step_mode": "lines", "special_token": "|special_token|", **(info or {})}
        self.pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else tokenizer.pad_token_id
        self.limit = getattr(model.config, "max_position_embeddings", None)

    @property
    def step_mode(self) -> str:
        return self.info["step_mode"]

    @property
    def special_token(self) -> str:
        return self.info["special_token"]

    def encode(self, question: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The ids the head reads for a question and the steps of a solution (its prefill included), and the
        step ends; a text longer than the model's context keeps its last tokens (cut steps share token 0)."""
        template = self.info["template"]
        ids, ends = encode_steps(self.tokenizer, build_prompt(question, self.tokenizer, template), steps, template)
        if self.limit and len(ids) > self.limit:
            cut = len(ids) - self.limit
            ids, ends = ids[cut:], [max(e - cut, 0) for e in ends]
        return ids, ends

    @torch.no_grad()
    def score(self, questions: list[str], steps: list[list[str]], batch_size: int = 16) -> list[list[float]]:
        """sigmoid(logit) at each step's last token, per solution, in the input order."""
        if len(questions) != len(steps):
            raise ValueError(f"score: {len(questions)} questions but {len(steps)} step lists")
        encoded = [self.encode(q, s) for q, s in zip(questions, steps)]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths batch together
        out: list[list[float]] = [[] for _ in encoded]
        for start in range(0, len(order), batch_size):
            chunk = [i for i in order[start:start + batch_size] if encoded[i][1]]
            if not chunk:
                continue
            for i, logits in zip(chunk, step_logits(self.model, [encoded[i] for i in chunk], self.pad_id, self.device)):
                out[i] = torch.sigmoid(logits).tolist()
        return out


def read_prm_info(path: str | Path) -> dict:
    """r1kit_prm.json of a saved process reward model folder ({} when it has none)."""
    info = Path(resolve_model_path(str(path))) / PRM_INFO
    return json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}


def load_process_reward_model(path: str, device: str | torch.device | None = None,
                              trust_remote_code: bool = False) -> ProcessRewardModel:
    """A process reward model from a token-classification folder (OUTPUT_DIR/model of `r1kit prm`).

    Raises ModelError (one line) for a missing folder, a causal LM without a trained head, or anything that
    is not a one-label token classifier."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer = load_token_classifier(path, trust_remote_code, new_head=False)
    return ProcessRewardModel(model.to(device), tokenizer, device, read_prm_info(path))
