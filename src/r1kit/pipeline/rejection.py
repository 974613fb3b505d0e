"""Rejection sampling: the SFT data of DeepSeek-R1's stage 3, sampled from the stage-2 RL checkpoint.

The paper: when reasoning-oriented RL converges, sample several responses per reasoning prompt from
that checkpoint, keep only the correct ones, drop those with mixed languages, long paragraphs or code
blocks, and add non-reasoning data (writing, factual QA, ...) reused from the DeepSeek-V3 SFT set; for
simple queries such as "hello" the response carries no chain of thought. The result (600k + 200k
samples in the paper) is the SFT set for stage 3, and also the distillation set (r1kit.pipeline.distill).

Design decisions:
- Correctness is decided by rules first (`check_correct`: the answer stated in the response's final
  part against the gold with answers.answers_match, which includes the numeric-gold "final number"
  rule of the accuracy reward). Rules cannot decide when the gold is free text (see `gold_is_checkable`);
  those samples go to a generative judge when `judge_model` is set (the paper feeds ground truth and
  prediction to DeepSeek-V3, its "generative reward model"), else they are dropped and counted.
- Correctness is a filter rule like the others: `select` marks each sample, then r1kit.pipeline.filters runs
  the full rule chain (correct, reasoning, summary, length, repetition, language, code blocks,
  deduplicate, per-prompt cap). Samples nobody could decide are dropped before it, in an "undecided"
  row of the report, so sampled = kept + the sum of every row's drops.
- Every sample is written to samples.jsonl with the rule that dropped it. filters.filter_samples
  reports counts, not which sample each rule took, so the rule is recovered by running the filters on
  each dropped sample alone (per-sample rules) and on the survivors with the per-prompt cap lifted
  (deduplicate versus cap); `select` checks that these add up to the report.
- data.jsonl holds SFT records {prompt, response, source, prompt_id, answer}: `prompt` is the raw
  question (the SFT step applies its own template) and `response` the full text after the prompt,
  prefill included, so training sees exactly the format that was sampled and filtered.
- Everything is validated before a model loads (options, dataset fields, the non-reasoning file), and
  the three outputs are written to temporary files and renamed, so a crash leaves no half file.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r1kit.core.errors import ConfigError, DataError
from r1kit.core.files import jsonl_text, write_atomic, write_json
from r1kit.core.options import DTYPE_HELP, DTYPES, Options, load_config, need, need_choice, opt
from r1kit.data.problems import Problem
from r1kit.data.sources import load_examples, read_jsonl
from r1kit.data.templates import TEMPLATES, build_prompt
from r1kit.models.loading import load_model, load_tokenizer, resolve_model_path
from r1kit.pipeline.filters import (
    FILTER_HELP,
    FilterSettings,
    filter_samples,
    format_report,
    settings_from,
    validate_filter_settings,
)
from r1kit.rewards.answers import MATH_VERIFY_TIMEOUT_S, answers_match, mv_parse, normalize_number
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN, final_answer, split_reasoning, to_readable
from r1kit.rollout.sampling import generate

OUTPUT_FILES = ("data.jsonl", "samples.jsonl", "counts.json")


@dataclass
class RejectionConfig(Options):
    # model
    model: str = opt("embedded", "the checkpoint to sample from: a model folder (the stage-2 RL checkpoint), a cached hub id or 'embedded'")
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    dtype: str = opt("auto", DTYPE_HELP)
    # data and prompts
    dataset: str = opt("arithmetic", "reasoning prompts with gold answers: 'arithmetic', 'gsm8k' (from data_dir), a data file or folder, or a cached hub dataset")
    data_dir: str | None = opt(None, "folder with benchmark data (default: $R1KIT_DATA_DIR or ../shared/data)")
    dataset_split: str = opt("train", "split file for built-in datasets (gsm8k: train or test)")
    dataset_config: str | None = opt(None, "configuration (subset) of a hub or folder dataset")
    question_field: str = opt("question", "JSONL field holding the question")
    answer_field: str = opt("answer", "JSONL field holding the gold answer")
    arithmetic_terms: int = opt(2, "arithmetic task: numbers per question")
    arithmetic_max_value: int = opt(99, "arithmetic task: largest number (difficulty)")
    arithmetic_ops: str = opt("+", "arithmetic task: operators to draw from, a subset of '+-*'")
    arithmetic_examples: int = opt(10000, "arithmetic task: number of distinct questions")
    max_prompts: int | None = opt(None, "sample for the first N prompts only (default: all)")
    template: str = opt("plain", "'plain' (the question as it is), 'r1zero' (the paper's Table 1 template) or 'chat'")
    prefill: str = opt("", "text the response is forced to start with, as in training (e.g. the special token)")
    max_prompt_length: int = opt(512, "prompts longer than this many tokens are cut from the left")
    # sampling
    num_samples: int = opt(4, "responses sampled per prompt")
    max_new_tokens: int = opt(256, "most new tokens per response (a response that hits it is marked truncated)")
    temperature: float = opt(0.6, "sampling temperature (0: greedy)")
    top_p: float = opt(0.95, "nucleus sampling")
    stop_strings: list[str] = opt([], "generation also stops after any of these strings (it always stops at EOS)")
    batch_size: int = opt(8, "prompts per generation batch")
    seed: int = opt(42, "seed for the arithmetic task and sampling (each batch is seeded from it)")
    # correctness
    judge_model: str | None = opt(None, "a local causal LM used as a generative judge for samples the rules cannot decide (free-text golds); None: those are dropped and counted")
    judge_batch_size: int = opt(8, "samples per judge forward pass")
    # filters (r1kit.filters.FilterSettings, same names and meanings)
    special_token: str = opt(DEFAULT_SPECIAL_TOKEN, FILTER_HELP["special_token"])
    language: str = opt("en", FILTER_HELP["language"])
    min_language_consistency: float = opt(0.95, FILTER_HELP["min_language_consistency"])
    max_response_chars: int = opt(8000, FILTER_HELP["max_response_chars"])
    max_repetition: float = opt(0.5, FILTER_HELP["max_repetition"])
    max_code_blocks: int = opt(0, FILTER_HELP["max_code_blocks"])
    require_summary: bool = opt(True, FILTER_HELP["require_summary"])
    require_reasoning: bool = opt(True, FILTER_HELP["require_reasoning"])
    deduplicate: bool = opt(True, FILTER_HELP["deduplicate"])
    max_per_prompt: int = opt(4, FILTER_HELP["max_per_prompt"])
    # non-reasoning data
    non_reasoning_dataset: str | None = opt(None, "a .jsonl of {prompt, response[, reasoning][, simple]} records added to the SFT data")
    simple_max_words: int = opt(8, "a non-reasoning prompt of at most this many words is simple: its response gets no chain of thought")
    # output
    output_dir: str = opt("runs/rejection", "folder for data.jsonl, samples.jsonl and counts.json")
    overwrite_output_dir: bool = opt(False, "replace the outputs of an earlier run in output_dir")

    def check(self) -> None:
        """Reject settings that cannot work, naming the option."""
        c = self
        need_choice("dtype", c.dtype, DTYPES)
        need(c.template in TEMPLATES, f"template={c.template!r}: choose {', '.join(TEMPLATES)}")
        need(c.max_prompts is None or c.max_prompts >= 1, f"max_prompts={c.max_prompts}: must be >= 1 (or unset for all)")
        need(c.num_samples >= 1, f"num_samples={c.num_samples}: must be >= 1")
        need(c.max_new_tokens >= 1, f"max_new_tokens={c.max_new_tokens}: must be >= 1")
        need(c.max_prompt_length >= 1, f"max_prompt_length={c.max_prompt_length}: must be >= 1")
        need(c.temperature >= 0, f"temperature={c.temperature}: must be >= 0 (0: greedy)")
        need(0 < c.top_p <= 1, f"top_p={c.top_p}: must be in (0, 1]")
        need(c.batch_size >= 1, f"batch_size={c.batch_size}: must be >= 1")
        need(c.judge_batch_size >= 1, f"judge_batch_size={c.judge_batch_size}: must be >= 1")
        validate_filter_settings(settings_from(c))  # the filter options, named as FilterSettings names them
        need(c.simple_max_words >= 0, f"simple_max_words={c.simple_max_words}: must be >= 0")


def make_rejection_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RejectionConfig:
    """Config file first, then overrides on top; unknown keys and bad values are a ConfigError."""
    return load_config(RejectionConfig, None, yaml_path, overrides)


# --------------------------------------------------------------------------
# Correctness: rules, then a generative judge
# --------------------------------------------------------------------------

_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
# words that are mathematics, not prose, when written without a backslash
_MATH_WORDS = {"sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi", "inf", "infty",
               "mod", "gcd", "lcm", "max", "min", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}


@functools.lru_cache(maxsize=4096)  # pure in the gold; called once per sample with the same few golds
def gold_is_checkable(gold: str) -> bool:
    """True if rules can grade answers against this gold: it is a mathematical answer.

    Criterion: normalize_number reads it (numbers, with units or currency), or, once LaTeX command
    names are removed, it contains no word of two or more letters other than function names such as
    sin or log (single letters are variables or choice labels), and math_verify parses it.
    So "42", "18 dollars", "\\frac{1}{2}", "x^2+2x+1", "(1, 2)", "B" are checkable and "Paris",
    "blue whale", "\\text{Paris}" are not: math_verify would read "Paris" as the product P*a*r*i*s.
    """
    if not gold or not gold.strip():
        return False
    if normalize_number(gold) is not None:
        return True
    words = _WORD.findall(_LATEX_COMMAND.sub(" ", gold))
    if any(w.lower() not in _MATH_WORDS for w in words):
        return False
    timeout = MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    try:
        return bool(mv_parse(gold, timeout))
    except Exception:  # noqa: BLE001 - math_verify failing to read it means rules cannot use it
        return False


def check_correct(response: str, gold: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> bool | None:
    """Rule-based correctness of a response: True or False, or None when rules cannot decide.

    The answer is the one stated in the response's final part (readable.final_answer), compared with
    answers.answers_match, which for a numeric gold also demands a final number (no "39 + 87" for
    126), as the accuracy reward does. A response that states no answer is False. None means the gold
    is free text (see gold_is_checkable): a judge must decide.
    """
    if not gold_is_checkable(gold):
        return None
    pred = final_answer(response, special_token)
    if pred is None:
        return False
    return answers_match(pred, gold)


JUDGE_PROMPT = (
    "You are grading a response to a question against a reference answer.\n"
    "Question: {question}\n"
    "Reference answer: {gold}\n"
    "Response: {response}\n"
    "Is the response's final answer correct? Answer yes or no.\n"
    "Answer:"
)


class Judge:
    """A generative judge made from any local causal LM: the paper's "generative reward model".

    DeepSeek-R1 grades stage-3 samples that rules cannot check by feeding the ground truth and the
    model's prediction to DeepSeek-V3. Here any causal LM plays that part: the prompt gives the
    question, the reference answer and the response's final part (its summary: the judge grades the
    answer, not the chain of thought) and asks for yes or no; the verdict is yes when the next-token
    log-probability of " yes" beats that of " no". Where the two words start with the same tokens (a
    character-level tokenizer gives " " for both) the shared tokens are appended to the prompt and the
    first differing tokens are compared, so each verdict still costs one forward pass.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 8,
                 special_token: str = DEFAULT_SPECIAL_TOKEN, max_response_chars: int = 2000) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.special_token, self.max_response_chars = batch_size, special_token, max_response_chars
        yes = tokenizer.encode(" yes", add_special_tokens=False)
        no = tokenizer.encode(" no", add_special_tokens=False)
        shared = 0
        while shared < min(len(yes), len(no)) and yes[shared] == no[shared]:
            shared += 1
        if shared == min(len(yes), len(no)):
            raise ValueError("judge: the tokenizer cannot tell ' yes' from ' no' by one token")
        self.shared_ids, self.yes_id, self.no_id = yes[:shared], yes[shared], no[shared]

    @classmethod
    def load(cls, name: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False,
             device: str | torch.device | None = None, **kw) -> Judge:
        """Load a judge model by name (a local folder, cached hub id or 'embedded')."""
        model = load_model(name, dtype, trust_remote_code=trust_remote_code)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        return cls(model, load_tokenizer(name, trust_remote_code), **kw)

    def prompt(self, question: str, gold: str, response: str) -> str:
        _, final = split_reasoning(response, self.special_token)
        final = (final or response).strip()[-self.max_response_chars:]
        return JUDGE_PROMPT.format(question=question.strip(), gold=gold.strip(), response=final)

    @torch.no_grad()
    def scores(self, questions: list[str], golds: list[str], responses: list[str]) -> list[float]:
        """log p(yes) - log p(no) for each sample; positive means the judge says correct."""
        device = next(self.model.parameters()).device
        out: list[float] = []
        for b in range(0, len(questions), self.batch_size):
            prompts = [self.prompt(q, g, r) for q, g, r in
                       zip(questions[b: b + self.batch_size], golds[b: b + self.batch_size],
                           responses[b: b + self.batch_size], strict=True)]
            enc = self.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
            ids, mask = enc["input_ids"], enc["attention_mask"]  # [B, P]
            if self.shared_ids:  # left padding keeps every row's last position real, so append at the end
                shared = torch.tensor(self.shared_ids).expand(len(prompts), -1)  # [B, S]
                ids, mask = torch.cat([ids, shared], dim=1), torch.cat([mask, torch.ones_like(shared)], dim=1)
            ids, mask = ids.to(device), mask.to(device)  # [B, P+S]
            positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, P+S]
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                logits_to_keep=1).logits[:, -1].float()  # [B, V]
            logp = torch.log_softmax(logits, dim=-1)  # [B, V]
            out.extend((logp[:, self.yes_id] - logp[:, self.no_id]).tolist())
        return out

    def judge(self, questions: list[str], golds: list[str], responses: list[str]) -> list[bool]:
        """True where the judge prefers " yes" (the response's final answer matches the reference)."""
        return [s > 0 for s in self.scores(questions, golds, responses)]


# --------------------------------------------------------------------------
# Sampling and selection
# --------------------------------------------------------------------------


def sample_responses(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Problem],
                     config: RejectionConfig, progress: bool = False) -> list[dict]:
    """`num_samples` responses per example, prompt-major; each batch of prompts has its own seed.

    Records: {index, prompt_id, question, answer (gold), response (prefill + completion), length
    (new tokens), truncated, sample (0..n-1)}.
    """
    c = config
    device = next(model.parameters()).device
    records: list[dict] = []
    for b in range(0, len(examples), c.batch_size):
        batch = examples[b: b + c.batch_size]
        prompts = [build_prompt(e.question, tokenizer, c.template, c.prefill) for e in batch]
        gen = torch.Generator(device=device).manual_seed(c.seed * 1_000_003 + b)
        r = generate(model, tokenizer, prompts, num_generations=c.num_samples, max_new_tokens=c.max_new_tokens,
                     temperature=c.temperature, top_p=c.top_p, stop_strings=tuple(c.stop_strings),
                     max_prompt_length=c.max_prompt_length, generator=gen)
        lengths, truncated = r.lengths.tolist(), r.truncated.tolist()
        for i, e in enumerate(batch):
            for j in range(c.num_samples):
                row = i * c.num_samples + j
                records.append({"index": len(records), "prompt_id": e.id, "question": e.question, "answer": e.answer,
                                "response": c.prefill + r.completions[row], "length": int(lengths[row]),
                                "truncated": bool(truncated[row]), "sample": j})
        if progress:
            print(f"rejection sampling: {min(b + c.batch_size, len(examples))}/{len(examples)} prompts",
                  file=sys.stderr, flush=True)
    return records


def _drop_rules(dropped: list[dict], survivors: list[dict], settings: FilterSettings) -> dict[int, str]:
    """Which rule dropped each sample (by "index"); see the module docstring."""
    rules: dict[int, str] = {}
    passed_alone = []
    for s in dropped:
        _, report = filter_samples([s], settings)
        rule = next((row["rule"] for row in report if row["dropped"]), None)
        if rule is None:
            passed_alone.append(s)  # only a set rule (deduplicate, max_per_prompt) can drop a sample that passes alone
        else:
            rules[s["index"]] = rule
    if passed_alone:
        uncapped = dataclasses.replace(settings, max_per_prompt=0)  # 0: no cap
        kept_uncapped, _ = filter_samples(survivors, uncapped)
        deduped = {s["index"] for s in kept_uncapped}
        for s in passed_alone:
            rules[s["index"]] = "max_per_prompt" if s["index"] in deduped else "deduplicate"
    return rules


def select(samples: list[dict], config: RejectionConfig, judge: Judge | None = None) -> tuple[list[dict], list[dict], dict]:
    """Mark each sample's correctness and keep the correct ones that pass every filter.

    samples: records with prompt_id, question, answer (gold), response (an "index" is added if absent).
    judge: anything with judge(questions, golds, responses) -> list[bool]; it sees only the samples the
    rules cannot decide. Without one those are dropped (report row "undecided").
    Each sample gets: correct (bool | None), decided_by ("rule" | "judge" | None), judged (bool),
    kept (bool), dropped_by (the rule's name or None).
    Returns (kept samples, report rows {"rule", "description", "in", "dropped", "out"}, counts).
    """
    settings = settings_from(config)
    for i, s in enumerate(samples):
        s.setdefault("index", i)
        s["correct"] = check_correct(s["response"], s["answer"], config.special_token)
        s["decided_by"] = "rule" if s["correct"] is not None else None
        s["judged"] = False
    undecided = [s for s in samples if s["correct"] is None]
    if undecided and judge is not None:
        verdicts = judge.judge([s["question"] for s in undecided], [s["answer"] for s in undecided],
                               [s["response"] for s in undecided])
        for s, v in zip(undecided, verdicts, strict=True):
            s["correct"], s["decided_by"], s["judged"] = bool(v), "judge", True
    decided = [s for s in samples if s["correct"] is not None]
    n_undecided = len(samples) - len(decided)
    kept, report = filter_samples(decided, settings)
    report = [{"rule": "undecided", "description": "correctness undecided by rules and no judge_model",
               "in": len(samples), "dropped": n_undecided, "out": len(decided)}, *report]

    kept_ids = {s["index"] for s in kept}
    dropped = [s for s in decided if s["index"] not in kept_ids]
    rules = _drop_rules(dropped, decided, settings)
    for s in samples:
        s["kept"] = s["index"] in kept_ids
        s["dropped_by"] = None if s["kept"] else "undecided" if s["correct"] is None else rules[s["index"]]
    for row in report:  # the per-sample attribution must agree with the filters' own counts
        attributed = sum(s["dropped_by"] == row["rule"] for s in samples)
        if attributed != row["dropped"]:
            raise RuntimeError(f"filter report says rule {row['rule']} dropped {row['dropped']} samples, "
                               f"but {attributed} were attributed to it")
    counts = {
        "sampled": len(samples),
        "prompts": len({s["prompt_id"] for s in samples}),
        "rule_decided": sum(s["decided_by"] == "rule" for s in samples),
        "judge_decided": sum(s["judged"] for s in samples),
        "judged_correct": sum(s["judged"] and s["correct"] is True for s in samples),
        "undecided_dropped": n_undecided,
        "correct": sum(s["correct"] is True for s in samples),
        "truncated": sum(bool(s.get("truncated")) for s in samples),
        "kept": len(kept),
    }
    return kept, report, counts


# --------------------------------------------------------------------------
# Non-reasoning data
# --------------------------------------------------------------------------


def load_non_reasoning(path: str | Path) -> list[tuple[int, dict]]:
    """(line, record) pairs of a non-reasoning JSONL, checked: prompt and response are non-empty text,
    reasoning (optional) is text, simple (optional) is true or false. DataError names file:line."""
    rows = read_jsonl(path)
    for lineno, rec in rows:
        where = f"{path}:{lineno}"
        for name in ("prompt", "response"):
            value = rec.get(name)
            if not isinstance(value, str) or not value.strip():
                problem = "missing" if value is None else "empty" if isinstance(value, str) else f"a {type(value).__name__}, not text"
                raise DataError(f"{where}: field '{name}' is {problem} (non-reasoning records need prompt and response)")
        if "reasoning" in rec and not isinstance(rec["reasoning"], str):
            raise DataError(f"{where}: field 'reasoning' is a {type(rec['reasoning']).__name__}, not text")
        if "simple" in rec and not isinstance(rec["simple"], bool):
            raise DataError(f"{where}: field 'simple' must be true or false, got {rec['simple']!r}")
    return rows


def is_simple(record: dict, simple_max_words: int) -> bool:
    """A simple query ("hello"): marked "simple": true, or unmarked and at most simple_max_words words."""
    if "simple" in record:
        return record["simple"]
    return len(record["prompt"].split()) <= simple_max_words


def non_reasoning_records(rows: list[tuple[int, dict]], path: str | Path, config: RejectionConfig) -> list[dict]:
    """SFT records from non-reasoning data, as in the paper: a simple query's response is the plain
    answer with no chain of thought (a reasoning field is ignored, and a response written with one is
    cut to its final part); otherwise a record with "reasoning" gets the readable format
    to_readable(reasoning, response); the rest are kept as they are."""
    records = []
    for lineno, rec in rows:
        if is_simple(rec, config.simple_max_words):
            final = split_reasoning(rec["response"], config.special_token)[1].strip()
            response, style = final or rec["response"], "simple"
        elif rec.get("reasoning", "").strip():
            response, style = to_readable(rec["reasoning"], rec["response"], config.special_token), "readable"
        else:
            response, style = rec["response"], "as_is"
        records.append({"prompt": rec["prompt"], "response": response, "source": "non_reasoning",
                        "prompt_id": str(rec.get("id", f"{Path(path).name}:{lineno}")), "answer": None,
                        "style": style})  # style: simple | readable | as_is (counted, not written)
    return records


# --------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------


def load_prompts(c: RejectionConfig) -> list[Problem]:
    """The reasoning prompts with their gold answers, cut to max_prompts."""
    examples = load_examples(c.dataset, data_dir=c.data_dir, split=c.dataset_split, config=c.dataset_config,
                             question_field=c.question_field,
                             answer_field=c.answer_field, seed=c.seed, num_examples=c.arithmetic_examples,
                             num_terms=c.arithmetic_terms, max_value=c.arithmetic_max_value, ops=c.arithmetic_ops)
    return examples[: c.max_prompts] if c.max_prompts else examples


def rejection_sample(config: RejectionConfig, examples: list[Problem] | None = None,
                     show_progress: bool = True) -> dict:
    """Sample, grade, filter and merge; write output_dir/{data.jsonl, samples.jsonl, counts.json}.

    Returns the counts (as written to counts.json). Bad options, dataset lines and non-reasoning lines
    raise ConfigError / DataError before any model loads.
    """
    c = config
    c.validate()
    out_dir = Path(c.output_dir)
    existing = [f for f in OUTPUT_FILES if (out_dir / f).exists()]
    if existing and not c.overwrite_output_dir:
        raise ConfigError(f"output_dir {out_dir} already holds rejection-sampling output ({existing[0]}); "
                          f"set overwrite_output_dir or choose another output_dir")
    if examples is None:
        examples = load_prompts(c)
    elif c.max_prompts:
        examples = examples[: c.max_prompts]
    nr_rows = load_non_reasoning(c.non_reasoning_dataset) if c.non_reasoning_dataset else []
    if c.judge_model:
        resolve_model_path(c.judge_model)  # a missing judge folder fails now, not after sampling

    from r1kit.models.loading import resolve_dtype

    dtype = resolve_dtype(c.dtype)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(c.model, c.trust_remote_code)
    model = load_model(c.model, dtype, trust_remote_code=c.trust_remote_code).to(device).eval()
    samples = sample_responses(model, tokenizer, examples, c, progress=show_progress)
    del model
    judge = None
    if c.judge_model and any(not gold_is_checkable(e.answer) for e in examples):
        judge = Judge.load(c.judge_model, dtype, c.trust_remote_code, device, batch_size=c.judge_batch_size,
                           special_token=c.special_token)
    kept, report, counts = select(samples, c, judge)
    del judge

    data = [{"prompt": s["question"], "response": s["response"], "source": "reasoning",
             "prompt_id": s["prompt_id"], "answer": s["answer"]} for s in kept]
    extra = non_reasoning_records(nr_rows, c.non_reasoning_dataset, c) if nr_rows else []
    data += extra
    counts.update({
        "non_reasoning_added": len(extra),
        "non_reasoning_simple": sum(r["style"] == "simple" for r in extra),
        "non_reasoning_readable": sum(r["style"] == "readable" for r in extra),
        "final_size": len(data),
        "filter_report": report,
        "settings": dataclasses.asdict(c),
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "samples.jsonl", jsonl_text(samples))
    write_atomic(out_dir / "data.jsonl", jsonl_text([{k: v for k, v in r.items() if k != "style"} for r in data]))
    write_json(out_dir / "counts.json", counts)
    print(format_report(report))
    print(f"reasoning samples kept: {counts['kept']} of {counts['sampled']}; non-reasoning added: "
          f"{counts['non_reasoning_added']}; SFT records: {counts['final_size']} -> {out_dir / 'data.jsonl'}")
    return counts
