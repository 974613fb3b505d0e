"""The GRPO training loop: prompts -> rollout -> rewards -> advantages -> policy update -> checkpoint, metrics.

Design decisions:
- Built on `accelerate` from the start: `accelerate launch --num_processes 2` runs the same loop
  data-parallel. Each process owns whole groups (its prompts and their G completions), so advantages
  need no communication; the loss is normalised by whole-batch counts (all processes, all
  micro-batches), so the update equals the single-process update on the same global batch.
- Prompt order and sampling noise are pure functions of (seed, step, rank): a resumed run draws exactly
  what the uninterrupted run would have drawn.
- pi_old: with num_iterations == 1 the policy that sampled is the policy being updated, so
  pi_old = pi_theta.detach() exactly (ratio 1, no extra forward). With num_iterations > 1, pi_old is
  recomputed once, before the first update, and kept fixed for all mu updates.
- The reference model is a frozen copy of the initial policy, or with LoRA the base with the adapter
  switched off; with beta == 0 it is never loaded or run.
- metrics.jsonl (one JSON line per step) is the source of truth; samples.jsonl keeps every completion
  with its rewards and advantage.
- Faults are non-events (docs/reliability.md): rewards run under a time limit in a forked worker and a
  failing sample scores 0 (reward_failures.jsonl); a NaN/inf loss or gradient skips the update and only
  `max_consecutive_nonfinite` in a row stop the run; SIGINT/SIGTERM finish the step, save a checkpoint
  and raise TrainingStopped, every process agreeing on the step through an all-reduce of the request.
- "Last good checkpoint": no checkpoint is written at the end of a step whose last update was
  non-finite, so every checkpoint follows a finite update and resuming never starts inside a streak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm
from transformers import get_scheduler
from transformers.utils import logging as hf_logging

from .checkpoint import (latest_checkpoint, load_training_state, remove_temporary_checkpoints, rng_state,
                         save_checkpoint, set_rng_state)
from .config import ConfigError, GRPOConfig, TrainingError, TrainingStopped
from .files import append_jsonl, truncate_jsonl
from .data import Example, general_examples, load_examples, prompt_indices
from .evaluate import STYLE_FOR_TEMPLATE, Problem, evaluate, held_out_problems, summarize
from .grpo import group_advantages, grpo_loss
from .logprobs import completion_logprobs
from .models import default_threads, load_model, load_policy, load_tokenizer, resolve_model_path
from .rewards import RewardFailure, bind_reward_options, close_reward_worker, score_completions, start_reward_worker
from .readable import split_reasoning
from .report import write_report_safely
from .decoder import FusedDecoder, unsupported_reason
from .rollout import generate, rollout_copy
from .templates import build_prompt
from .tracking import make_trackers
from .weights import copy_weights_into


def resolve_dtype(name: str) -> torch.dtype:
    """auto: bfloat16 on a GPU that supports it, else float32 (bf16 is ~4x slower than fp32 on CPUs without AMX)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def sampling_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the sampling generator for one step on one process."""
    return (seed * 1_000_003 + step * 1_009 + rank) % (2**63)


def load_run_examples(c: GRPOConfig, skipped: list[str] | None = None) -> list[Example]:
    """The training examples; with a `skipped` list, bad lines are recorded there instead of raising."""
    return load_examples(c.dataset, data_dir=c.data_dir, split=c.dataset_split, question_field=c.question_field,
                         answer_field=c.answer_field, seed=c.seed, num_examples=c.arithmetic_examples,
                         num_terms=c.arithmetic_terms, max_value=c.arithmetic_max_value, ops=c.arithmetic_ops,
                         skipped=skipped)


def load_eval_problems(c: GRPOConfig) -> list[Problem]:
    """The held-out set for evaluation during training."""
    return held_out_problems(c.eval_benchmark, c.eval_limit, c.seed, c.data_dir, question_field=c.question_field,
                             answer_field=c.answer_field, arithmetic_terms=c.arithmetic_terms,
                             arithmetic_max_value=c.arithmetic_max_value, arithmetic_ops=c.arithmetic_ops)






# The stop request made by SIGINT/SIGTERM: the signal's name, when it came, and what to announce.
_STOP: dict = {"signal": None, "time": 0.0, "step": 0, "announce": True}


def _on_stop_signal(signum: int, frame) -> None:
    """First SIGINT/SIGTERM: stop after the current step. Another one a second or more later: stop now."""
    now = time.monotonic()
    if _STOP["signal"] is not None:
        if now - _STOP["time"] >= 1.0:
            raise KeyboardInterrupt
        return  # the same request again, e.g. a launcher forwarding the terminal's Ctrl-C to its workers
    _STOP.update(signal=signal.Signals(signum).name, time=now)
    if _STOP["announce"]:
        # os.write, not print: a handler that prints while the loop prints raises "reentrant call"
        os.write(2, (f"\nr1kit: {_STOP['signal']} received: finishing step {_STOP['step'] + 1}, then saving a "
                     f"checkpoint (send it again to stop at once)\n").encode())


def _install_stop_handlers(announce: bool) -> dict:
    """Turn SIGINT/SIGTERM into a stop request; returns the handlers they replace (none off the main thread)."""
    _STOP.update(signal=None, time=0.0, step=0, announce=announce)
    if threading.current_thread() is not threading.main_thread():
        return {}
    # a signal ignored on purpose (nohup, a background job) stays ignored
    return {sig: signal.signal(sig, _on_stop_signal) for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN}


def _stop_requested(acc: Accelerator) -> bool:
    """Whether any process got a stop signal; every process must call this at the same step."""
    if acc.num_processes == 1:
        return _STOP["signal"] is not None
    flag = torch.tensor(float(_STOP["signal"] is not None), device=acc.device)
    return acc.reduce(flag, reduction="sum").item() > 0


def _report_skipped(skipped: list[str], out_dir: Path) -> None:
    shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    print(f"r1kit: skip_bad_data: skipped {len(skipped)} bad dataset lines (listed in "
          f"{out_dir / 'skipped_data.txt'}): {shown}")


def train(config: GRPOConfig, examples: list[Example] | None = None,
          reward_funcs: list[str | Callable] | None = None, show_progress: bool = True) -> list[dict]:
    """Run GRPO with `config`; returns the metrics of each step (also written to metrics.jsonl).

    `examples` and `reward_funcs` override the config's dataset and reward names (for library use).
    Raises TrainingStopped after SIGINT/SIGTERM (once the step is finished and a checkpoint saved) and
    TrainingError after `max_consecutive_nonfinite` non-finite updates in a row or a failed checkpoint.
    """
    return list(iter_train(config, examples, reward_funcs, show_progress))


def iter_train(config: GRPOConfig, examples: list[Example] | None = None,
               reward_funcs: list[str | Callable] | None = None, show_progress: bool = True) -> Iterator[dict]:
    """The loop behind `train`, one step at a time: yields each step's metrics once the step is complete
    (update applied, metrics and samples written, checkpoint saved when due). Benchmarks use it to
    interleave r1kit steps with another trainer's."""
    # whatever way the run ends: close the progress bar (so an error prints on a line of its own),
    # restore the signal handlers, stop the reward worker, write the report
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(close_reward_worker)
        yield from _train(config, examples, reward_funcs, show_progress, cleanup)


def _train(c: GRPOConfig, examples: list[Example] | None, reward_funcs: list[str | Callable] | None,
           show_progress: bool, cleanup: contextlib.ExitStack) -> Iterator[dict]:
    # options such as the target language reach the rewards that take them; bound once, so the reward
    # worker knows each function by identity
    rewards_used = [bind_reward_options([r], language=c.language, special_token=c.special_token)[0]
                    if isinstance(r, str) else r for r in (reward_funcs or list(c.reward_funcs))]
    if c.reward_timeout > 0:
        # fork the reward worker while this process is small: before accelerate starts threads and
        # before any model is loaded
        start_reward_worker([*rewards_used, "accuracy", "format"])
    hf_logging.disable_progress_bar()  # transformers' load/save bars would break our progress bar
    # cpu=True on a machine without CUDA makes a torch.distributed launch (accelerate's MULTI_GPU
    # launcher, torchrun) use gloo on CPU instead of silently running N independent single processes
    acc = Accelerator(cpu=not torch.cuda.is_available())
    rank, world = acc.process_index, acc.num_processes
    if c.torch_threads or acc.device.type == "cpu":
        torch.set_num_threads(default_threads(c.torch_threads, acc.num_processes))
    out_dir = Path(c.output_dir)

    # --- resume or fresh start (checked before anything is loaded or written)
    checkpoint = latest_checkpoint(out_dir) if c.resume else None
    if not c.resume and (out_dir / "metrics.jsonl").exists() and not c.overwrite_output_dir:
        raise ConfigError(f"output_dir {out_dir} already holds a run (metrics.jsonl); "
                          f"pass --resume to continue it or choose another output_dir")
    skipped: list[str] = []
    examples = examples if examples is not None else load_run_examples(c, skipped if c.skip_bad_data else None)
    if c.general_dataset:
        examples = [*examples, *general_examples(c.general_dataset, c.general_prompt_field,
                                                 skipped if c.skip_bad_data else None)]
    if skipped and acc.is_main_process:
        _report_skipped(skipped, out_dir)
    eval_problems = load_eval_problems(c) if c.eval_steps else []  # checked before any model loads
    reasoning = [e for e in examples if e.kind != "general"]
    general = [e for e in examples if e.kind == "general"]
    if general and not reasoning:
        raise ConfigError("all-scenario RL: the batches mix reasoning and general prompts, but there are no reasoning prompts")
    if general and not c.reward_model:
        raise ConfigError("general prompts (kind 'general') need reward_model: they have no gold answer to check")

    torch.manual_seed(c.seed)
    dtype = resolve_dtype(c.dtype)
    tokenizer = load_tokenizer(c.model, c.trust_remote_code)
    model = load_policy(c, checkpoint, dtype)
    ref_model = None  # with LoRA: the base with the adapter disabled
    if not c.use_lora and c.beta > 0:
        ref_model = load_model(c.model, dtype, trust_remote_code=c.trust_remote_code).to(acc.device)
        ref_model.eval().requires_grad_(False)
    model.config.use_cache = False
    judges = load_reward_models(c, acc.device)
    sampler, vllm = make_sampler(c, model, dtype, acc.device)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=c.learning_rate, betas=(c.adam_beta1, c.adam_beta2),
                                  weight_decay=c.weight_decay)
    # one optimizer step per inner iteration; the scheduler is not handed to accelerate, which would
    # step it once per process
    scheduler = get_scheduler(c.lr_scheduler_type, optimizer, num_warmup_steps=c.warmup_steps,
                              num_training_steps=c.max_steps * c.num_iterations)
    model, optimizer = acc.prepare(model, optimizer)
    policy = acc.unwrap_model(model)

    start_step = 0
    if acc.is_main_process:
        remove_temporary_checkpoints(out_dir)  # half-written by a run that was killed while saving
    if checkpoint is not None:
        state = load_training_state(checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0])
        start_step = state["step"]
        if acc.is_main_process:
            truncate_jsonl(out_dir / "metrics.jsonl", start_step)
            truncate_jsonl(out_dir / "samples.jsonl", start_step)
            truncate_jsonl(out_dir / "eval_samples.jsonl", start_step)
            truncate_jsonl(out_dir / "reward_failures.jsonl", start_step)
            print(f"r1kit: resuming from {checkpoint} at step {start_step}")
    elif acc.is_main_process:
        if c.resume:
            print(f"r1kit: no complete checkpoint in {out_dir}; starting from step 0")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "reward_failures.jsonl"):
            (out_dir / name).write_text("")
        (out_dir / "config.json").write_text(json.dumps(asdict(c), indent=2))
    if skipped and acc.is_main_process:
        (out_dir / "skipped_data.txt").write_text("".join(line + "\n" for line in skipped), encoding="utf-8")
    acc.wait_for_everyone()

    G = c.num_generations
    prompts_local = c.completions_per_step // G
    prompts_global = prompts_local * world
    n_global = prompts_global * G
    trackers = make_trackers(c.report_to, out_dir, asdict(c)) if acc.is_main_process else []

    def finish_outputs() -> None:
        """Close the trackers and write the report, on every way out of the training loop."""
        for t in trackers:
            t.close()
        if c.write_report and acc.is_main_process:
            path = write_report_safely(out_dir, c.report_markers)
            if path is not None:
                bar.write(f"r1kit: report: {path}")

    cleanup.callback(finish_outputs)  # runs after the bar below is closed (callbacks run last-in first-out)
    bar = cleanup.enter_context(tqdm(total=c.max_steps, initial=start_step, desc="GRPO", unit="step",
                                     disable=not (show_progress and acc.is_main_process), dynamic_ncols=True))

    def save(step: int) -> Path | None:
        states = gather_object([rng_state()]) if world > 1 else [rng_state()]
        path = None
        if acc.is_main_process:
            training_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "step": step, "rng": states}
            path = save_checkpoint(out_dir, step, policy, tokenizer, training_state,
                                   {"config": asdict(c), "world_size": world}, c.save_total_limit)
        acc.wait_for_everyone()
        return path

    def run_eval(step: int) -> dict:
        """Evaluate the policy on the held-out set (sharded over processes); metrics keyed eval/..."""
        t0 = time.perf_counter()
        # decode with the rollout's own fused copy when it holds the policy's dtype (no second copy),
        # with the transformers forward when that is what the run asked for, else as evaluate() decides
        eval_sampler = policy if c.rollout_engine == "hf" else None
        if isinstance(sampler, FusedDecoder) and sampler.dtype == dtype:
            sampler.load(policy)
            eval_sampler = sampler
        _, records = evaluate(policy, tokenizer, eval_problems[rank::world], num_samples=c.eval_num_samples,
                              temperature=c.eval_temperature, top_p=c.eval_top_p,
                              max_new_tokens=c.eval_max_new_tokens or c.max_completion_length,
                              prompt_style=STYLE_FOR_TEMPLATE[c.template], prefill=c.prefill,
                              batch_size=max(1, c.per_device_train_batch_size // c.eval_num_samples),
                              seed=c.seed + rank, sampler=eval_sampler)
        records = gather_object(records) if world > 1 else records
        summary = summarize(records, c.eval_num_samples)
        if acc.is_main_process:
            append_jsonl(out_dir / "eval_samples.jsonl", [{"step": step, **r} for r in records])
        keep = ("pass@1", f"cons@{c.eval_num_samples}", "format_rate", "mean_length")
        return {**{f"eval/{k}": summary[k] for k in keep}, "eval/seconds": time.perf_counter() - t0}

    for sig, handler in _install_stop_handlers(announce=acc.is_main_process).items():
        cleanup.callback(signal.signal, sig, handler)
    nonfinite_streak = 0  # non-finite updates in a row, carried across steps
    if c.eval_steps and start_step == 0:
        initial = {"step": 0, **run_eval(0)}
        if acc.is_main_process:
            append_jsonl(out_dir / "metrics.jsonl", [initial])
            for t in trackers:
                t.log(initial, 0)
            bar.write(f"[step 0] eval pass@1={initial['eval/pass@1']:.3f} format={initial['eval/format_rate']:.2f}")
        yield initial

    for step in range(start_step, c.max_steps):
        t_start = time.perf_counter()
        _STOP["step"] = step
        # --- prompts: this process's slice of the step's global batch
        if general:  # all-scenario RL: a fixed share of each step's prompts are general prompts
            n_gen = general_prompts_per_step(prompts_local, c.general_fraction)
            n_rea = prompts_local - n_gen
            idx = prompt_indices(len(reasoning), (step * world + rank) * n_rea, n_rea, c.seed)
            idx_gen = prompt_indices(len(general), (step * world + rank) * n_gen, n_gen, c.seed + 1)
            batch = [reasoning[i] for i in idx] + [general[i] for i in idx_gen]
        else:
            idx = prompt_indices(len(examples), step * prompts_global + rank * prompts_local, prompts_local, c.seed)
            batch = [examples[i] for i in idx]
        prompts = [build_prompt(e.question, tokenizer, c.template, c.prefill) for e in batch]

        # --- rollout, from the policy or from an engine holding a copy of its current weights
        seed = sampling_seed(c.seed, step, rank)
        rollout_kw = dict(num_generations=G, max_new_tokens=c.max_completion_length, temperature=c.temperature,
                          top_p=c.top_p, stop_strings=tuple(c.stop_strings), max_prompt_length=c.max_prompt_length,
                          ignore_eos=c.ignore_eos)
        if vllm is not None:
            vllm.sync_weights(policy, policy_version=step)
            rollout = vllm.generate(tokenizer, prompts, seed=seed, **rollout_kw).to(acc.device)
        else:
            if isinstance(sampler, FusedDecoder):
                sampler.load(policy)
            elif sampler is not policy:
                copy_weights_into(sampler, policy)
            gen = torch.Generator(device=acc.device).manual_seed(seed)
            rollout = generate(sampler, tokenizer, prompts, generator=gen, **rollout_kw)
        t_gen = time.perf_counter() - t_start

        # --- rewards and advantages
        texts = [c.prefill + comp for comp in rollout.completions]
        answers = [e.answer for e in batch for _ in range(G)]
        kinds = [e.kind for e in batch for _ in range(G)]
        questions = [e.question for e in batch for _ in range(G)]
        totals, per_fn, failures = score_batch(c, rewards_used, texts, answers, kinds, questions, judges)
        rewards = torch.tensor(totals, dtype=torch.float32)  # [N]
        advantages, zero_std = group_advantages(rewards, G, c.scale_rewards)  # [N], [N/G]
        advantages = advantages.to(acc.device)

        # --- old and reference log-probs (no grad, once per batch)
        mask = rollout.completion_mask  # [N, T]
        mb = c.per_device_train_batch_size
        chunks = [slice(i, min(i + mb, len(texts))) for i in range(0, len(texts), mb)]

        def logprobs_of(m, s: slice, **kw):
            """Completion log-probs [n, T] of rows s, each prompt of the micro-batch computed once. Only the
            columns up to the micro-batch's longest completion are computed: the rest are padding in every
            row, and causal attention makes the earlier columns independent of them."""
            first, last = s.start // G, (s.stop - 1) // G + 1
            rows = torch.arange(s.start, s.stop, device=mask.device) // G - first  # [n]
            width = max(int(mask[s].sum(dim=1).max()), 1)
            lp, ent = completion_logprobs(m, rollout.prompt_ids[first:last], rollout.prompt_mask[first:last],
                                          rollout.completion_ids[s, :width], mask[s, :width], rows, c.temperature,
                                          **kw)  # [n, width]
            pad = (0, mask.shape[1] - width)  # back to [n, T]; padded log-probs are 0, as on any padding
            return torch.nn.functional.pad(lp, pad), None if ent is None else torch.nn.functional.pad(ent, pad)

        old_lp = ref_lp = None
        with torch.no_grad():
            if c.num_iterations > 1:
                old_lp = torch.cat([logprobs_of(policy, s)[0] for s in chunks])  # [N, T]
            if c.beta > 0:
                ctx = policy.disable_adapter() if c.use_lora else contextlib.nullcontext()
                with ctx:
                    ref_lp = torch.cat([logprobs_of(policy if c.use_lora else ref_model, s)[0]
                                        for s in chunks])  # [N, T]
        n_tokens = acc.reduce(mask.sum().float(), reduction="sum").item()

        # --- policy update: mu optimizer steps on this batch
        model.train()
        sums = {"loss": 0.0, "kl": 0.0, "clipped_low": 0.0, "clipped_high": 0.0, "tokens": 0.0, "entropy": 0.0,
                "is_weight": 0.0, "logprob_gap": 0.0}
        grad_norms, skipped_updates = [], 0
        for it in range(c.num_iterations):
            loss_nonfinite = torch.zeros((), dtype=torch.bool, device=acc.device)
            for k, s in enumerate(chunks):
                sync = contextlib.nullcontext() if k == len(chunks) - 1 else acc.no_sync(model)
                with sync:
                    lp, ent = logprobs_of(model, s, with_entropy=(it == 0), prefix_model=policy)
                    old = old_lp[s] if old_lp is not None else lp.detach()
                    # log pi_old - log pi_sampler per token: 0 up to rounding when the sampler is the policy
                    sampler_gap = (old - rollout.logprobs[s]) * mask[s]  # [n, T]
                    weights = None
                    if c.importance_sampling_cap > 0:  # truncated importance sampling
                        weights = sampler_gap.exp().clamp(max=c.importance_sampling_cap)  # [n, T]
                    if it == 0:
                        sums["logprob_gap"] += sampler_gap.abs().sum().item()
                        if weights is not None:
                            sums["is_weight"] += (weights * mask[s]).sum().item()
                    loss, st = grpo_loss(lp, old, ref_lp[s] if ref_lp is not None else None, advantages[s],
                                         mask[s], beta=c.beta, epsilon=c.epsilon, epsilon_high=c.epsilon_high,
                                         loss_type=c.loss_type, max_completion_length=c.max_completion_length,
                                         num_sequences=n_global, num_tokens=n_tokens, importance_weights=weights)
                    # DDP averages gradients over processes; the loss is already normalised globally
                    acc.backward(loss * world)
                    loss_nonfinite |= ~torch.isfinite(loss.detach())
                if it == 0:
                    sums["loss"] += loss.item()
                    for key in ("kl", "clipped_low", "clipped_high", "tokens"):
                        sums[key] += st[key].item()
                    sums["entropy"] += (ent * mask[s]).sum().item()
            if c.max_grad_norm > 0:
                norm = acc.clip_grad_norm_(model.parameters(), c.max_grad_norm)
            else:
                norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            norm = float(norm)
            grad_norms.append(norm)
            if world > 1:  # every process must take the same decision; the norm is already common
                loss_nonfinite = acc.reduce(loss_nonfinite.float(), reduction="sum") > 0
            if math.isfinite(norm) and not bool(loss_nonfinite):
                optimizer.step()
                scheduler.step()
                nonfinite_streak = 0
            else:
                # a NaN/inf never reaches the weights, the optimizer state or the schedule
                skipped_updates += 1
                nonfinite_streak += 1
                if acc.is_main_process:
                    bar.write(f"r1kit: step {step + 1}: non-finite {'loss' if bool(loss_nonfinite) else 'gradient'} "
                              f"(grad_norm {norm}); update skipped ({nonfinite_streak} in a row, "
                              f"max_consecutive_nonfinite={c.max_consecutive_nonfinite})")
            optimizer.zero_grad(set_to_none=True)

        # --- metrics (gathered over processes)
        step_time = time.perf_counter() - t_start
        g = lambda x: acc.gather(torch.as_tensor(x, dtype=torch.float32, device=acc.device)).cpu()  # noqa: E731
        all_rewards, lengths = g(rewards), g(rollout.lengths.float())
        accuracy = g(_metric_scores(("accuracy", "readable_accuracy"), per_fn, texts, answers, kinds, c.reward_timeout))
        fmt = g(_metric_scores(("format", "readable_format"), per_fn, texts, answers, kinds, c.reward_timeout))
        names = list(per_fn)
        counts = [sum(f.reward == n and f.kind == kind for f in failures) for n in names for kind in ("error", "timeout")]
        counts = g(counts).view(-1, len(names), 2).sum(0) if names else None  # [rewards, (errors, timeouts)]
        reduced = {k: acc.reduce(torch.tensor(v, device=acc.device), reduction="sum").item() for k, v in sums.items()}
        tok = max(reduced["tokens"], 1.0)
        grouped = all_rewards.view(-1, G)
        metrics = {
            "step": step + 1,
            "reward": all_rewards.mean().item(),
            "reward_std": grouped.std(dim=1).mean().item(),
            **{f"rewards/{n}": m for n, m in ((n, g(v).nanmean().item()) for n, v in per_fn.items()) if math.isfinite(m)},
            **{f"rewards/{n}/failures": int(counts[i, 0]) for i, n in enumerate(names)},
            **{f"rewards/{n}/timeouts": int(counts[i, 1]) for i, n in enumerate(names)},
            "accuracy": _nanmean_or_zero(accuracy),
            "format_rate": _nanmean_or_zero(fmt),
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
            "grad_norm": grad_norms[0],
            "skipped_updates": skipped_updates,
            "learning_rate": scheduler.get_last_lr()[0],
            "step_time": step_time,
            "generation_time": t_gen,
            # sequences processed per second counting each prompt once per completion (as other tools do)
            "tokens_per_second": (reduced["tokens"] + G * g(rollout.prompt_mask.sum()).sum().item()) / step_time,
            "generated_tokens_per_second": lengths.sum().item() / t_gen,
            "data/skipped_lines": len(skipped),
        }
        if c.eval_steps and ((step + 1) % c.eval_steps == 0 or step + 1 == c.max_steps):
            metrics.update(run_eval(step + 1))
        records = [{"step": step + 1, "prompt_id": e.id, "question": e.question, "answer": e.answer,
                    "completion": texts[i * G + j], "reward": totals[i * G + j],
                    "rewards": {n: float(v[i * G + j]) for n, v in per_fn.items() if math.isfinite(v[i * G + j])},
                    **({"kind": e.kind} if e.kind != "reasoning" else {}),
                    "advantage": float(advantages[i * G + j]), "length": int(rollout.lengths[i * G + j]),
                    "truncated": bool(rollout.truncated[i * G + j])}
                   for i, e in enumerate(batch) for j in range(G)]
        records = gather_object(records) if world > 1 else records
        failed = [{"step": step + 1, "rank": rank, "reward": f.reward, "sample": f.index, "kind": f.kind,
                   "error": f.error, "prompt_id": batch[f.index // G].id if f.index >= 0 else None,
                   "answer": answers[f.index] if f.index >= 0 else None,
                   "completion": texts[f.index] if f.index >= 0 else None} for f in failures]
        failed = gather_object(failed) if world > 1 else failed
        if acc.is_main_process:
            if (step + 1) % c.logging_steps == 0 or step + 1 == c.max_steps:
                append_jsonl(out_dir / "metrics.jsonl", [metrics])
                for t in trackers:
                    t.log(metrics, step + 1)
            append_jsonl(out_dir / "samples.jsonl", records)
            if c.report_steps and (step + 1) % c.report_steps == 0 and step + 1 < c.max_steps:
                write_report_safely(out_dir, c.report_markers)
            if failed:
                append_jsonl(out_dir / "reward_failures.jsonl", failed)
                bar.write(f"r1kit: step {step + 1}: {len(failed)} reward failures "
                          f"({sum(r['kind'] == 'timeout' for r in failed)} timeouts) scored 0; "
                          f"see {out_dir / 'reward_failures.jsonl'}")
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", fmt=f"{metrics['format_rate']:.2f}",
                            acc=f"{metrics['accuracy']:.2f}", len=f"{metrics['completion_length']:.0f}",
                            s=f"{step_time:.1f}")
            bar.update(1)
            if c.log_completions_steps and (step + 1) % c.log_completions_steps == 0:
                best = max(range(len(records)), key=lambda i: records[i]["reward"])
                r = records[best]
                bar.write(f"[step {step + 1}] reward={r['reward']:.2f} Q: {r['question']}\n"
                          f"{r['completion'][:400]}\n")

        if nonfinite_streak >= c.max_consecutive_nonfinite:
            raise TrainingError(
                f"{nonfinite_streak} non-finite updates in a row (max_consecutive_nonfinite="
                f"{c.max_consecutive_nonfinite}), the last at step {step + 1}; stopped. Last good checkpoint: "
                f"{latest_checkpoint(out_dir) or 'none'} (--resume replays the same batches, so change the cause first)")
        stop = _stop_requested(acc) and step + 1 < c.max_steps
        saved = None
        if (c.save_steps and (step + 1) % c.save_steps == 0) or step + 1 == c.max_steps or stop:
            if nonfinite_streak == 0:
                saved = save(step + 1)
            elif acc.is_main_process:
                bar.write(f"r1kit: step {step + 1}: no checkpoint after a non-finite update; last good checkpoint: "
                          f"{latest_checkpoint(out_dir) or 'none'}")
        if stop:
            why = f"stopped by {_STOP['signal'] or 'a signal to another process'} after step {step + 1}"
            where = (f"checkpoint saved: {saved}" if saved else
                     f"last good checkpoint: {latest_checkpoint(out_dir) or 'none'}")
            raise TrainingStopped(f"{why}; {where}", step + 1, str(saved or latest_checkpoint(out_dir) or ""),
                                  main_process=acc.is_main_process)
        yield metrics
    bar.close()
    acc.wait_for_everyone()


def make_sampler(c: GRPOConfig, policy, dtype: torch.dtype, device) -> tuple[object, object]:
    """(what `rollout.generate` samples from, vLLM engine or None): a FusedDecoder (Llama-family models),
    the policy itself, or a plain copy in another dtype. Called before accelerate wraps the policy. Copies
    are refreshed from the policy before each rollout."""
    if c.rollout_engine == "vllm":
        if not torch.cuda.is_available():
            raise ConfigError("rollout_engine=vllm needs a CUDA GPU and none is visible; use rollout_engine=hf")
        from .vllm_engine import VLLMEngine

        engine = VLLMEngine(resolve_model_path(c.model), dtype=c.vllm_dtype, gpu_memory_utilization=c.vllm_gpu_memory_utilization,
                            max_model_len=c.max_prompt_length + c.max_completion_length, seed=c.seed)
        return None, engine
    rollout_dtype = dtype if c.rollout_dtype == "auto" else resolve_dtype(c.rollout_dtype)
    engine = c.rollout_engine
    if engine == "auto":
        engine = "hf" if unsupported_reason(policy) else "fused"
    if engine == "fused":
        reason = unsupported_reason(policy)
        if reason:
            raise ConfigError(f"rollout_engine=fused does not support this model: {reason}; use rollout_engine=hf")
        return FusedDecoder(policy, rollout_dtype), None
    if rollout_dtype == dtype:
        return policy, None
    return rollout_copy(policy, rollout_dtype).to(device), None


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
                questions: list[str], judges: dict) -> tuple[list[float], dict[str, list[float]], list[RewardFailure]]:
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
        timeout=c.reward_timeout, on_failure=c.reward_failure)
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
