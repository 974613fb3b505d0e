"""The GRPO step: prompts -> rollout -> rewards -> advantages -> policy update -> metrics and records.

The loop around it (accelerate, run folder, resume, optimizer and schedule, checkpoints, signals, the
non-finite policy, trackers, progress) is r1kit.loop's, shared with SFT and reward-model training.
`grpo_step` below reads top to bottom as the algorithm does; each stage is a named function.

Design decisions:
- Data-parallel with `accelerate launch --num_processes N`: each process owns whole groups (its prompts
  and their G completions), so advantages need no communication; the loss is normalised by whole-batch
  counts (all processes, all micro-batches), so the update equals the single-process update on the same
  global batch.
- Prompt order and sampling noise are pure functions of (seed, step, rank): a resumed run draws exactly
  what the uninterrupted run would have drawn.
- pi_old: with num_iterations == 1 the policy that sampled is the policy being updated, so
  pi_old = pi_theta.detach() exactly (ratio 1, no extra forward). With num_iterations > 1, pi_old is
  recomputed once, before the first update, and kept fixed for all mu updates.
- The reference model is a frozen copy of the initial policy, or with LoRA the base with the adapter
  switched off; with beta == 0 it is never loaded or run.
- Rollouts come from a rollout engine (r1kit.engines): anything with sync_weights(policy, version) and
  generate(tokenizer, prompts, ...) -> Rollout; `train(config, engine=...)` takes a user's own.
- metrics.jsonl (one JSON line per step) is the source of truth; samples.jsonl keeps every completion
  with its rewards and advantage.
- Rewards run under a time limit in a forked worker and a failing sample scores 0
  (reward_failures.jsonl), see docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import Tensor

from .alerts import AlertMonitor
from .config import ConfigError, GRPOConfig, training_steps
from .data import Example, general_examples, load_examples, prompt_indices, reward_keywords
from .decoder import FusedDecoder, unsupported_reason
from .engines import LocalEngine, RolloutEngine, make_engine, make_sampler  # noqa: F401 (make_sampler: public)
from .evaluate import STYLE_FOR_TEMPLATE, Problem, evaluate, held_out_problems, summarize
from .files import append_jsonl
from .grpo import (advantages_for, grpo_loss, loss_options, mask_truncated_completions, rollout_importance_weights,
                   soft_overlong_penalty, top_entropy_threshold)
from .logprobs import completion_logprobs
from .loop import LoopOptions, Run, open_run
from .models import load_model, load_policy, load_tokenizer, resolve_dtype  # noqa: F401 (resolve_dtype: public here too)
from .readable import split_reasoning
from .report import iter_jsonl, write_report_safely
from .rewards import (RewardFailure, bind_reward_options, close_reward_worker, copies_template, score_completions,
                      start_reward_worker)
from .rollout import Rollout, cat_rollouts, take_groups
from .templates import build_prompt

RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "reward_failures.jsonl")


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the sampling generator for one step on one process."""
    return (seed * 1_000_003 + step * 1_009 + rank) % (2**63)


def load_run_examples(c: GRPOConfig, skipped: list[str] | None = None) -> list[Example]:
    """The training examples; with a `skipped` list, bad lines are recorded there instead of raising."""
    return load_examples(c.dataset, data_dir=c.data_dir, split=c.dataset_split, config=c.dataset_config,
                         question_field=c.question_field,
                         answer_field=c.answer_field, seed=c.seed, num_examples=c.arithmetic_examples,
                         num_terms=c.arithmetic_terms, max_value=c.arithmetic_max_value, ops=c.arithmetic_ops,
                         skipped=skipped)


def load_eval_problems(c: GRPOConfig) -> list[Problem]:
    """The held-out set for evaluation during training."""
    return held_out_problems(c.eval_benchmark, c.eval_limit, c.seed, c.data_dir, question_field=c.question_field,
                             answer_field=c.answer_field, arithmetic_terms=c.arithmetic_terms,
                             arithmetic_max_value=c.arithmetic_max_value, arithmetic_ops=c.arithmetic_ops)


def bound_rewards(c: GRPOConfig, reward_funcs: list | None) -> list:
    """The run's rewards: options such as the target language bound to the rewards that take them (once,
    so the reward worker knows each function by identity); callables as given."""
    return [bind_reward_options([r], language=c.language, special_token=c.special_token)[0]
            if isinstance(r, str) else r for r in (reward_funcs or list(c.reward_funcs))]


# --------------------------------------------------------------------------
# Set-up: what every step reads
# --------------------------------------------------------------------------


@dataclass
class GRPOSetup:
    """Everything a GRPO step reads, built once per run."""

    c: GRPOConfig
    run: Run
    model: torch.nn.Module  # the policy as accelerate wraps it (DDP under a multi-process launch)
    policy: torch.nn.Module  # the same module unwrapped
    tokenizer: object
    ref_model: torch.nn.Module | None  # None with LoRA (the adapter is switched off) or beta == 0
    engine: RolloutEngine
    rewards: list  # reward names (options bound) or callables
    judges: dict  # reward models of all-scenario RL, by role
    reasoning: list[Example]
    general: list[Example]
    eval_problems: list[Problem]
    dtype: torch.dtype
    skipped_lines: int
    alerts: AlertMonitor  # fed every step's metrics, in order (replayed from metrics.jsonl on resume)

    @property
    def G(self) -> int:
        return self.c.num_generations

    @property
    def prompts_local(self) -> int:
        return self.c.completions_per_step // self.c.num_generations

    @property
    def n_global(self) -> int:
        """Completions per step over all processes: the loss's sequence normaliser."""
        return self.prompts_local * self.run.world * self.c.num_generations


def load_training_data(c: GRPOConfig, examples: list[Example] | None, run: Run) -> tuple[list[Example], list[Example], int]:
    """(reasoning examples, general examples, bad lines skipped), checked before any model loads."""
    skipped: list[str] = []
    keep = skipped if c.skip_bad_data else None
    examples = examples if examples is not None else load_run_examples(c, keep)
    if c.general_dataset:
        examples = [*examples, *general_examples(c.general_dataset, c.general_prompt_field, keep)]
    if skipped and run.is_main:
        out = run.out_dir
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        print(f"r1kit: skip_bad_data: skipped {len(skipped)} bad dataset lines (listed in "
              f"{out / 'skipped_data.txt'}): {shown}")
    reasoning = [e for e in examples if e.kind != "general"]
    general = [e for e in examples if e.kind == "general"]
    if general and not reasoning:
        raise ConfigError("all-scenario RL: the batches mix reasoning and general prompts, but there are no reasoning prompts")
    if general and not c.reward_model:
        raise ConfigError("general prompts (kind 'general') need reward_model: they have no gold answer to check")
    return reasoning, general, skipped


def setup(c: GRPOConfig, run: Run, examples: list[Example] | None, reward_funcs: list | None,
          engine: RolloutEngine | None) -> GRPOSetup:
    """Data, models, reward models, the rollout engine, and the loop's optimizer around the policy."""
    reasoning, general, skipped = load_training_data(c, examples, run)
    eval_problems = load_eval_problems(c) if c.eval_steps else []  # checked before any model loads
    device = run.acc.device
    torch.manual_seed(c.seed)
    dtype = resolve_dtype(c.dtype)
    tokenizer = load_tokenizer(c.model, c.trust_remote_code)
    model = load_policy(c, run.checkpoint, dtype)
    ref_model = None
    if not c.use_lora and c.beta > 0:
        ref_model = load_model(c.model, dtype, trust_remote_code=c.trust_remote_code).to(device)
        ref_model.eval().requires_grad_(False)
    model.config.use_cache = False
    judges = load_reward_models(c, device)
    engine = engine if engine is not None else make_engine(c, model, dtype, device, sharded=run.sharded)
    if run.sharded and c.eval_steps and not isinstance(engine, LocalEngine) and unsupported_reason(model):
        raise ConfigError(f"eval_steps under FSDP2 with rollout_engine={c.rollout_engine}: the evaluation would "
                          f"decode with the sharded policy ({unsupported_reason(model)}); use rollout_engine=hf")
    # max_steps -1: num_train_epochs passes over the prompts; warmup_ratio when warmup_steps is 0 (TRL's names)
    max_steps, warmup_steps = training_steps(c, len(reasoning), run.world)
    wrapped, policy = run.start(model, tokenizer, on_close=lambda: _final_report(c, run), max_steps=max_steps,
                                warmup_steps=warmup_steps)
    if skipped and run.is_main:
        (run.out_dir / "skipped_data.txt").write_text("".join(line + "\n" for line in skipped), encoding="utf-8")
    alerts = AlertMonitor(c)
    for past in iter_jsonl(run.out_dir / "metrics.jsonl") if run.start_step else ():
        alerts.update(past)  # those that fired before the resume stay fired, silently
    return GRPOSetup(c, run, wrapped, policy, tokenizer, ref_model, engine, bound_rewards(c, reward_funcs), judges,
                     reasoning, general, eval_problems, dtype, len(skipped), alerts)


def _final_report(c: GRPOConfig, run: Run) -> None:
    if c.write_report and run.is_main:
        path = write_report_safely(run.out_dir, c.report_markers)
        if path is not None:
            run.write(f"r1kit: report: {path}")


# --------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------


def train(config: GRPOConfig, examples: list[Example] | None = None,
          reward_funcs: list[str | Callable] | None = None, show_progress: bool = True,
          engine: RolloutEngine | None = None) -> list[dict]:
    """Run GRPO with `config`; returns the metrics of each step (also written to metrics.jsonl).

    `examples` and `reward_funcs` override the config's dataset and reward names, `engine` the rollout
    engine (for library use). Raises TrainingStopped after SIGINT/SIGTERM (once the step is finished and
    a checkpoint saved) and TrainingError after `max_consecutive_nonfinite` non-finite updates in a row
    or a failed checkpoint.
    """
    return list(iter_train(config, examples, reward_funcs, show_progress, engine))


def iter_train(config: GRPOConfig, examples: list[Example] | None = None,
               reward_funcs: list[str | Callable] | None = None, show_progress: bool = True,
               engine: RolloutEngine | None = None) -> Iterator[dict]:
    """The loop behind `train`, one step at a time: yields each step's metrics once the step is complete
    (update applied, metrics and samples written, checkpoint saved when due). Benchmarks use it to
    interleave r1kit steps with another trainer's."""
    c = config
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(close_reward_worker)
        if c.reward_timeout > 0:
            # fork the reward worker while this process is small: before accelerate starts threads and
            # before any model is loaded
            start_reward_worker([*bound_rewards(c, reward_funcs), "accuracy", "format"])
        options = LoopOptions.from_config(c, name="GRPO", updates_per_step=c.num_iterations, logs=RUN_LOGS)
        run = cleanup.enter_context(open_run(options, show_progress))
        s = setup(c, run, examples, reward_funcs, engine)
        if c.eval_steps and run.start_step == 0:
            yield initial_eval(s)
        for step in run.steps():
            metrics = grpo_step(s, step)
            raise_alerts(s, metrics)
            run.end_step(step + 1, metrics, postfix=progress_postfix(metrics))
            yield metrics
        run.finish()


def initial_eval(s: GRPOSetup) -> dict:
    """The held-out evaluation before any update (step 0 of the curve)."""
    initial = {"step": 0, **run_eval(s, 0)}
    s.run.log(initial, 0, force=True)
    s.run.write(f"[step 0] eval pass@1={initial['eval/pass@1']:.3f} format={initial['eval/format_rate']:.2f}")
    return initial


def grpo_step(s: GRPOSetup, step: int) -> dict:
    """One GRPO step (0-based `step`): returns its metrics; samples and reward failures are written."""
    t_start = time.perf_counter()
    batch, rollout, scores, sampling = sample_batch(s, step)
    t_gen = sampling.pop("generation_time")
    rewards = torch.tensor(scores.totals, dtype=torch.float32)  # [N]
    advantages, zero_std = advantages_for(s.c, rewards, s.G)  # [N], [N/G]
    advantages = advantages.to(s.run.acc.device)
    old_lp, ref_lp, entropy_threshold = frozen_logprobs(s, rollout)
    update = policy_update(s, rollout, advantages, old_lp, ref_lp, entropy_threshold)
    metrics = step_metrics(s, step, rollout, scores, zero_std, update, time.perf_counter() - t_start, t_gen)
    metrics.update(sampling)
    if s.c.eval_steps and ((step + 1) % s.c.eval_steps == 0 or step + 1 == s.run.o.max_steps):
        metrics.update(run_eval(s, step + 1))
    write_step_records(s, step, batch, rollout, scores, advantages)
    return metrics


# --------------------------------------------------------------------------
# The stages of a step
# --------------------------------------------------------------------------


def select_prompts(s: GRPOSetup, step: int, round_: int = 0) -> list[Example]:
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


def generate_rollout(s: GRPOSetup, batch: list[Example], step: int, round_: int = 0) -> Rollout:
    """G completions per prompt from an engine that holds the policy's current weights."""
    c = s.c
    prompts = [build_prompt(e.question, s.tokenizer, c.template, c.prefill, messages=e.messages,
                            system_prompt=c.system_prompt) for e in batch]
    if round_ == 0:
        s.engine.sync_weights(s.policy, step)
    rollout = s.engine.generate(s.tokenizer, prompts, seed=sampling_seed(c.seed + 7919 * round_, step, s.run.rank),
                                num_generations=s.G, max_new_tokens=c.max_completion_length,
                                temperature=c.temperature, top_p=c.top_p, stop_strings=tuple(c.stop_strings),
                                max_prompt_length=c.max_prompt_length, ignore_eos=c.ignore_eos)
    return rollout.to(s.run.acc.device)


@dataclass
class Scores:
    """The rewards of one rollout; row i is completion i."""

    texts: list[str]  # prefill + completion: what the rewards read
    answers: list[str]
    kinds: list[str]
    totals: list[float]  # weighted sum of the reward functions
    per_fn: dict[str, list[float]]  # each reward's scores, NaN where it does not apply
    failures: list[RewardFailure]


def score_rollout(s: GRPOSetup, batch: list[Example], rollout: Rollout) -> Scores:
    G = s.G
    texts = [s.c.prefill + comp for comp in rollout.completions]
    answers = [e.answer for e in batch for _ in range(G)]
    kinds = [e.kind for e in batch for _ in range(G)]
    questions = [e.question for e in batch for _ in range(G)]
    ids = [r[m.bool()].tolist() for r, m in zip(rollout.completion_ids, rollout.completion_mask)]  # unpadded
    totals, per_fn, failures = score_batch(s.c, s.rewards, texts, answers, kinds, questions, s.judges, batch=batch,
                                           completion_ids=ids)
    if s.c.overlong_buffer_length > 0:  # DAPO's soft overlong punishment, by length in tokens
        penalty = [s.c.overlong_penalty_factor * p for p in
                   soft_overlong_penalty(rollout.lengths.tolist(), s.c.max_completion_length, s.c.overlong_buffer_length)]
        per_fn["soft_overlong"] = penalty
        totals = [t + p for t, p in zip(totals, penalty)]
    return Scores(texts, answers, kinds, totals, per_fn, failures)


def pick_scores(picks: list[tuple[Scores, list[int]]]) -> Scores:
    """Rows `rows` of each Scores, one after the other; failures re-indexed into the result (those of
    rows left out are dropped)."""
    out = Scores([], [], [], [], {n: [] for n in picks[0][0].per_fn}, [])
    for sc, rows in picks:
        where = {r: len(out.texts) + i for i, r in enumerate(rows)}
        for name, values in (("texts", sc.texts), ("answers", sc.answers), ("kinds", sc.kinds), ("totals", sc.totals)):
            getattr(out, name).extend(values[r] for r in rows)
        for n, v in sc.per_fn.items():
            out.per_fn[n].extend(v[r] for r in rows)
        out.failures += [dataclasses.replace(f, index=where[f.index]) for f in sc.failures if f.index in where]
    return out


def sample_batch(s: GRPOSetup, step: int) -> tuple[list[Example], Rollout, Scores, dict]:
    """The step's prompts, their rollout and its scores, plus sampling metrics.

    With dynamic_sampling (DAPO), groups whose rewards are all equal carry no policy gradient: they are
    dropped and more prompts are drawn, up to max_resample_rounds extra rounds, until the step has its
    full number of informative groups. At the limit the step is filled up with dropped groups (they add
    only the KL term), so every step keeps its batch shape, which data-parallel processes need."""
    t0 = time.perf_counter()
    want = s.prompts_local
    rounds = []  # (examples, rollout, scores, informative group indices)
    for round_ in range(s.c.max_resample_rounds + 1 if s.c.dynamic_sampling else 1):
        batch = select_prompts(s, step, round_)
        rollout = generate_rollout(s, batch, step, round_)
        scores = score_rollout(s, batch, rollout)
        grouped = torch.tensor(scores.totals).view(-1, s.G)  # [B, G]
        informative = (grouped != grouped[:, :1]).any(dim=1).nonzero().flatten().tolist()
        rounds.append((batch, rollout, scores, informative))
        if sum(len(r[3]) for r in rounds) >= want:
            break
    if not s.c.dynamic_sampling:
        return batch, rollout, scores, {"generation_time": time.perf_counter() - t0}
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
        "generation_time": time.perf_counter() - t0,
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
            parts = [rollout_logprobs(s.policy, rollout, r, c.temperature, with_entropy=c.top_entropy_quantile < 1)
                     for r in chunks]
            old_lp = torch.cat([lp for lp, _ in parts]) if c.num_iterations > 1 else None  # [N, T]
            if c.top_entropy_quantile < 1:  # one threshold for every micro-batch and process
                ent = torch.cat([e for _, e in parts])  # [N, T]
                values = torch.tensor(s.run.gather_objects(ent[rollout.completion_mask.bool()].tolist()))
                threshold = top_entropy_threshold(values, torch.ones_like(values), c.top_entropy_quantile)
        if c.beta > 0:
            ctx = s.policy.disable_adapter() if c.use_lora else contextlib.nullcontext()
            with ctx:
                ref = s.policy if c.use_lora else s.ref_model
                ref_lp = torch.cat([rollout_logprobs(ref, rollout, r, c.temperature)[0] for r in chunks])  # [N, T]
    return old_lp, ref_lp, threshold


@dataclass
class UpdateStats:
    sums: dict[str, float]  # token sums over the first iteration, this process
    grad_norms: list[float]  # one per optimizer update
    skipped: int  # updates skipped as non-finite


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
    options = loss_options(c)
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
                                           prefix_model=s.policy, entropy_grad=c.entropy_coef > 0)  # [n, T]
                old = old_lp[rows] if old_lp is not None else lp.detach()
                # log pi_old - log pi_sampler per token: 0 up to rounding when the sampler is the policy
                sampler_gap = (old - rollout.logprobs[rows]) * mask[rows]  # [n, T]
                weights = None
                if c.importance_sampling_cap > 0:  # the rollout engine's mismatch, corrected (TIS / IcePop)
                    weights = rollout_importance_weights(old, rollout.logprobs[rows], mask[rows],
                                                         c.importance_sampling_mode, c.importance_sampling_cap)  # [n, T]
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


def step_metrics(s: GRPOSetup, step: int, rollout: Rollout, scores: Scores, zero_std: Tensor, update: UpdateStats,
                 step_time: float, t_gen: float) -> dict:
    """The step's metrics line, gathered over processes."""
    c, run, G, g = s.c, s.run, s.G, s.run.gather
    per_fn, texts, answers, kinds = scores.per_fn, scores.texts, scores.answers, scores.kinds
    all_rewards, lengths = g(scores.totals), g(rollout.lengths.float())
    accuracy = g(_metric_scores(("accuracy", "readable_accuracy"), per_fn, texts, answers, kinds, c.reward_timeout))
    fmt = g(_metric_scores(("format", "readable_format"), per_fn, texts, answers, kinds, c.reward_timeout))
    names = list(per_fn)
    counts = [sum(f.reward == n and f.kind == kind for f in scores.failures) for n in names for kind in ("error", "timeout")]
    counts = g(counts).view(-1, len(names), 2).sum(0) if names else None  # [rewards, (errors, timeouts)]
    reduced = run.reduce_sums(update.sums)
    tok = max(reduced["tokens"], 1.0)
    grouped = all_rewards.view(-1, G)
    return {
        "step": step + 1,
        "reward": all_rewards.mean().item(),
        "reward_std": grouped.std(dim=1).mean().item(),
        **{f"rewards/{n}": m for n, m in ((n, g(v).nanmean().item()) for n, v in per_fn.items()) if math.isfinite(m)},
        **{f"rewards/{n}/failures": int(counts[i, 0]) for i, n in enumerate(names)},
        **{f"rewards/{n}/timeouts": int(counts[i, 1]) for i, n in enumerate(names)},
        "accuracy": _nanmean_or_zero(accuracy),
        "format_rate": _nanmean_or_zero(fmt),
        # completions that copy the template's example ("reasoning process here"): a reward that pays for
        # them, or a policy that learned them, is a failure to see at once
        "template_copy_rate": g([float(copies_template(t)) for t in texts]).mean().item(),
        "completion_length": lengths.mean().item(),
        "completion_length_min": lengths.min().item(),
        "completion_length_max": lengths.max().item(),
        "truncated_frac": g(rollout.truncated.float()).mean().item(),
        "frac_reward_zero_std": g(zero_std.float()).mean().item(),
        "loss": reduced["loss"],
        "kl": reduced["kl"] / tok,
        "clip_ratio/low": reduced["clipped_low"] / tok,
        "clip_ratio/high": reduced["clipped_high"] / tok,
        "clip_ratio": (reduced["clipped_low"] + reduced["clipped_high"]) / tok,
        "entropy": reduced["entropy"] / tok,
        # |log pi_old - log pi_sampler| per token: the rollout engine's mismatch (bf16 copy, vLLM)
        "rollout_logprob_gap": reduced["logprob_gap"] / tok,
        **({"importance_weight": reduced["is_weight"] / tok} if c.importance_sampling_cap > 0 else {}),
        "grad_norm": update.grad_norms[0],
        "skipped_updates": update.skipped,
        "learning_rate": run.learning_rate,
        "step_time": step_time,
        "generation_time": t_gen,
        # sequences processed per second counting each prompt once per completion (as other tools do)
        "tokens_per_second": (reduced["tokens"] + G * g(rollout.prompt_mask.sum()).sum().item()) / step_time,
        "generated_tokens_per_second": lengths.sum().item() / t_gen,
        "data/skipped_lines": s.skipped_lines,
    }


def progress_postfix(m: dict) -> dict[str, str]:
    return dict(reward=f"{m['reward']:.3f}", fmt=f"{m['format_rate']:.2f}", acc=f"{m['accuracy']:.2f}",
                copy=f"{m['template_copy_rate']:.2f}", len=f"{m['completion_length']:.0f}", s=f"{m['step_time']:.1f}")


def raise_alerts(s: GRPOSetup, metrics: dict) -> None:
    """Print each alert the step raises, once, as one line; with alert_stop, stop after this step (a
    checkpoint is saved, as for SIGTERM). Every process sees the same gathered metrics, so the same alerts."""
    for alert in s.alerts.update(metrics):
        s.run.write(alert.line())
        if s.c.alert_stop:
            s.run.request_stop(f"alert {alert.kind}")


def write_step_records(s: GRPOSetup, step: int, batch: list[Example], rollout: Rollout, scores: Scores,
                       advantages: Tensor) -> None:
    """samples.jsonl (every completion with its rewards and advantage), reward_failures.jsonl, the
    report every report_steps, and a sample completion every log_completions_steps."""
    c, run, G = s.c, s.run, s.G
    texts, per_fn = scores.texts, scores.per_fn
    records = [{"step": step + 1, "prompt_id": e.id, "question": e.question, "answer": e.answer,
                "completion": texts[i * G + j], "reward": scores.totals[i * G + j],
                "rewards": {n: float(v[i * G + j]) for n, v in per_fn.items() if math.isfinite(v[i * G + j])},
                **({"kind": e.kind} if e.kind != "reasoning" else {}),
                "advantage": float(advantages[i * G + j]), "length": int(rollout.lengths[i * G + j]),
                "truncated": bool(rollout.truncated[i * G + j])}
               for i, e in enumerate(batch) for j in range(G)]
    records = run.gather_objects(records)
    failed = [{"step": step + 1, "rank": run.rank, "reward": f.reward, "sample": f.index, "kind": f.kind,
               "error": f.error, "prompt_id": batch[f.index // G].id if f.index >= 0 else None,
               "answer": scores.answers[f.index] if f.index >= 0 else None,
               "completion": texts[f.index] if f.index >= 0 else None} for f in scores.failures]
    failed = run.gather_objects(failed)
    if not run.is_main:
        return
    out = run.out_dir
    append_jsonl(out / "samples.jsonl", records)
    if c.report_steps and (step + 1) % c.report_steps == 0 and step + 1 < run.o.max_steps:
        write_report_safely(out, c.report_markers)
    if failed:
        append_jsonl(out / "reward_failures.jsonl", failed)
        run.write(f"r1kit: step {step + 1}: {len(failed)} reward failures "
                  f"({sum(r['kind'] == 'timeout' for r in failed)} timeouts) scored 0; "
                  f"see {out / 'reward_failures.jsonl'}")
    if c.log_completions_steps and (step + 1) % c.log_completions_steps == 0:
        best = max(records, key=lambda r: r["reward"])
        run.write(f"[step {step + 1}] reward={best['reward']:.2f} Q: {best['question']}\n{best['completion'][:400]}\n")


def eval_sampler(s: GRPOSetup, step: int) -> object:
    """What the evaluation decodes with: the rollout's own fused copy when it holds the policy's dtype (no
    second copy), the transformers forward when that is what the run asked for, else what evaluate()
    decides (None). Under FSDP2 never the sharded policy itself (see engines.make_sampler): the rollout's
    own copy, refreshed, or None, with which evaluate() builds a fused copy from the gathered weights
    (setup refuses the models it cannot build one for)."""
    sampler = s.engine.sampler if isinstance(s.engine, LocalEngine) else None
    if isinstance(sampler, FusedDecoder) and sampler.dtype == s.dtype:
        sampler.load(s.policy)
        return sampler
    if not s.run.sharded:
        return s.policy if s.c.rollout_engine == "hf" else None
    if sampler is not None:
        s.engine.sync_weights(s.policy, step)
        return sampler
    return None


def run_eval(s: GRPOSetup, step: int) -> dict:
    """Evaluate the policy on the held-out set (sharded over processes); metrics keyed eval/..."""
    c, run = s.c, s.run
    t0 = time.perf_counter()
    _, records = evaluate(s.policy, s.tokenizer, s.eval_problems[run.rank::run.world], num_samples=c.eval_num_samples,
                          temperature=c.eval_temperature, top_p=c.eval_top_p,
                          max_new_tokens=c.eval_max_new_tokens or c.max_completion_length,
                          prompt_style=STYLE_FOR_TEMPLATE[c.template], prefill=c.prefill,
                          batch_size=max(1, c.per_device_train_batch_size // c.eval_num_samples),
                          seed=c.seed + run.rank, sampler=eval_sampler(s, step))
    records = run.gather_objects(records)
    summary = summarize(records, c.eval_num_samples)
    if run.is_main:
        append_jsonl(run.out_dir / "eval_samples.jsonl", [{"step": step, **r} for r in records])
    keep = ("pass@1", f"cons@{c.eval_num_samples}", "format_rate", "mean_length")
    return {**{f"eval/{k}": summary[k] for k in keep}, "eval/seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------
# Rewards of a batch
# --------------------------------------------------------------------------


def general_prompts_per_step(prompts: int, fraction: float) -> int:
    """General prompts among a process's `prompts` per step: the nearest count to the fraction, at least one,
    and at least one reasoning prompt left when there are two or more."""
    n = max(1, math.floor(prompts * fraction + 0.5))
    return min(n, prompts - 1) if prompts >= 2 else n


def _nanmean_or_zero(x: torch.Tensor) -> float:
    """Mean over the rows a metric applies to (NaN marks the others); 0 when it applies to none."""
    m = x.nanmean().item()
    return m if math.isfinite(m) else 0.0


def _metric_scores(names: tuple[str, ...], per_fn: dict[str, list[float]], texts: list[str], answers: list[str],
                   kinds: list[str], timeout: float) -> list[float]:
    """Scores for the accuracy/format metrics: the first of `names` that is a training reward, else the
    built-in names[0] computed here; NaN on general rows, which have no rule-checkable answer."""
    name = next((n for n in names if n in per_fn), None)
    if name is not None:
        return per_fn[name]
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    _, per, _ = score_completions([names[0]], None, [texts[i] for i in rows], [answers[i] for i in rows],
                                  timeout=timeout, on_failure="zero")
    scores = [math.nan] * len(texts)
    for i, v in zip(rows, per[names[0]]):
        scores[i] = v
    return scores


def load_reward_models(c: GRPOConfig, device) -> dict:
    """The reward models of all-scenario RL: helpfulness (scores the summary) and harmlessness (the whole
    response); the same model serves both when harmlessness_model is not set. Empty without reward_model."""
    if not c.reward_model:
        return {}
    from .reward_model import load_reward_model

    helpful = load_reward_model(c.reward_model, device=device)
    harmless = helpful if c.harmlessness_model in (None, c.reward_model) else load_reward_model(c.harmlessness_model, device=device)
    return {"helpfulness": helpful, "harmlessness": harmless}


def score_batch(c: GRPOConfig, rewards_used: list, texts: list[str], answers: list[str], kinds: list[str],
                questions: list[str], judges: dict, batch: list[Example] | None = None,
                completion_ids: list[list[int]] | None = None) -> tuple[list[float], dict[str, list[float]], list[RewardFailure]]:
    """Rewards of one batch: rule rewards for reasoning prompts; for general prompts (R1 stage 4)
    helpfulness of the summary plus harmlessness of the whole response, as reward models judge them.

    Returns the total per completion, {reward name: per-completion scores, NaN where it does not apply}
    and the rule rewards' failures (indices into the batch).
    """
    n = len(texts)
    rows = [i for i, k in enumerate(kinds) if k != "general"]
    general = [i for i, k in enumerate(kinds) if k == "general"]
    totals = [0.0] * n
    per_fn: dict[str, list[float]] = {}
    # called even with no reasoning rows, so every process reports the same reward names
    sub_totals, sub_per, sub_failures = score_completions(
        rewards_used, c.reward_weights, [texts[i] for i in rows], [answers[i] for i in rows],
        timeout=c.reward_timeout, on_failure=c.reward_failure,
        # what TRL-style rewards read besides the completions: prompts, completion ids, dataset columns
        **(reward_keywords(batch, n // len(batch), completion_ids, rows) if batch else {}))
    for name, scores in sub_per.items():
        per_fn[name] = [math.nan] * n
        for i, v in zip(rows, scores):
            per_fn[name][i] = v
    for i, v in zip(rows, sub_totals):
        totals[i] = v
    failures = [dataclasses.replace(f, index=rows[f.index] if f.index >= 0 else -1) for f in sub_failures]
    if judges:
        prompts = [questions[i] for i in general]
        summaries = [split_reasoning(texts[i], c.special_token)[1] for i in general]
        scored = {"helpfulness": judges["helpfulness"].score(prompts, summaries) if general else [],
                  "harmlessness": judges["harmlessness"].score(prompts, [texts[i] for i in general]) if general else []}
        weights = {"helpfulness": c.helpfulness_weight, "harmlessness": c.harmlessness_weight}
        for name, scores in scored.items():
            per_fn[name] = [math.nan] * n
            for i, v in zip(general, scores):
                per_fn[name][i] = float(v)
                totals[i] += weights[name] * float(v)
    return totals, per_fn, failures
