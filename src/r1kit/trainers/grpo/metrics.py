"""What a GRPO step reports: its metrics line (gathered over processes), the alerts it raises, the records
it writes (samples.jsonl, reward_failures.jsonl, a sample completion now and then, the report every
report_steps) and the held-out evaluation at step 0, every eval_steps and the end."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from torch import Tensor

from r1kit.core.files import append_jsonl
from r1kit.data.problems import Problem
from r1kit.evaluation.evaluate import STYLE_FOR_TEMPLATE, evaluate, summarize
from r1kit.report.html import write_report_safely
from r1kit.rewards.tags import copies_example, copies_template, is_guess, think_span
from r1kit.rollout.decoder import FusedDecoder
from r1kit.rollout.engines import LocalEngine
from r1kit.rollout.sampling import Rollout
from r1kit.trainers.grpo.scoring import Scores, metric_scores, nanmean_or_zero, process_metrics
from r1kit.trainers.grpo.setup import GRPOSetup


def initial_eval(s: GRPOSetup) -> dict:
    """The held-out evaluation before any update (step 0 of the curve)."""
    initial = {"step": 0, **run_eval(s, 0)}
    s.run.log(initial, 0, force=True)
    s.run.write(eval_line(initial, 0))
    return initial


def step_metrics(s: GRPOSetup, step: int, rollout: Rollout, scores: Scores, zero_std: Tensor, update: UpdateStats,
                 step_time: float, t_gen: float) -> dict:
    """The step's metrics line, gathered over processes."""
    c, run, G, g = s.c, s.run, s.G, s.run.gather
    per_fn, texts, answers, kinds = scores.per_fn, scores.texts, scores.answers, scores.kinds
    all_rewards, lengths = g(scores.totals), g(rollout.lengths.float())
    accuracy = g(metric_scores(("accuracy", "readable_accuracy"), per_fn, texts, answers, kinds, c.reward_timeout))
    fmt = g(metric_scores(("format", "readable_format"), per_fn, texts, answers, kinds, c.reward_timeout))
    names = list(per_fn)
    counts = [sum(f.reward == n and f.kind == kind for f in scores.failures) for n in names for kind in ("error", "timeout")]
    counts = g(counts).view(-1, len(names), 2).sum(0) if names else None  # [rewards, (errors, timeouts)]
    reduced = run.reduce_sums(update.sums)
    tok = max(reduced["tokens"], 1.0)
    logged: dict[str, list[float]] = {}  # what rewards logged with log_metric, over processes: TRL averages it
    for name, values in run.gather_objects([(n, v) for n, vs in scores.metrics.items() for v in vs]):
        logged.setdefault(name, []).append(values)
    grouped = all_rewards.view(-1, G)
    return {
        "step": step + 1,
        "reward": all_rewards.mean().item(),
        "reward_std": grouped.std(dim=1).mean().item(),
        **{f"rewards/{n}": m for n, m in ((n, g(v).nanmean().item()) for n, v in per_fn.items()) if math.isfinite(m)},
        **{f"rewards/{n}/failures": int(counts[i, 0]) for i, n in enumerate(names)},
        **{f"rewards/{n}/timeouts": int(counts[i, 1]) for i, n in enumerate(names)},
        "accuracy": nanmean_or_zero(accuracy),
        "format_rate": nanmean_or_zero(fmt),
        # completions that copy the template's example ("reasoning process here"): a reward that pays for
        # them, or a policy that learned them, is a failure to see at once
        "template_copy_rate": g([float(copies_template(t)) for t in texts]).mean().item(),
        # thinks that copy a worked example shown in the prompt instead of working the question out
        **({"example_copy_rate": g([float(copies_example(t, tuple(r for _, r in s.examples))) for t in texts])
            .mean().item()} if s.examples else {}),
        # an answer after an unclosed or empty think: the policy guesses instead of working it out
        "guess_rate": g([float(is_guess(t)) for t in texts]).mean().item(),
        "think_length": g([_think_tokens(s.tokenizer, t) for t in texts]).mean().item(),
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
        **({"importance_weight": reduced["is_weight"] / tok} if s.algo.importance_sampling_cap > 0 else {}),
        "grad_norm": update.grad_norms[0],
        "skipped_updates": update.skipped,
        "learning_rate": run.learning_rate,
        "step_time": step_time,
        "generation_time": t_gen,
        # sequences processed per second counting each prompt once per completion (as other tools do)
        "tokens_per_second": (reduced["tokens"] + G * g(rollout.prompt_mask.sum()).sum().item()) / step_time,
        "generated_tokens_per_second": lengths.sum().item() / t_gen,
        "data/skipped_lines": s.skipped_lines,
        **{name: sum(values) / len(values) for name, values in logged.items()},
        **process_metrics(scores, accuracy, g),
    }


def _think_tokens(tokenizer, text: str) -> int:
    think, state = think_span(text)
    return len(tokenizer.encode(think, add_special_tokens=False)) if state != "none" and think else 0


def progress_postfix(m: dict) -> dict[str, str]:
    return dict(reward=f"{m['reward']:.3f}", fmt=f"{m['format_rate']:.2f}", acc=f"{m['accuracy']:.2f}",
                guess=f"{m['guess_rate']:.2f}", think=f"{m['think_length']:.0f}", len=f"{m['completion_length']:.0f}",
                s=f"{m['step_time']:.1f}")


def eval_line(m: dict, step: int) -> str:
    """The one line an evaluation prints: accuracy with and without the think, and what the think looked like."""
    line = f"[step {step}] eval pass@1={m['eval/pass@1']:.3f}"
    if "eval/think_gain" in m:
        line += f" no_think={m['eval/pass@1_no_think']:.3f} think_gain={m['eval/think_gain']:+.3f}"
    return (line + f" think={m['eval/think_tokens']:.0f} tok (unclosed {m['eval/think_unclosed_rate']:.2f}, "
            f"empty {m['eval/think_empty_rate']:.2f}) format={m['eval/format_rate']:.2f}")


def raise_alerts(s: GRPOSetup, metrics: dict) -> None:
    """Print each alert the step raises, once, as one line; with alert_stop, stop after this step (a
    checkpoint is saved, as for SIGTERM). Every process sees the same gathered metrics, so the same alerts."""
    for alert in s.alerts.update(metrics):
        s.run.write(alert.line())
        if s.c.alert_stop:
            s.run.request_stop(f"alert {alert.kind}")


def write_step_records(s: GRPOSetup, step: int, batch: list[Problem], rollout: Rollout, scores: Scores,
                       advantages: Tensor) -> None:
    """samples.jsonl (every completion with its rewards and advantage), reward_failures.jsonl, the
    report every report_steps, and a sample completion every log_completions_steps."""
    c, run, G = s.c, s.run, s.G
    texts, per_fn = scores.texts, scores.per_fn
    if advantages.dim() == 2:  # per token (prm_mode=steps): the first token's holds every step's share
        advantages = advantages[:, 0]
    records = [{"step": step + 1, "prompt_id": e.id, "question": e.question, "answer": e.answer,
                "completion": texts[i * G + j], "reward": scores.totals[i * G + j],
                "rewards": {n: float(v[i * G + j]) for n, v in per_fn.items() if math.isfinite(v[i * G + j])},
                **({"kind": e.kind} if e.kind != "reasoning" else {}),
                "advantage": float(advantages[i * G + j]), "length": int(rollout.lengths[i * G + j]),
                "truncated": bool(rollout.truncated[i * G + j]),
                # columns the rewards logged with log_extra (TRL's completions table)
                **({"extra": {k: _plain(v[i * G + j]) for k, v in scores.extra.items() if v[i * G + j] is not None}}
                   if scores.extra else {})}
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


def _plain(value: object) -> object:
    """A value a reward logged, as JSON can hold it (its text otherwise)."""
    return value if isinstance(value, (str, int, float, bool, list, dict)) else str(value)


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
                          prompt_style=STYLE_FOR_TEMPLATE[c.template] if c.eval_style == "auto" else c.eval_style,
                          prefill=c.prefill, template=c.template, special_token=c.special_token,
                          batch_size=max(1, c.per_device_train_batch_size // c.eval_num_samples),
                          seed=c.seed + run.rank, system_prompt=c.system_prompt, examples=s.examples,
                          think_gain=c.eval_think_gain,
                          sampler=eval_sampler(s, step))
    records = run.gather_objects(records)
    summary = summarize(records, c.eval_num_samples)
    if run.is_main:
        append_jsonl(run.out_dir / "eval_samples.jsonl", [{"step": step, **r} for r in records])
    keep = ("pass@1", f"cons@{c.eval_num_samples}", "format_rate", "mean_length", "pass@1_no_think", "think_gain",
            "think_tokens", "think_closed_rate", "think_empty_rate", "think_unclosed_rate")
    return {**{f"eval/{k}": summary[k] for k in keep if k in summary}, "eval/seconds": time.perf_counter() - t0}


@dataclass
class UpdateStats:
    sums: dict[str, float]  # token sums over the first iteration, this process
    grad_norms: list[float]  # one per optimizer update
    skipped: int  # updates skipped as non-finite
