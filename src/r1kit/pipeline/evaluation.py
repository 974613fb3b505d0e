"""Evaluation after each pipeline stage: the settings (`eval` in a pipeline config, and `extra_evals`), the
plan for one stage (its own prompt format), and the run that writes each evaluation to the stage's folder.

Design decisions:
- Every stage that yields a language model is evaluated the same way (one benchmark, k samples,
  temperature 0.6, top-p 0.95 by default), each in its own output format (`style: auto`): a stage trained on
  the paper's template is asked in it, a stage with any other template in the readable format.
- Each evaluation also samples the same problems with the think removed (pass@1_no_think, think_gain) and
  reports pass@k at k = num_samples: the ceiling that RL sharpens toward, next to pass@1.
- `extra_evals` are further held-out sets, each a mapping of settings laid over the stage's own (so the
  prompt format stays the stage's): a harder split measures generalisation beyond the training
  distribution with the same checkpoints. `stages: [...]` limits one to some stages.
- A benchmark with fewer problems than `limit` is an error (a figure measured on fewer problems than asked
  would be reported as if it were the asked size). Local files are counted when the config is read, so a
  short file fails before any stage trains; every evaluation counts again before it samples.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1kit.core.errors import ConfigError, DataError, PipelineError
from r1kit.core.options import build_dataclass, need, opt


@dataclass
class EvalSettings:
    benchmark: str = opt("gsm8k", "gsm8k, math500, aime24, aime25, amc23, a .jsonl, or 'arithmetic' (held-out synthetic)")
    limit: int = opt(50, "problems evaluated (the first N); a benchmark with fewer is an error")
    num_samples: int = opt(4, "k samples per problem (pass@1 averaged over k, pass@k, cons@k)")
    max_new_tokens: int = opt(256, "most new tokens per sample")
    temperature: float = opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = opt(0.95, "top-p (paper: 0.95)")
    style: str = opt("auto", "auto (the stage's own format), r1zero, r1chat, chat, fewshot or readable")
    template: str = opt("plain", "prompt template for the readable style when the stage has none")
    prefill: str = opt("", "response prefill when the stage has none")
    special_token: str = opt("|special_token|", "the readable format's separator")
    system_prompt: str | None = opt(None, "chat template: the system message when the stage has none "
                                          "(default: r1kit's R1 instruction)")
    prompt_examples: str | None = opt(None, "chat template: a .jsonl of worked (question, response) exchanges shown "
                                            "before each question, when the stage has none (e.g. a base model that "
                                            "answers only after a shown exchange)")
    think_gain: bool = opt(True, "also sample with the think removed: pass@1_no_think and think_gain")
    batch_size: int = opt(8, "problems per generation batch")
    seed: int = opt(0, "sampling seed")
    data_dir: str | None = opt(None, "benchmark data folder (default $R1KIT_DATA_DIR or ../shared/data)")
    arithmetic_terms: int = opt(2, "arithmetic benchmark: numbers per question")
    arithmetic_max_value: int = opt(99, "arithmetic benchmark: largest number")
    arithmetic_ops: str = opt("+", "arithmetic benchmark: operators")


def eval_settings(raw: dict, where: str) -> EvalSettings:
    """Evaluation settings from a mapping; rejects those that would only fail (or silently evaluate
    something else) after training."""
    try:
        ev = build_dataclass(EvalSettings, [(where, raw)])
    except ConfigError as e:
        raise PipelineError(str(e)) from None
    try:
        need(ev.limit >= 1 and ev.num_samples >= 1 and ev.batch_size >= 1 and ev.max_new_tokens >= 1,
             "limit, num_samples, batch_size and max_new_tokens must be >= 1")
        need(0 < ev.top_p <= 1, f"top_p={ev.top_p}: must be in (0, 1]")
        need(ev.temperature >= 0, f"temperature={ev.temperature}: must be >= 0")
        need(not ev.prompt_examples or ev.style in ("auto", "r1chat") or (ev.style == "readable" and ev.template == "chat"),
             f"prompt_examples are shown as earlier chat turns: style {ev.style} has none (use r1chat, or "
             f"readable with template chat)")
        if ev.prompt_examples:
            from r1kit.data.sources import read_examples

            read_examples(ev.prompt_examples)  # a bad file fails before any stage trains
    except ConfigError as e:
        raise PipelineError(f"{where}: {e}") from None
    return ev


def load_problems(ev: dict, where: str) -> list:
    """The held-out problems of an evaluation; fewer than `limit` (or a missing benchmark) is a PipelineError."""
    from r1kit.evaluation.benchmarks import held_out_problems

    try:
        return held_out_problems(ev["benchmark"], ev["limit"], ev["seed"], ev["data_dir"],
                                 arithmetic_terms=ev["arithmetic_terms"],
                                 arithmetic_max_value=ev["arithmetic_max_value"], arithmetic_ops=ev["arithmetic_ops"])
    except DataError as e:
        raise PipelineError(f"{where}: {e}") from None


def check_local_benchmark(raw: dict, where: str) -> None:
    """Count the problems of a local benchmark file now, before any stage runs."""
    ev = dataclasses.asdict(eval_settings(raw, where))
    if Path(ev["benchmark"]).is_file():
        load_problems(ev, where)


def parse_extra_evals(raw: Any, base: dict, path: Path) -> dict[str, tuple[dict, list[str] | None]]:
    """`extra_evals: {name: {settings..., stages: [...]}}` -> {name: (settings over the pipeline's eval,
    the stages it applies to or None for all)}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: 'extra_evals' must be a mapping of name -> evaluation settings")
    extras = {}
    for name, settings in raw.items():
        where = f"{path}: extra_evals '{name}'"
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise PipelineError(f"{path}: extra_evals: the name {name!r} must be a word (letters, digits, - and _)")
        if not isinstance(settings, dict):
            raise PipelineError(f"{where}: expected a mapping of evaluation settings")
        settings = dict(settings)
        stages = settings.pop("stages", None)
        if stages is not None and (not isinstance(stages, list) or not all(isinstance(s, str) for s in stages)):
            raise PipelineError(f"{where}: key 'stages': expected a list of stage names")
        check_local_benchmark({**base, **settings}, where)
        extras[name] = (settings, stages)
    return extras


def eval_plan(stage_eval: dict, config: Any) -> dict:
    """The evaluation settings of a stage, with style/template/prefill taken from the stage when it has them."""
    ev = build_dataclass(EvalSettings, [("eval", stage_eval)])
    plan = dataclasses.asdict(ev)
    if ev.style == "auto":
        template = getattr(config, "template", None)
        prefill = getattr(config, "prefill", None)
        if template is None:
            plan["style"] = "readable"
        elif template in ("r1zero", "chat") and "<think>" in (prefill or ""):  # the paper's tags
            plan.update(style="r1zero" if template == "r1zero" else "r1chat", prefill=prefill)
        else:
            plan.update(style="readable", template=template, prefill=prefill or "")
        plan["special_token"] = getattr(config, "special_token", ev.special_token)
        # the prompt the stage was trained with: its system message and shown exchanges
        for key in ("system_prompt", "prompt_examples"):
            if getattr(config, key, None) is not None:
                plan[key] = getattr(config, key)
    return plan


def run_eval(model_dir: str, plan: dict, out_dir: Path, where: str = "evaluation") -> dict:
    """Evaluate one model; writes out_dir/{summary.json,samples.jsonl,table.txt} and returns the summary."""
    import torch
    from tqdm.auto import tqdm

    from r1kit.evaluation.evaluate import evaluate, write_outputs
    from r1kit.models.loading import load_model, load_tokenizer

    problems = load_problems(plan, where)
    examples = ()
    if plan.get("prompt_examples"):
        from r1kit.data.sources import read_examples

        examples = read_examples(plan["prompt_examples"])
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir).to("cuda" if torch.cuda.is_available() else "cpu").eval()
    k = plan["num_samples"]
    with tqdm(total=len(problems), desc=f"eval {out_dir.parent.name}", unit="problem", leave=False) as bar:
        summary, records = evaluate(model, tokenizer, problems, num_samples=k, temperature=plan["temperature"],
                                    top_p=plan["top_p"], max_new_tokens=plan["max_new_tokens"],
                                    prompt_style=plan["style"], prefill=plan["prefill"],
                                    batch_size=plan["batch_size"], seed=plan["seed"], template=plan["template"],
                                    special_token=plan["special_token"], think_gain=plan["think_gain"],
                                    system_prompt=plan.get("system_prompt"), examples=examples,
                                    pass_k=(k,) if k > 1 else (), progress=bar.update)
    if summary["problems"] != len(problems):  # the guarantee the summary table relies on
        raise PipelineError(f"{where}: evaluated {summary['problems']} problems, {len(problems)} asked for")
    write_outputs(out_dir, plan["benchmark"], summary, records, plan)
    return summary


def headline(summary: dict, style: str) -> dict:
    """The scalar metrics of an evaluation summary, as kept in the manifest."""
    return {**{k: v for k, v in summary.items() if not isinstance(v, dict)}, "style": style}


def evaluate_stage(name: str, stage_eval: dict | None, extras: dict[str, dict], config: Any, entry: dict,
                   stage_dir: Path, log: Callable[[str], None]) -> None:
    """Evaluate a stage's model (when it has one and evaluation is on) into its manifest entry: the
    pipeline's held-out set, then each extra set."""
    entry.pop("eval", None)
    entry.pop("extra_evals", None)
    if stage_eval is None or "model" not in entry["artifacts"]:
        return
    t0 = time.perf_counter()
    plan = eval_plan(stage_eval, config)
    summary = run_eval(entry["artifacts"]["model"], plan, stage_dir / "eval", f"stage '{name}': eval")
    entry["eval"] = headline(summary, plan["style"])
    log(f"r1kit pipeline: {name}: {eval_line(summary, plan)}")
    for extra, settings in extras.items():
        xplan = eval_plan({**stage_eval, **settings}, config)
        xsum = run_eval(entry["artifacts"]["model"], xplan, stage_dir / f"eval_{extra}",
                        f"stage '{name}': extra_evals '{extra}'")
        entry.setdefault("extra_evals", {})[extra] = headline(xsum, xplan["style"])
        log(f"r1kit pipeline: {name} [{extra}]: {eval_line(xsum, xplan)}")
    entry["eval_seconds"] = round(time.perf_counter() - t0, 1)


def eval_line(summary: dict, plan: dict) -> str:
    k = plan["num_samples"]
    line = f"pass@1 {summary['pass@1']:.3f}"
    if f"pass@{k}" in summary:
        line += f", pass@{k} {summary[f'pass@{k}']:.3f}"
    line += f", cons@{k} {summary[f'cons@{k}']:.3f}"
    if "think_gain" in summary:
        line += f", think_gain {summary['think_gain']:+.3f}"
    return (line + f", think {summary['think_tokens']:.0f} tokens, format {summary['format_rate']:.2f} "
            f"({summary['problems']} problems x {k}, {plan['benchmark']}, {plan['style']} style)")
