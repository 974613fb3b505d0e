"""Evaluation as the DeepSeek-R1 paper reports it: pass@1 averaged over k samples (temperature 0.6,
top-p 0.95), the unbiased pass@k, and majority vote cons@k, on GSM8K, MATH-500, AIME 2024/2025 and AMC 2023.

Design decisions:
- Benchmarks are read from the data folder (default ../shared/data, or R1KIT_DATA_DIR / --data_dir) with
  each file's own field names; gold answers keep their quirks (AIME24 "025", AMC23 27.0, AIME25 ints,
  GSM8K "#### 1,234") and are compared through `answers_match`, which normalises numbers.
- Answers are extracted and compared by `r1kit.rewards.answers` (`extract_final_answer`, `answers_match`), the
  one module that decides what a model's answer is and when two answers are the same.
- cons@k groups equivalent answers (`0.5` and `\\frac{1}{2}` are one vote) and breaks ties in favour of
  the answer that appeared first among the k samples, so the result is deterministic.
- The same rollout engine as training samples the completions, so evaluation during training costs no
  second code path.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from r1kit.data.problems import Problem
from r1kit.data.templates import build_prompt
from r1kit.rewards.answers import (
    ANSWER_IS,
    ANSWER_OPEN,
    THINK_CLOSE,
    THINK_OPEN,
    answers_match,
    extract_final_answer,
    last_boxed,
)
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN, final_answer, parse_readable, split_reasoning
from r1kit.rewards.registry import REWARDS
from r1kit.rewards.tags import think_span
from r1kit.rollout.decoder import FusedDecoder, unsupported_reason
from r1kit.rollout.sampling import generate

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PROMPT_STYLES = ("r1zero", "r1chat", "chat", "fewshot", "readable")
# the evaluation style that asks for answers the way a training template does
STYLE_FOR_TEMPLATE = {"r1zero": "r1zero", "chat": "r1chat", "plain": "fewshot"}

# Hand-written worked examples for base models (the few-shot style); each ends with "The answer is N."
FEWSHOT_EXAMPLES = [
    ("Tom has 3 boxes with 4 pencils each. He gives away 5 pencils. How many pencils does he have left?",
     "3 boxes with 4 pencils is 3 * 4 = 12 pencils. After giving away 5 he has 12 - 5 = 7. The answer is 7."),
    ("What is the value of 2x + 3 when x = 5?",
     "Substituting x = 5 gives 2 * 5 + 3 = 10 + 3 = 13. The answer is 13."),
    ("A shirt costs $20 and is on sale for 25% off. What is the sale price in dollars?",
     "25% of 20 is 0.25 * 20 = 5, so the sale price is 20 - 5 = 15. The answer is 15."),
]


def eval_prompt(question: str, tokenizer, style: str, prefill: str = "<think>") -> str:
    """The prompt for one problem in the given style."""
    if style == "r1zero":
        return build_prompt(question, tokenizer, "r1zero", prefill)
    if style == "r1chat":  # the chat template with r1kit's R1 system prompt (answer in <answer> tags)
        return build_prompt(question, tokenizer, "chat", prefill)
    if style == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt_style=chat: this model's tokenizer has no chat template")
        # DeepSeek's usage advice for R1: no system prompt, the instruction inside the user turn
        messages = [{"role": "user", "content": f"{question.strip()}\n{BOXED_INSTRUCTION}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if style == "fewshot":
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEWSHOT_EXAMPLES)
        return f"{shots}Question: {question.strip()}\nAnswer:"
    raise ValueError(f"prompt_style={style!r}: choose one of {', '.join(PROMPT_STYLES)}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples of which c are correct."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    # the product form avoids huge binomials: C(n-c, k)/C(n, k) = prod_{i=n-c+1}^{n} (1 - k/i)
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_vote(answers: list[str | None]) -> str | None:
    """The most common answer, equivalent answers grouped; ties go to the group that appeared first."""
    groups: list[list[str]] = []
    for a in answers:
        if a is None or not a.strip():
            continue
        for g in groups:
            if a == g[0] or answers_match(a, g[0]) or answers_match(g[0], a):
                g.append(a)
                break
        else:
            groups.append([a])
    if not groups:
        return None
    best = max(len(g) for g in groups)
    return next(g[0] for g in groups if len(g) == best)  # first-appearing among the largest


def format_ok(completion: str, style: str) -> bool:
    """Did the completion mark its answer the way the style asks?"""
    if style in ("r1zero", "r1chat"):
        return REWARDS["format"]([completion], [""])[0] == 1.0
    if style == "chat":
        return last_boxed(completion) is not None
    return bool(ANSWER_IS.search(completion))


def no_think_prefill(style: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
    """How a response starts with its think removed, for a prompt style: an empty think block where the
    style has one, else the closest equivalent (the final-answer marker straight away)."""
    if style in ("r1zero", "r1chat"):
        return f"{THINK_OPEN}\n{THINK_CLOSE}\n{ANSWER_OPEN}"
    if style == "readable":
        return f"{special_token}\n{special_token}"
    if style == "chat":
        return "The answer is $\\boxed{"
    return " The answer is"  # fewshot: the prompt ends with "Answer:"


def think_of(text: str, style: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> tuple[str, str]:
    """(the think's text, its state: closed, empty, unclosed or none) of a completion in a prompt style;
    for the styles without think tags, the text before the final answer is the think."""
    if style in ("r1zero", "r1chat"):
        return think_span(text)
    if style == "readable":
        if text.count(special_token) >= 2:
            reasoning = split_reasoning(text, special_token)[0]
            return reasoning, "closed" if reasoning.strip() else "empty"
        return (text.split(special_token, 1)[-1], "unclosed") if special_token in text else ("", "none")
    marker = text.rfind("\\boxed") if style == "chat" else text.rfind("answer is")
    if marker == -1:
        return text, "unclosed"
    return text[:marker], "closed" if text[:marker].strip() else "empty"


@dataclass(frozen=True)
class PromptStyle:
    """How problems are put to the model and its answers read (see `evaluate`)."""

    style: str = "r1zero"
    template: str = "plain"  # the readable style's template
    special_token: str = DEFAULT_SPECIAL_TOKEN
    system_prompt: str | None = None  # r1chat: the run's system message (default: r1kit's R1 instruction)
    examples: tuple[tuple[str, str], ...] = ()  # r1chat: worked (question, response) turns before the question

    def prompt(self, question: str, tokenizer, prefill: str) -> str:
        if self.style == "readable":
            return build_prompt(question, tokenizer, self.template, prefill)
        if self.style == "r1chat":
            return build_prompt(question, tokenizer, "chat", prefill, system_prompt=self.system_prompt,
                                examples=self.examples)
        return eval_prompt(question, tokenizer, self.style, prefill)

    def read(self, text: str) -> tuple[str | None, bool]:
        """(the extracted answer, whether the completion is well-formed for the style)."""
        if self.style == "readable":
            tok = self.special_token
            answer = final_answer(text, tok)
            parts = text.split(tok)
            if answer is None and len(parts) == 3 and not parts[1].strip():  # an empty reasoning: the think removed
                answer = extract_final_answer(parts[2], allow_last_number=True)
            return answer, parse_readable(text, tok) is not None
        return extract_final_answer(text, allow_last_number=self.style == "fewshot"), format_ok(text, self.style)


def _sample_records(sampler, tokenizer, problems: list[Problem], ps: PromptStyle, prefill: str, mode: str, *,
                    device, num_samples: int, max_new_tokens: int, temperature: float, top_p: float, batch_size: int,
                    seed: int, progress=None) -> list[dict]:
    """num_samples completions per problem, each read and scored, as per-sample records."""
    stops = ("</answer>",) if ps.style in ("r1zero", "r1chat") else ("\n\nQuestion:",) if ps.style == "fewshot" else ()
    records = []
    for b in range(0, len(problems), batch_size):
        batch = problems[b: b + batch_size]
        prompts = [ps.prompt(p.question, tokenizer, prefill) for p in batch]
        gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + b)
        r = generate(sampler, tokenizer, prompts, num_generations=num_samples, max_new_tokens=max_new_tokens,
                     temperature=temperature, top_p=top_p, stop_strings=stops, generator=gen)
        for i, p in enumerate(batch):
            for j in range(num_samples):
                row = i * num_samples + j
                text = prefill + r.completions[row]
                if ps.style == "fewshot":
                    text = text.split("\n\nQuestion:")[0]
                answer, well_formed = ps.read(text)
                think, state = think_of(text, ps.style, ps.special_token)
                records.append({"problem_id": p.id, "sample": j, "mode": mode, "prompt": prompts[i],
                                "completion": text, "extracted": answer, "gold": p.answer,
                                "correct": answer is not None and answers_match(answer, p.answer),
                                "format_ok": well_formed, "length": int(r.lengths[row]),
                                "truncated": bool(r.truncated[row]), "groups": p.groups, "think_state": state,
                                "think_tokens": len(tokenizer.encode(think, add_special_tokens=False)) if think else 0})
        if progress is not None:
            progress(len(batch))
    return records


def evaluate(model, tokenizer, problems: list[Problem], *, num_samples: int = 4, temperature: float = 0.6,
             top_p: float = 0.95, max_new_tokens: int = 512, prompt_style: str = "r1zero", prefill: str = "<think>",
             batch_size: int = 8, seed: int = 0, pass_k: tuple[int, ...] = (), progress=None,
             template: str = "plain", special_token: str = DEFAULT_SPECIAL_TOKEN, system_prompt: str | None = None,
             examples: tuple[tuple[str, str], ...] = (), think_gain: bool = True,
             sampler=None) -> tuple[dict, list[dict]]:
    """Sample `num_samples` completions per problem and score them; returns (summary, per-sample records).

    With `think_gain` the same problems are sampled again, with the same budget, with the think removed
    (the response starts as `no_think_prefill` says): pass@1_no_think, and think_gain = pass@1 -
    pass@1_no_think, say whether the think does the work. Those records carry mode "no_think".

    The "readable" style (models trained on R1's readable format, e.g. after cold-start SFT) renders the
    question with `template` plus `prefill`, lets the model stop at EOS, reads the answer from the final
    part (the summary; see r1kit.rewards.readable.final_answer) and counts a sample well-formed when it is
    `special_token reasoning special_token summary`.
    """
    if num_samples < 1:
        raise ValueError("num_samples must be >= 1")
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style={prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    if examples and prompt_style != "r1chat":
        raise ValueError(f"worked examples are shown as earlier chat turns: prompt_style r1chat, not {prompt_style}")
    ps = PromptStyle(prompt_style, template, special_token, system_prompt, tuple(examples))
    start = time.perf_counter()
    # Llama-family models decode through the fused decoder (same function, fewer ops per token), on a copy
    # of the weights taken once for the whole evaluation
    if sampler is None:
        sampler = FusedDecoder(model) if unsupported_reason(model) is None else model
    kw = dict(device=next(model.parameters()).device, num_samples=num_samples, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
              batch_size=batch_size, seed=seed)
    think_prefill = prefill if prompt_style in ("r1zero", "r1chat", "readable") else ""
    records = _sample_records(sampler, tokenizer, problems, ps, think_prefill, "think", progress=progress, **kw)
    if think_gain:
        records += _sample_records(sampler, tokenizer, problems, ps, no_think_prefill(prompt_style, special_token),
                                   "no_think", **kw)
    return summarize(records, num_samples, pass_k, time.perf_counter() - start), records


def _pass1(problems: list[list[dict]]) -> float:
    """Mean over problems of the share of a problem's samples that are correct."""
    return sum(sum(r["correct"] for r in rs) / len(rs) for rs in problems) / max(len(problems), 1)


def _by_problem(records: list[dict]) -> list[list[dict]]:
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        by_problem.setdefault(r["problem_id"], []).append(r)
    return list(by_problem.values())


def think_metrics(records: list[dict]) -> dict:
    """How the think looked in the with-think samples: its mean length in tokens and the shares of
    completions whose think is closed around some text, empty, or never closed."""
    n = max(len(records), 1)
    states = [r.get("think_state", "none") for r in records]
    return {"think_tokens": sum(r.get("think_tokens", 0) for r in records) / n,
            **{f"think_{s}_rate": states.count(s) / n for s in ("closed", "empty", "unclosed")}}


def summarize(records: list[dict], num_samples: int, pass_k: tuple[int, ...] = (), seconds: float = 0.0) -> dict:
    """Benchmark metrics from per-sample records (num_samples records per problem and mode); the records
    of mode "no_think" give pass@1_no_think and think_gain."""
    n = num_samples
    think = [r for r in records if r.get("mode", "think") == "think"]
    problems = _by_problem(think)
    count = max(len(problems), 1)
    mean = lambda xs: sum(xs) / max(len(xs), 1)  # noqa: E731

    def voted_correct(rs: list[dict]) -> bool:
        vote = majority_vote([r["extracted"] for r in rs])
        return vote is not None and answers_match(vote, rs[0]["gold"])

    summary = {
        "problems": len(problems),
        "samples_per_problem": n,
        "pass@1": _pass1(problems),
        f"cons@{n}": sum(voted_correct(rs) for rs in problems) / count,
        "format_rate": mean([r["format_ok"] for r in think]),
        "mean_length": mean([r["length"] for r in think]),
        "truncated_frac": mean([r["truncated"] for r in think]),
        **think_metrics(think),
        "seconds": seconds,
    }
    no_think = [r for r in records if r.get("mode") == "no_think"]
    if no_think:
        summary["pass@1_no_think"] = _pass1(_by_problem(no_think))
        summary["think_gain"] = summary["pass@1"] - summary["pass@1_no_think"]
    for k in pass_k:
        if 1 < k <= n:
            summary[f"pass@{k}"] = sum(pass_at_k(len(rs), sum(r["correct"] for r in rs), k) for rs in problems) / count
    for g in sorted({g for rs in problems for g in rs[0]["groups"]}):
        buckets: dict[str, list[float]] = {}
        for rs in problems:
            buckets.setdefault(rs[0]["groups"][g], []).append(mean([r["correct"] for r in rs]))
        summary[f"pass@1_by_{g}"] = {key: mean(v) for key, v in sorted(buckets.items())}
    return summary


def format_table(name: str, summary: dict) -> str:
    """A plain-text table of a summary (the headline metrics, then per-group pass@1)."""
    n = summary["samples_per_problem"]
    keys = ["pass@1"] + sorted(k for k in summary if k.startswith("pass@") and k[5:].isdigit() and k != "pass@1")
    keys += [f"cons@{n}", *([f"prm@{n}"] if f"prm@{n}" in summary else []), "format_rate", "mean_length"]
    keys += [k for k in ("pass@1_no_think", "think_gain", "think_tokens", "think_closed_rate", "think_empty_rate",
                         "think_unclosed_rate") if k in summary]
    lines = [f"{name}: {summary['problems']} problems x {n} samples ({summary['seconds']:.0f} s)"]
    lines += [f"  {k:<20}{summary[k]:.1f}" if k in ("mean_length", "think_tokens") else f"  {k:<20}{summary[k]:.4f}"
              for k in keys]
    for k, v in summary.items():
        if k.startswith("pass@1_by_"):
            lines.append(f"  {k}:")
            lines += [f"    {g:<28}{x:.4f}" for g, x in v.items()]
    return "\n".join(lines)


def write_outputs(out_dir: str | Path, name: str, summary: dict, records: list[dict], settings: dict) -> None:
    """summary.json and samples.jsonl, each written to a temporary file and renamed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from r1kit.core.files import jsonl_text, write_atomic, write_json

    write_json(out / "summary.json", {"benchmark": name, **summary, "settings": settings})
    write_atomic(out / "samples.jsonl", jsonl_text(records))
    write_atomic(out / "table.txt", format_table(name, summary) + "\n")
