"""Step labels the way the field makes them automatically (`r1kit prm-data`): Math-Shepherd (Wang et al.
2024, arXiv 2312.08935).

For each problem the model writes `num_generations` solutions; each is split into steps
(r1kit.rewards.steps); from the prefix that ends with step k the same model writes `num_rollouts`
completions, and step k's label is the share of them that reach the right answer (Math-Shepherd's soft
estimate; `r1kit prm --label_type hard` trains on "any reached it"). The last step states the answer, so
its label is the solution's own correctness, with no rollouts.

Design decisions:
- The model that labels is the policy itself (Math-Shepherd's "completer"), sampled through a
  `rollout.completions.Completer`, so a test scripts the continuations and checks the shares by hand.
- A prefix shared by several solutions of a problem (the first step is often the same) is rolled out
  once and its label reused: the estimate is the same, the cost is not. Identical solutions of a problem
  are labelled once (`deduplicate`).
- Correctness is the rejection sampler's rule (`pipeline.rejection.check_correct`: the answer stated in
  the final part against the gold); problems whose gold rules cannot check are skipped and counted.
- data.jsonl holds one record per solution: prompt, answer, problem_id, completion, steps, labels,
  counts ([correct, rollouts] per step), step_mode, correct; prm_data.json the counts of the run (label
  histogram, rollouts, seconds). Both are written to temporary files and renamed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1kit.core.errors import ConfigError, DataError
from r1kit.core.files import jsonl_text, write_atomic, write_json
from r1kit.core.options import load_config, need, need_choice, opt
from r1kit.data.options import DataOptions, PromptOptions
from r1kit.data.problems import Problem
from r1kit.data.templates import build_prompt
from r1kit.models.options import ModelOptions
from r1kit.pipeline.rejection import check_correct, gold_is_checkable
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN
from r1kit.rewards.steps import STEP_MODES, step_ends
from r1kit.rollout.completions import Completer
from r1kit.rollout.options import SamplingOptions

OUTPUT_FILES = ("data.jsonl", "prm_data.json")


@dataclass
class PRMDataConfig(SamplingOptions, PromptOptions, DataOptions, ModelOptions):
    num_rollouts: int = opt(8, "N: completions rolled out from each step's prefix; a step's label is the share that "
                               "reach the right answer")
    max_problems: int | None = opt(64, "label the first N problems of the dataset (default: 64; null: all)")
    step_mode: str = opt("lines", f"where a step ends: {', '.join(STEP_MODES)} (of the chain of thought; the final "
                                  f"part is the last step)")
    special_token: str = opt(DEFAULT_SPECIAL_TOKEN, "the readable format's separator")
    deduplicate: bool = opt(True, "label identical solutions of a problem once")
    batch_size: int = opt(8, "prompts per generation batch")
    seed: int = opt(42, "seed for the arithmetic task and sampling")
    output_dir: str = opt("runs/prm_data", "folder for data.jsonl and prm_data.json")
    overwrite_output_dir: bool = opt(False, "replace the outputs of an earlier run in output_dir")
    # SamplingOptions' and PromptOptions', with step labelling's defaults
    num_generations: int = opt(4, "solutions sampled per problem, each labelled step by step")
    stop_strings: list[str] = opt([], "generation also stops after any of these strings (it always stops at EOS)")
    template: str = opt("plain", "'plain', 'r1zero' (the paper's template) or 'chat', as the policy was trained")
    max_completion_length: int = opt(128, "most new tokens per solution and per rollout")

    def check(self) -> None:
        need(self.num_rollouts >= 1, f"num_rollouts={self.num_rollouts}: must be >= 1")
        need(self.num_generations >= 1, f"num_generations={self.num_generations}: must be >= 1")
        need(self.max_problems is None or self.max_problems >= 1, f"max_problems={self.max_problems}: must be >= 1")
        need_choice("step_mode", self.step_mode, STEP_MODES)
        need(bool(self.special_token.strip()), "special_token must not be blank")
        need(self.batch_size >= 1, f"batch_size={self.batch_size}: must be >= 1")


def make_prm_data_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PRMDataConfig:
    return load_config(PRMDataConfig, None, yaml_path, overrides)


def _continue(prompt: str, text: str, prefill: str, end: int) -> str:
    """The model's prompt for continuing `text` (prefill + generated) after its first `end` characters:
    the prompt (which ends with the prefill) and the generated part up to there."""
    return prompt + text[len(prefill):max(end, len(prefill))]


def label_problems(completer: Completer, problems: list[Problem], prompts: list[str], *, num_solutions: int,
                   num_rollouts: int, seed: int, step_mode: str = "lines", special_token: str = DEFAULT_SPECIAL_TOKEN,
                   prefill: str = "", deduplicate: bool = True) -> tuple[list[dict], dict]:
    """Sample `num_solutions` solutions per problem (prompts[i] is problems[i]'s prompt, prefill included),
    label each step by the share of `num_rollouts` continuations from its prefix that are correct, the last
    step by the solution's own correctness. Returns (records, counts)."""
    sampled = completer.complete(prompts, num_solutions, seed)
    solutions, prefixes, blank = [], {}, 0  # (problem, sample, text, ends); (problem, prefix) -> its rollouts
    for p, outs in enumerate(sampled):
        seen = set()
        for j, out in enumerate(outs):
            text = prefill + out
            ends = step_ends(text, step_mode, special_token)
            if not ends:
                blank += 1
                continue
            if deduplicate and text in seen:
                continue
            seen.add(text)
            solutions.append((p, j, text, ends))
            for e in ends[:-1]:
                prefixes.setdefault((p, text[:e]), None)
    keys = list(prefixes)
    rollouts = completer.complete([_continue(prompts[p], prefix, prefill, len(prefix)) for p, prefix in keys],
                                  num_rollouts, seed + 1) if keys else []
    correct = {key: sum(bool(check_correct(key[1] + c, problems[key[0]].answer, special_token)) for c in outs)
               for key, outs in zip(keys, rollouts)}
    records = []
    for p, j, text, ends in solutions:
        done = bool(check_correct(text, problems[p].answer, special_token))
        counts = [[correct[(p, text[:e])], num_rollouts] for e in ends[:-1]] + [[int(done), 1]]
        bounds = [0, *ends]
        records.append({"prompt": problems[p].question, "answer": problems[p].answer, "problem_id": problems[p].id,
                        "sample": j, "completion": text, "steps": [text[a:b] for a, b in zip(bounds, bounds[1:])],
                        "labels": [c / n for c, n in counts], "counts": counts, "step_mode": step_mode,
                        "correct": done})
    return records, label_counts(records, len(problems), blank, len(keys) * num_rollouts)


def label_counts(records: list[dict], problems: int, blank: int, rollouts: int) -> dict:
    """What a labelling run produced: solutions, steps, how the labels fall (0, 1, in between)."""
    labels = [v for r in records for v in r["labels"][:-1]]  # the rolled-out steps (the last is the outcome)
    return {"problems": problems, "solutions": len(records), "blank_solutions": blank,
            "correct_solutions": sum(r["correct"] for r in records), "steps": sum(len(r["labels"]) for r in records),
            "rolled_out_steps": len(labels), "rollouts": rollouts,
            "labels_zero": sum(v == 0 for v in labels), "labels_one": sum(v == 1 for v in labels),
            "labels_between": sum(0 < v < 1 for v in labels),
            "mean_label": sum(labels) / len(labels) if labels else None}


def build_prm_data(c: PRMDataConfig) -> dict:
    """Label the steps of the model's solutions to the config's problems; writes data.jsonl and prm_data.json
    to output_dir and returns the counts."""
    c.validate()
    out = Path(c.output_dir)
    if not c.overwrite_output_dir and any((out / name).exists() for name in OUTPUT_FILES):
        raise ConfigError(f"output_dir {out} already holds step labels; pass --overwrite_output_dir to replace them")
    problems = DataOptions.from_config(c).problems(c.seed)
    if c.max_problems:
        problems = problems[:c.max_problems]
    checkable = [p for p in problems if gold_is_checkable(p.answer)]
    if not checkable:
        raise DataError(f"none of the {len(problems)} problems has a gold answer rules can check")
    t0 = time.perf_counter()
    completer, tokenizer = sampler_completer(ModelOptions.from_config(c), max_new_tokens=c.max_completion_length,
                                             temperature=c.temperature, top_p=c.top_p,
                                             stop_strings=tuple(c.stop_strings), batch_size=c.batch_size,
                                             max_prompt_length=c.max_prompt_length)
    prompts = [build_prompt(p.question, tokenizer, c.template, c.prefill, messages=p.messages,
                            system_prompt=c.system_prompt) for p in checkable]
    records, counts = label_problems(completer, checkable, prompts, num_solutions=c.num_generations,
                                     num_rollouts=c.num_rollouts, seed=c.seed, step_mode=c.step_mode,
                                     special_token=c.special_token, prefill=c.prefill, deduplicate=c.deduplicate)
    counts.update(unchecked_problems=len(problems) - len(checkable), seconds=round(time.perf_counter() - t0, 1),
                  model=c.model, step_mode=c.step_mode, num_rollouts=c.num_rollouts)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "data.jsonl", jsonl_text(records))
    write_json(out / "prm_data.json", counts)
    print(f"r1kit: prm-data: {counts['solutions']} solutions of {counts['problems']} problems, {counts['steps']} steps "
          f"({counts['labels_zero']} labelled 0, {counts['labels_one']} 1, {counts['labels_between']} in between; "
          f"{counts['rollouts']} rollouts) in {counts['seconds']:.0f} s", file=sys.stderr)
    return counts


def sampler_completer(m: ModelOptions, **sampling: Any) -> tuple[Completer, Any]:
    """A SamplerCompleter over the model of `m` (the fused decoder where the model supports it) with the
    sampling settings given (SamplerCompleter's fields), and the model's tokenizer."""
    import torch

    from r1kit.models.loading import load_model, load_tokenizer, resolve_dtype
    from r1kit.rollout.completions import SamplerCompleter
    from r1kit.rollout.decoder import FusedDecoder, unsupported_reason

    tokenizer = load_tokenizer(m.model, m.trust_remote_code)
    model = load_model(m.model, resolve_dtype(m.dtype), trust_remote_code=m.trust_remote_code)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    sampler = FusedDecoder(model) if unsupported_reason(model) is None else model
    return SamplerCompleter(sampler, tokenizer, **sampling), tokenizer
