"""Run by test_distributed.py (DDP) and test_fsdp.py (FSDP2), once as a plain process and once under
`accelerate launch` with 2 processes.

Completions are made a function of the prompt text alone (a rollout engine of its own), so both runs train on
exactly the same global batch however the prompts are split across processes; the real training path
(global loss normalisers, DDP or FSDP gradient averaging, no_sync micro-batches) is what is compared.

    dist_update.py MODEL OUT PER_DEVICE ACCUM LOSS_TYPE [--max_steps N] [--save_steps K] [--resume] [--dump_synced]

--dump_synced: at each weight sync the engine writes what it was handed (r1kit.weights.merged_named_weights,
the path every rollout copy is refreshed by) to OUT/synced/rank{R}-step{S}.pt, with the type and local size
of the policy's parameters, so a test can see that each process got the full weights of sharded parameters.
"""

import argparse
import hashlib
from pathlib import Path

import torch

from r1kit.models.weights import merged_named_weights
from r1kit.rollout.sampling import Rollout
from r1kit.trainers.grpo import trainer
from r1kit.trainers.grpo.config import make_config


class TextSeededEngine:
    """A rollout engine (r1kit.rollout.engines) whose completions are a function of the prompt text alone."""

    def __init__(self, dump_dir: Path | None = None):
        self.dump_dir = dump_dir

    def sync_weights(self, policy, policy_version):
        if self.dump_dir is None:
            return
        weights = {name: t.detach().clone() for name, t in merged_named_weights(policy)}
        params = list(policy.parameters())
        local = [p.to_local() if hasattr(p, "to_local") else p for p in params]  # a DTensor's own shard
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"weights": weights, "param_type": type(params[0]).__name__,
                    "local_numel": sum(t.numel() for t in local), "numel": sum(p.numel() for p in params)},
                   self.dump_dir / f"rank{rank}-step{policy_version}.pt")

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
    ap = argparse.ArgumentParser()
    for name in ("model", "out"):
        ap.add_argument(name)
    ap.add_argument("per_device", type=int)
    ap.add_argument("accum", type=int)
    ap.add_argument("loss_type")
    ap.add_argument("--max_steps", type=int, default=2)
    ap.add_argument("--save_steps", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--dump_synced", action="store_true")
    a = ap.parse_args()
    config = make_config(overrides=dict(
        model=a.model, output_dir=a.out, max_steps=a.max_steps, num_generations=4, per_device_train_batch_size=a.per_device,
        gradient_accumulation_steps=a.accum, max_completion_length=12, learning_rate=1e-2, beta=0.04,
        num_iterations=2, loss_type=a.loss_type, log_completions_steps=0, save_steps=a.save_steps, seed=5,
        resume=a.resume))
    engine = TextSeededEngine(Path(a.out) / "synced" if a.dump_synced else None)
    trainer.train(config, reward_funcs=[length_reward], show_progress=False, engine=engine)
