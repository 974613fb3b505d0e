"""Run by test_distributed.py, once as a plain process and once under `accelerate launch --num_processes 2`.

Completions are made a function of the prompt text alone (a rollout engine of its own), so both runs train on
exactly the same global batch however the prompts are split across processes; the real training path
(global loss normalisers, DDP gradient averaging, no_sync micro-batches) is what is compared.
"""

import hashlib
import sys

import torch

from r1kit import trainer
from r1kit.config import make_config
from r1kit.rollout import Rollout


class TextSeededEngine:
    """A rollout engine (r1kit.engines) whose completions are a function of the prompt text alone."""

    def sync_weights(self, policy, policy_version):
        pass

    def generate(self, tokenizer, prompts, **kw):
        return text_seeded_generate(tokenizer, prompts, **kw)


def text_seeded_generate(tokenizer, prompts, *, num_generations, max_new_tokens, **_):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    rows = []
    for p in prompts:
        g = torch.Generator().manual_seed(int(hashlib.sha256(p.encode()).hexdigest()[:12], 16))
        for _ in range(num_generations):
            n = int(torch.randint(1, max_new_tokens + 1, (1,), generator=g))
            rows.append(torch.randint(10, len(tokenizer), (n,), generator=g))
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_token_id)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = r, 1
    return Rollout(prompt_ids=enc.input_ids, prompt_mask=enc.attention_mask, completion_ids=ids, completion_mask=mask,
                   logprobs=torch.zeros(len(rows), T), completions=tokenizer.batch_decode(ids * mask, skip_special_tokens=True),
                   truncated=torch.zeros(len(rows), dtype=torch.bool))


def length_reward(completions, answers):
    return [float(len(c) % 5) for c in completions]


if __name__ == "__main__":
    model, out, per_device, accum, loss_type = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    config = make_config(overrides=dict(
        model=model, output_dir=out, max_steps=2, num_generations=4, per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accum, max_completion_length=12, learning_rate=1e-2, beta=0.04,
        num_iterations=2, loss_type=loss_type, log_completions_steps=0, save_steps=0, seed=5))
    trainer.train(config, reward_funcs=[length_reward], show_progress=False, engine=TextSeededEngine())
