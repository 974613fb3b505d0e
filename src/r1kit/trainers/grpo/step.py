"""The GRPO step: prompts -> rollout -> rewards -> advantages -> frozen log-probs -> policy update ->
metrics and records, one named function per arrow, each phase timed (timing/<phase> in the metrics).

Data-parallel: each process owns whole groups (its prompts and their G completions), so advantages need
no communication; the loss is normalised by whole-batch counts (all processes, all micro-batches), so the
update equals the single-process update on the same global batch. pi_old: with num_iterations == 1 the
policy that sampled is the policy being updated, so pi_old = pi_theta.detach() exactly (ratio 1, no extra
forward); with num_iterations > 1 it is computed once, before the first update, and kept for all of them.
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import Tensor

from r1kit.algorithms.advantages import advantages_for
from r1kit.algorithms.corrections import mask_truncated_completions, rollout_importance_weights
from r1kit.algorithms.logprobs import completion_logprobs
from r1kit.algorithms.losses import grpo_loss, loss_options, top_entropy_threshold
from r1kit.core.timing import timer
from r1kit.data.order import prompt_indices
from r1kit.data.problems import Problem
from r1kit.data.templates import build_prompt
from r1kit.rollout.sampling import Rollout, cat_rollouts, take_groups
from r1kit.trainers.grpo.metrics import UpdateStats, eval_line, run_eval, step_metrics, write_step_records
from r1kit.trainers.grpo.scoring import (
    Scores,
    general_prompts_per_step,
    pick_scores,
    score_rollout,
    step_advantages,
    stop_on_failing_rewards,
)
from r1kit.trainers.grpo.setup import GRPOSetup, sampling_seed


def grpo_step(s: GRPOSetup, step: int) -> dict:
    """One GRPO step (0-based `step`): returns its metrics, with the wall time of each phase under timing/;
    samples and reward failures are written."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    batch, rollout, scores, sampling = sample_batch(s, step, times)  # phases "rollout" and "rewards"
    stop_on_failing_rewards(s, scores)
    with timer(times, "advantages"):
        rewards = torch.tensor(scores.totals, dtype=torch.float32)  # [N]
        advantages, zero_std = advantages_for(s.algo, rewards, s.G)  # [N], [N/G]
        advantages = step_advantages(s, scores, rollout, advantages).to(s.run.acc.device)  # [N], or [N, T] (prm_mode=steps)
    with timer(times, "logprobs"):  # pi_old (when it differs from the policy) and pi_ref
        old_lp, ref_lp, entropy_threshold = frozen_logprobs(s, rollout)
    with timer(times, "update"):
        update = policy_update(s, rollout, advantages, old_lp, ref_lp, entropy_threshold)
    metrics = step_metrics(s, step, rollout, scores, zero_std, update, time.perf_counter() - start, times["rollout"])
    metrics.update(sampling)
    if s.rollouts is not None:
        metrics.update(s.rollouts.metrics())
    if s.c.eval_steps and ((step + 1) % s.c.eval_steps == 0 or step + 1 == s.run.o.max_steps):
        with timer(times, "eval"):
            metrics.update(run_eval(s, step + 1))
        s.run.write(eval_line(metrics, step + 1))
    with timer(times, "records"):
        write_step_records(s, step, batch, rollout, scores, advantages)
    metrics.update({f"timing/{name}": seconds for name, seconds in times.items()})
    return metrics


def select_prompts(s: GRPOSetup, step: int, round_: int = 0) -> list[Problem]:
    """This process's slice of the step's global batch of prompts. Resampling rounds of dynamic sampling
    (round_ > 0) draw from their own seeded order, so a resumed run draws the same prompts."""
    c, rank, world, n = s.c, s.run.rank, s.run.world, s.prompts_local
    seed = c.seed + 7919 * round_
    if s.general:  # all-scenario RL: a fixed share of each step's prompts are general prompts
        n_gen = general_prompts_per_step(n, c.general_fraction)
        n_rea = n - n_gen
        idx = prompt_indices(len(s.reasoning), (step * world + rank) * n_rea, n_rea, seed)
        idx_gen = prompt_indices(len(s.general), (step * world + rank) * n_gen, n_gen, seed + 1)
        return [s.reasoning[i] for i in idx] + [s.general[i] for i in idx_gen]
    idx = prompt_indices(len(s.reasoning), step * n * world + rank * n, n, seed)
    return [s.reasoning[i] for i in idx]


def generate_rollout(s: GRPOSetup, batch: list[Problem], step: int, round_: int = 0) -> Rollout:
    """G completions per prompt from an engine that holds the policy's current weights, or with
    async_rollout the rollout generated one step ahead (trainers/grpo/rollouts.py)."""
    if s.rollouts is not None and round_ == 0:
        return s.rollouts.take(step, batch).to(s.run.acc.device)
    prompts, kw = rollout_request(s, batch, step, round_)
    if round_ == 0:
        s.engine.sync_weights(s.policy, step)
    return s.engine.generate(s.tokenizer, prompts, **kw).to(s.run.acc.device)


def rollout_request(s: GRPOSetup, batch: list[Problem], step: int, round_: int = 0) -> tuple[list[str], dict]:
    """(prompts, the engine's generate keywords) of a step's rollout: a pure function of the step."""
    c = s.c
    prompts = [build_prompt(e.question, s.tokenizer, c.template, c.prefill, messages=e.messages,
                            system_prompt=c.system_prompt, examples=s.examples) for e in batch]
    return prompts, dict(seed=sampling_seed(c.seed + 7919 * round_, step, s.run.rank), num_generations=s.G,
                         max_new_tokens=c.max_completion_length, temperature=c.temperature, top_p=c.top_p,
                         stop_strings=tuple(c.stop_strings), max_prompt_length=c.max_prompt_length,
                         ignore_eos=c.ignore_eos)


def sample_batch(s: GRPOSetup, step: int, times: dict[str, float]) -> tuple[list[Problem], Rollout, Scores, dict]:
    """The step's prompts, their rollout and its scores, plus sampling metrics; `times` gets the phases
    "rollout" and "rewards".

    With dynamic_sampling (DAPO), groups whose rewards are all equal carry no policy gradient: they are
    dropped and more prompts are drawn, up to max_resample_rounds extra rounds, until the step has its
    full number of informative groups. At the limit the step is filled up with dropped groups (they add
    only the KL term), so every step keeps its batch shape, which data-parallel processes need."""
    want = s.prompts_local
    rounds = []  # (examples, rollout, scores, informative group indices)
    for round_ in range(s.c.max_resample_rounds + 1 if s.c.dynamic_sampling else 1):
        batch = select_prompts(s, step, round_)
        with timer(times, "rollout"):
            rollout = generate_rollout(s, batch, step, round_)
        with timer(times, "rewards"):
            scores = score_rollout(s, batch, rollout, step)
        grouped = torch.tensor(scores.totals).view(-1, s.G)  # [B, G]
        informative = (grouped != grouped[:, :1]).any(dim=1).nonzero().flatten().tolist()
        rounds.append((batch, rollout, scores, informative))
        if sum(len(r[3]) for r in rounds) >= want:
            break
    if not s.c.dynamic_sampling:
        return batch, rollout, scores, {}
    chosen = [(k, g) for k, r in enumerate(rounds) for g in r[3]][:want]
    filled = want - len(chosen)
    if filled:  # the limit was reached: fill up with the first round's zero-spread groups
        chosen += [(0, g) for g in range(len(rounds[0][0])) if g not in rounds[0][3]][:filled]
        s.run.write(f"r1kit: step {step + 1}: dynamic_sampling: {filled} of {want} groups have no reward spread after "
                    f"{len(rounds) - 1} extra rounds (max_resample_rounds={s.c.max_resample_rounds}); kept")
    parts = [[g for k2, g in chosen if k2 == k] for k in range(len(rounds))]
    G = s.G
    batch = [rounds[k][0][g] for k, gs in enumerate(parts) for g in gs]
    rollout = cat_rollouts([take_groups(rounds[k][1], gs) for k, gs in enumerate(parts) if gs], s.tokenizer.pad_token_id)
    scores = pick_scores([(rounds[k][2], [g * G + j for g in gs for j in range(G)]) for k, gs in enumerate(parts) if gs])
    drawn = sum(len(r[0]) for r in rounds)
    return batch, rollout.to(s.run.acc.device), scores, {
        **s.run.reduce_sums({"dynamic_sampling/prompts_drawn": drawn,
                             "dynamic_sampling/groups_dropped": drawn - want + filled,
                             "dynamic_sampling/rounds": len(rounds),
                             "dynamic_sampling/filled_groups": filled}),
    }


def micro_batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def rollout_logprobs(model, rollout: Rollout, rows: slice, temperature: float, **kw) -> tuple[Tensor, Tensor | None]:
    """Completion log-probs [n, T] (and entropies) of rollout rows `rows`, each prompt of the micro-batch
    computed once. Only the columns up to the micro-batch's longest completion are computed: the rest
    are padding in every row, and causal attention makes the earlier columns independent of them."""
    G, mask = rollout.num_generations, rollout.completion_mask
    first, last = rows.start // G, (rows.stop - 1) // G + 1
    to_prompt = torch.arange(rows.start, rows.stop, device=mask.device) // G - first  # [n]
    width = max(int(mask[rows].sum(dim=1).max()), 1)
    lp, ent = completion_logprobs(model, rollout.prompt_ids[first:last], rollout.prompt_mask[first:last],
                                  rollout.completion_ids[rows, :width], mask[rows, :width], to_prompt, temperature,
                                  **kw)  # [n, width]
    pad = (0, mask.shape[1] - width)  # back to [n, T]; padded log-probs are 0, as on any padding
    return torch.nn.functional.pad(lp, pad), None if ent is None else torch.nn.functional.pad(ent, pad)


def frozen_logprobs(s: GRPOSetup, rollout: Rollout) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(log pi_old [N, T], or None when pi_old is the policy itself; log pi_ref [N, T] or None; the entropy
    threshold of top_entropy_quantile over the whole batch, or None), no grad."""
    c = s.c
    chunks = micro_batches(len(rollout.completions), c.per_device_train_batch_size)
    old_lp = ref_lp = threshold = None
    with torch.no_grad():
        if c.num_iterations > 1 or c.top_entropy_quantile < 1:
            parts = [rollout_logprobs(s.policy, rollout, r, c.temperature, with_entropy=c.top_entropy_quantile < 1,
                                      chunk_tokens=c.logprob_chunk_tokens) for r in chunks]
            old_lp = torch.cat([lp for lp, _ in parts]) if c.num_iterations > 1 else None  # [N, T]
            if c.top_entropy_quantile < 1:  # one threshold for every micro-batch and process
                ent = torch.cat([e for _, e in parts])  # [N, T]
                values = torch.tensor(s.run.gather_objects(ent[rollout.completion_mask.bool()].tolist()))
                threshold = top_entropy_threshold(values, torch.ones_like(values), c.top_entropy_quantile)
        if c.beta > 0:
            ctx = s.policy.disable_adapter() if c.use_lora else contextlib.nullcontext()
            with ctx:
                ref = s.policy if c.use_lora else s.ref_model
                ref_lp = torch.cat([rollout_logprobs(ref, rollout, r, c.temperature, chunk_tokens=c.logprob_chunk_tokens)[0]
                                    for r in chunks])  # [N, T]
    return old_lp, ref_lp, threshold


def policy_update(s: GRPOSetup, rollout: Rollout, advantages: Tensor, old_lp: Tensor | None,
                  ref_lp: Tensor | None, entropy_threshold: Tensor | None = None) -> UpdateStats:
    """mu = num_iterations optimizer updates on this batch, each over all micro-batches."""
    c, run = s.c, s.run
    mask = rollout.completion_mask  # [N, T]
    # the loss's tokens: without the truncated completions when asked (DAPO), else every completion token
    loss_mask = mask_truncated_completions(mask, rollout.truncated) if c.mask_truncated_completions else mask  # [N, T]
    chunks = micro_batches(len(rollout.completions), c.per_device_train_batch_size)
    n_tokens = run.acc.reduce(loss_mask.sum().float(), reduction="sum").item()
    n_local = loss_mask.sum().float()
    options = loss_options(s.algo, max_completion_length=c.max_completion_length)
    every_entropy = c.top_entropy_quantile < 1 or c.entropy_coef > 0
    s.model.train()
    sums = dict.fromkeys(("loss", "kl", "clipped_low", "clipped_high", "tokens", "entropy", "is_weight",
                          "logprob_gap"), 0.0)
    grad_norms, skipped = [], 0
    for it in range(c.num_iterations):
        loss_nonfinite = torch.zeros((), dtype=torch.bool, device=run.acc.device)
        for k, rows in enumerate(chunks):
            sync = contextlib.nullcontext() if k == len(chunks) - 1 else run.acc.no_sync(s.model)
            with sync:
                lp, ent = rollout_logprobs(s.model, rollout, rows, c.temperature, with_entropy=(it == 0 or every_entropy),
                                           prefix_model=s.policy, entropy_grad=c.entropy_coef > 0,
                                           chunk_tokens=c.logprob_chunk_tokens)  # [n, T]
                old = old_lp[rows] if old_lp is not None else lp.detach()
                # log pi_old - log pi_sampler per token: 0 up to rounding when the sampler is the policy
                sampler_gap = (old - rollout.logprobs[rows]) * mask[rows]  # [n, T]
                weights = None
                if s.algo.importance_sampling_cap > 0:  # the rollout engine's mismatch, corrected (TIS / IcePop)
                    weights = rollout_importance_weights(old, rollout.logprobs[rows], mask[rows],
                                                         s.algo.importance_sampling_mode,
                                                         s.algo.importance_sampling_cap)  # [n, T]
                loss, st = grpo_loss(lp, old, ref_lp[rows] if ref_lp is not None else None, advantages[rows],
                                     loss_mask[rows], **options, num_sequences=s.n_global, num_tokens=n_tokens,
                                     num_local_tokens=n_local, importance_weights=weights, entropy=ent,
                                     entropy_threshold=entropy_threshold)
                # DDP averages gradients over processes; the loss is already normalised globally
                run.acc.backward(loss * run.world)
                loss_nonfinite |= ~torch.isfinite(loss.detach())
            if it == 0:
                sums["logprob_gap"] += sampler_gap.abs().sum().item()
                if weights is not None:
                    sums["is_weight"] += (weights * mask[rows]).sum().item()
                sums["loss"] += loss.item()
                for key in ("kl", "clipped_low", "clipped_high", "tokens"):
                    sums[key] += st[key].item()
                sums["entropy"] += (ent.detach() * mask[rows]).sum().item()
        update = run.update(loss_nonfinite)
        grad_norms.append(update.grad_norm)
        skipped += update.skipped
    return UpdateStats(sums, grad_norms, skipped)
