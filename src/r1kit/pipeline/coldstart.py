"""Cold-start data for DeepSeek-R1 (stage 1): a small set of long chains of thought in the readable format.

The R1 paper collects "thousands" of cold-start samples three ways: few-shot prompting with long
chains of thought as examples, prompting a model for detailed answers with reflection, and gathering
R1-Zero outputs in a readable format, refined by human annotators. ``build_cold_start`` does the same
from any mix of three sources, converts everything to ``TOK reasoning TOK summary``
(``r1kit.rewards.readable``), filters it (``r1kit.pipeline.filters``) and writes one JSONL for supervised fine-tuning:

* ``user_dataset``: a user's JSONL whose records carry a readable ``response``, or ``reasoning`` and
  ``summary`` fields (field names configurable). A response in ``<think>`` tag format is converted as
  below. Correctness is checked when the records have gold answers (all of them or none).
* ``zero_samples``: an R1-Zero run folder (its samples.jsonl) or a samples.jsonl file. A completion
  ``<think> R </think> <answer> A </answer>`` becomes reasoning R and the summary
  ``zero_summary_template`` with A filled in ("The answer is A."). The paper has humans write the
  summaries; we do it by rule, so the summary is short and states only the answer.
* ``fewshot_model``: a local model prompted few-shot with readable examples (``BUILTIN_FEWSHOT``, the
  kept user records, or a JSONL) to answer the questions of ``prompts_dataset`` in the readable format.

Design decisions:

* Every source is read and checked (files exist, fields present; DataError names the file and line)
  before any model loads, so a typo costs seconds, not a model load.
* Each source gets its own report: a first row (``convert``: the sample could be put in the readable
  format; for zero samples a ``step`` row before it) and then the filter rules of
  ``r1kit.filters.filter_samples``; a sample that fails conversion is never written. The counts add up:
  each row's ``out`` is the next row's ``in``.
* Correctness is the ``readable_accuracy`` reward's rule on the converted text: the answer stated in the
  summary must match the gold (a numeric gold needs a final number).
* Per-prompt rules (deduplicate, max_per_prompt) apply within a source; records keep their ``source``.
* Deterministic for a seed: generation uses one seeded generator per batch of prompts, and the
  ``max_examples`` cap draws a seeded subset kept in order.
* Outputs are written to temporary files and renamed; coldstart_summary.json comes last, so its
  presence means the set is complete.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1kit.core.errors import ConfigError, DataError
from r1kit.core.files import jsonl_text, write_atomic, write_json
from r1kit.core.options import DTYPE_HELP, DTYPES, Options, load_config, need, need_choice, opt
from r1kit.data.problems import Problem
from r1kit.data.sources import load_examples, read_jsonl
from r1kit.pipeline.filters import (
    FILTER_HELP,
    FilterSettings,
    filter_samples,
    format_report,
    settings_from,
    validate_filter_settings,
)
from r1kit.rewards.answers import ANSWER_CLOSE, ANSWER_OPEN, R1_TAGS, extract_answer
from r1kit.rewards.functions import readable_accuracy_reward
from r1kit.rewards.readable import DEFAULT_SPECIAL_TOKEN, parse_readable, split_tags, to_readable

SOURCES = ("user_dataset", "zero_samples", "fewshot_model")
FEWSHOT_STOP = "Question:"

# Hand-written readable examples: (question, reasoning, summary). Plain ASCII without $ or %, so that
# even the tiny test models' alphabets cover them.
BUILTIN_FEWSHOT = [
    ("What is 23 + 45?",
     "I add the tens and the ones separately. 20 + 40 = 60 and 3 + 5 = 8, so 23 + 45 = 60 + 8 = 68. "
     "Check: 68 - 45 = 23, which is right.",
     "The answer is 68."),
    ("Tom has 3 boxes with 4 pencils each. He gives away 5 pencils. How many pencils does he have left?",
     "Tom starts with 3 boxes of 4 pencils, so he has 3 * 4 = 12 pencils. He gives away 5 of them, "
     "which leaves 12 - 5 = 7. Check: 7 + 5 = 12, the number he started with.",
     "Tom has 7 pencils left. The answer is 7."),
    ("What is the value of 2x + 3 when x = 5?",
     "Substitute x = 5 into 2x + 3. First 2 * 5 = 10, then 10 + 3 = 13. Wait, let me make sure the order "
     "is right: multiplication comes before addition, so 13 is correct.",
     "The answer is 13."),
]


@dataclass
class ColdStartConfig(Options):
    # sources (at least one)
    user_dataset: str | None = opt(None, "a .jsonl of your own samples: a readable 'response', or 'reasoning' and 'summary' fields")
    question_field: str = opt("question", "JSONL field holding the question (user_dataset, fewshot_examples, prompts_dataset)")
    answer_field: str = opt("answer", "JSONL field holding the gold answer (optional in user_dataset: all records or none)")
    response_field: str = opt("response", "user_dataset field holding a readable response (TOKEN reasoning TOKEN summary)")
    reasoning_field: str = opt("reasoning", "user_dataset field holding the reasoning, when there is no response field")
    summary_field: str = opt("summary", "user_dataset field holding the summary, when there is no response field")
    id_field: str = opt("id", "user_dataset field holding the prompt id (default: file:line)")
    zero_samples: str | None = opt(None, "an R1-Zero run folder, or its samples.jsonl: correct completions are converted")
    zero_min_step: int = opt(0, "zero_samples: only samples from this training step on (early policies are weak)")
    zero_summary_template: str = opt("The answer is {answer}.", "zero_samples: the summary written for a converted completion; {answer} is the <answer> content")
    fewshot_model: str | None = opt(None, "a local model (or 'embedded') prompted few-shot to write readable answers to prompts_dataset")
    fewshot_examples: str = opt("builtin", "few-shot examples: 'builtin', 'user_dataset' (its kept samples) or a .jsonl like user_dataset")
    num_fewshot: int = opt(3, "examples in each few-shot prompt")
    prompts_dataset: str | None = opt(None, "questions for fewshot_model: 'arithmetic', 'gsm8k' or a .jsonl with gold answers")
    data_dir: str | None = opt(None, "folder with benchmark data (default: $R1KIT_DATA_DIR or ../shared/data)")
    dataset_split: str = opt("train", "split of a built-in prompts_dataset")
    num_prompts: int = opt(100, "questions taken from prompts_dataset (the first N)")
    num_samples: int = opt(4, "answers sampled per question")
    max_new_tokens: int = opt(512, "most new tokens per answer")
    temperature: float = opt(0.7, "sampling temperature")
    top_p: float = opt(0.95, "nucleus sampling")
    generation_batch_size: int = opt(8, "questions per generation batch")
    dtype: str = opt("auto", DTYPE_HELP)
    trust_remote_code: bool = opt(False, "allow model code from the model folder to run")
    # format and filters (r1kit.filters.FilterSettings, same names)
    special_token: str = opt(DEFAULT_SPECIAL_TOKEN, FILTER_HELP["special_token"])
    language: str = opt("en", FILTER_HELP["language"])
    min_language_consistency: float = opt(FilterSettings.min_language_consistency, FILTER_HELP["min_language_consistency"])
    max_response_chars: int = opt(FilterSettings.max_response_chars, FILTER_HELP["max_response_chars"])
    max_repetition: float = opt(FilterSettings.max_repetition, FILTER_HELP["max_repetition"])
    max_code_blocks: int = opt(FilterSettings.max_code_blocks, FILTER_HELP["max_code_blocks"])
    require_summary: bool = opt(FilterSettings.require_summary, FILTER_HELP["require_summary"])
    require_reasoning: bool = opt(FilterSettings.require_reasoning, FILTER_HELP["require_reasoning"])
    deduplicate: bool = opt(FilterSettings.deduplicate, FILTER_HELP["deduplicate"])
    max_per_prompt: int = opt(FilterSettings.max_per_prompt, FILTER_HELP["max_per_prompt"])
    # output
    max_examples: int = opt(0, "cap on the final set: a seeded subset of this size (0: keep all)")
    output_dir: str = opt("runs/coldstart", "folder for data.jsonl, filter_report.json and coldstart_summary.json")
    seed: int = opt(42, "seed for sampling and the max_examples subset")
    overwrite_output_dir: bool = opt(False, "replace a cold-start set already in output_dir")

    def check(self) -> None:
        """Reject settings that cannot work, naming the option."""
        c = self
        need(any(getattr(c, s) for s in SOURCES),
             f"no cold-start source: set at least one of {', '.join(SOURCES)}")
        need(not c.fewshot_model or bool(c.prompts_dataset), "fewshot_model needs prompts_dataset (the questions to answer)")
        need(c.fewshot_examples in ("builtin", "user_dataset") or c.fewshot_examples.endswith((".jsonl", ".json")),
             f"fewshot_examples={c.fewshot_examples!r}: choose builtin, user_dataset or a .jsonl file")
        need(c.fewshot_examples != "user_dataset" or bool(c.user_dataset),
             "fewshot_examples=user_dataset needs user_dataset")
        need("{answer}" in c.zero_summary_template, "zero_summary_template must contain {answer}")
        try:
            c.zero_summary_template.format(answer="1")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"zero_summary_template: bad template ({e}); only {{answer}} may be filled in") from None
        for name in ("num_fewshot", "num_prompts", "num_samples", "max_new_tokens", "generation_batch_size"):
            need(getattr(c, name) >= 1, f"{name}={getattr(c, name)}: must be >= 1")
        need(c.temperature >= 0, f"temperature={c.temperature}: must be >= 0")
        need(0 < c.top_p <= 1, f"top_p={c.top_p}: must be in (0, 1]")
        need(c.max_examples >= 0, f"max_examples={c.max_examples}: must be >= 0 (0: keep all)")
        need(c.zero_min_step >= 0, f"zero_min_step={c.zero_min_step}: must be >= 0")
        need_choice("dtype", c.dtype, DTYPES)
        validate_filter_settings(settings_from(c))


def make_coldstart_config(yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> ColdStartConfig:
    """Config file first, then overrides (from the command line); unknown keys are an error."""
    return load_config(ColdStartConfig, None, yaml_path, overrides)


# --------------------------------------------------------------------------
# Conversion to the readable format
# --------------------------------------------------------------------------


def readable_from_tags(text: str, summary_template: str = "The answer is {answer}.",
                       special_token: str = DEFAULT_SPECIAL_TOKEN) -> str | None:
    """``<think> R </think> <answer> A </answer>`` -> TOK R TOK summary; None if it does not convert.

    The summary is ``summary_template`` with A filled in. Text after ``</think>`` without answer tags
    (DeepSeek-R1's own output shape) is the summary as it is. None when the think block is not closed,
    either part is empty, or the reasoning still holds a tag or the separator.
    """
    tagged = split_tags(text)
    if tagged is None:
        return None
    reasoning, rest = tagged
    if ANSWER_OPEN in rest or ANSWER_CLOSE in rest:
        answer = extract_answer(rest)
        summary = summary_template.format(answer=" ".join(answer.split())) if answer else ""
    else:
        summary = rest
    if not reasoning or not summary or any(t in reasoning or t in summary for t in (*R1_TAGS, special_token)):
        return None
    return to_readable(reasoning, summary, special_token)


def readable_response(text: str, summary_template: str, special_token: str) -> str | None:
    """A response in its canonical readable form: readable text as it is, tag format converted, else None."""
    parsed = parse_readable(text, special_token)
    if parsed is not None:
        return to_readable(*parsed, special_token)
    return readable_from_tags(text, summary_template, special_token)


def _is_correct(response: str, gold: str, special_token: str) -> bool:
    return readable_accuracy_reward([response], [gold], special_token=special_token)[0] == 1.0


# --------------------------------------------------------------------------
# Reading the sources (no model involved)
# --------------------------------------------------------------------------


def _text_field(rec: dict, name: str, where: str, option: str, required: bool = True) -> str | None:
    """The field as text; DataError naming file:line when missing (if required) or not text."""
    value = rec.get(name)
    if value is None:
        if required:
            raise DataError(f"{where}: missing field '{name}' (set {option})")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise DataError(f"{where}: field '{name}' is a {type(value).__name__}, expected text")
    return str(value)


def read_user_samples(path: str | Path, c: ColdStartConfig) -> list[dict]:
    """Samples from a user's JSONL: question, optional gold, and a readable response (converted if needed)."""
    path = Path(path)
    rows = read_jsonl(path)
    with_gold = [rec.get(c.answer_field) is not None for _, rec in rows]
    any_gold = any(with_gold)
    samples = []
    for (lineno, rec), has_gold in zip(rows, with_gold):
        where = f"{path}:{lineno}"
        question = _text_field(rec, c.question_field, where, "question_field")
        if not question.strip():
            raise DataError(f"{where}: field '{c.question_field}' is empty")
        if any_gold and not has_gold:
            raise DataError(f"{where}: missing field '{c.answer_field}' while other records have a gold answer "
                            "(give every record one, or none to skip the correctness check)")
        gold = _text_field(rec, c.answer_field, where, "answer_field", required=False)
        if rec.get(c.response_field) is not None:
            raw = _text_field(rec, c.response_field, where, "response_field")
            response = readable_response(raw, c.zero_summary_template, c.special_token)
        elif rec.get(c.reasoning_field) is not None and rec.get(c.summary_field) is not None:
            reasoning = _text_field(rec, c.reasoning_field, where, "reasoning_field")
            summary = _text_field(rec, c.summary_field, where, "summary_field")
            try:
                response = to_readable(reasoning, summary, c.special_token)
            except ValueError:  # a part holds the separator: cannot be written in the readable format
                response = None
            if response is not None and parse_readable(response, c.special_token) is None:
                response = None  # an empty part
        else:
            raise DataError(f"{where}: needs field '{c.response_field}' (readable text) or fields "
                            f"'{c.reasoning_field}' and '{c.summary_field}' (set response_field, reasoning_field, summary_field)")
        pid = rec.get(c.id_field)
        sample = {"prompt_id": str(pid) if pid is not None else f"{path.name}:{lineno}", "question": question.strip(),
                  "answer": gold.strip() if gold is not None else None, "response": response, "where": where}
        samples.append(sample)
    return samples


def zero_samples_path(spec: str) -> Path:
    """samples.jsonl of an R1-Zero run folder, or the file itself."""
    path = Path(spec)
    if path.is_dir():
        path = path / "samples.jsonl"
        if not path.is_file():
            raise DataError(f"zero_samples={spec}: no samples.jsonl in that folder (not an r1kit run folder?)")
    elif not path.is_file():
        raise DataError(f"zero_samples={spec}: no such file or folder")
    return path


def read_zero_samples(spec: str, c: ColdStartConfig) -> list[dict]:
    """Samples of an R1-Zero run (every record of samples.jsonl, step filter not yet applied)."""
    path = zero_samples_path(spec)
    samples = []
    for lineno, rec in read_jsonl(path):
        where = f"{path}:{lineno}"
        for name in ("question", "answer", "completion", "prompt_id"):
            _text_field(rec, name, where, "zero_samples (an r1kit samples.jsonl)")
        step = rec.get("step")
        samples.append({"prompt_id": str(rec["prompt_id"]), "question": str(rec["question"]).strip(),
                        "answer": str(rec["answer"]).strip(), "completion": str(rec["completion"]),
                        "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
                        "where": where})
    return samples


def load_prompts(c: ColdStartConfig) -> list[Problem]:
    """The first num_prompts questions (with gold answers) of prompts_dataset."""
    examples = load_examples(c.prompts_dataset, data_dir=c.data_dir, split=c.dataset_split,
                             question_field=c.question_field, answer_field=c.answer_field, seed=c.seed,
                             num_examples=c.num_prompts)
    return examples[: c.num_prompts]


def fewshot_prompt(question: str, examples: list[tuple[str, str]], special_token: str) -> str:
    """Question/Answer blocks with readable answers, then the question; the answer is prefilled with TOK."""
    shots = "".join(f"Question: {q.strip()}\nAnswer: {r}\n\n" for q, r in examples)
    return f"{shots}Question: {question.strip()}\nAnswer: {special_token}"


# --------------------------------------------------------------------------
# Conversion and filtering per source
# --------------------------------------------------------------------------


def _row(rule: str, description: str, n_in: int, n_out: int) -> dict:
    return {"rule": rule, "description": description, "in": n_in, "dropped": n_in - n_out, "out": n_out}


def _convert_and_filter(samples: list[dict], settings: FilterSettings, convert_description: str,
                        check_correct: bool) -> tuple[list[dict], list[dict]]:
    """Drop samples without a readable response (the 'convert' row), mark correctness, filter."""
    convertible = [s for s in samples if s["response"] is not None]
    if check_correct:
        for s in convertible:
            s["correct"] = _is_correct(s["response"], s["answer"], settings.special_token)
    kept, report = filter_samples(convertible, settings, check_correct=check_correct)
    return kept, [_row("convert", convert_description, len(samples), len(convertible)), *report]


def process_user(samples: list[dict], c: ColdStartConfig) -> tuple[list[dict], list[dict]]:
    check = any(s["answer"] is not None for s in samples)
    return _convert_and_filter(samples, settings_from(c), "response in (or converted to) the readable format", check)


def process_zero(samples: list[dict], c: ColdStartConfig) -> tuple[list[dict], list[dict]]:
    recent = [s for s in samples if not c.zero_min_step or (s["step"] is not None and s["step"] >= c.zero_min_step)]
    for s in recent:
        s["response"] = readable_from_tags(s["completion"], c.zero_summary_template, c.special_token)
    kept, report = _convert_and_filter(recent, settings_from(c),
                                       "closed <think> block and an <answer>, converted to the readable format", True)
    step_row = _row("step", f"from training step {c.zero_min_step} on" if c.zero_min_step else "all steps",
                    len(samples), len(recent))
    return kept, [step_row, *report]


def fewshot_examples(c: ColdStartConfig, user_kept: list[dict] | None) -> list[tuple[str, str]]:
    """(question, readable response) pairs for the few-shot prompt."""
    if c.fewshot_examples == "builtin":
        pairs = [(q, to_readable(r, s, c.special_token)) for q, r, s in BUILTIN_FEWSHOT]
    elif c.fewshot_examples == "user_dataset":
        pairs = [(s["question"], s["response"]) for s in user_kept or []]
        if not pairs:
            raise DataError(f"fewshot_examples=user_dataset: no sample of {c.user_dataset} passed the filters")
    else:
        kept, _ = process_user(read_user_samples(c.fewshot_examples, c), c)
        pairs = [(s["question"], s["response"]) for s in kept]
        if not pairs:
            raise DataError(f"fewshot_examples={c.fewshot_examples}: no usable readable example (all filtered out)")
    return pairs[: c.num_fewshot]


def generate_fewshot(c: ColdStartConfig, prompts: list[Problem], shots: list[tuple[str, str]]) -> list[dict]:
    """num_samples readable answers per question from fewshot_model; None responses did not convert.

    The generated text is cut where the model began the next "Question:" block. An answer that ran into
    max_new_tokens without stopping is not converted, since its summary may be cut short.
    """
    import torch

    from r1kit.models.loading import load_model, load_tokenizer, resolve_dtype
    from r1kit.rollout.sampling import generate

    tokenizer = load_tokenizer(c.fewshot_model, trust_remote_code=c.trust_remote_code)
    model = load_model(c.fewshot_model, dtype=resolve_dtype(c.dtype), trust_remote_code=c.trust_remote_code)
    if torch.cuda.is_available():
        model = model.to("cuda")
    device = next(model.parameters()).device
    samples = []
    for b in range(0, len(prompts), c.generation_batch_size):
        batch = prompts[b: b + c.generation_batch_size]
        texts = [fewshot_prompt(e.question, shots, c.special_token) for e in batch]
        # one generator per batch, seeded by its position: the samples do not depend on earlier batches
        gen = torch.Generator(device=device).manual_seed(c.seed * 1_000_003 + b)
        rollout = generate(model, tokenizer, texts, num_generations=c.num_samples, max_new_tokens=c.max_new_tokens,
                           temperature=c.temperature, top_p=c.top_p, stop_strings=(FEWSHOT_STOP,), generator=gen)
        truncated = rollout.truncated.tolist()  # one transfer per batch, not one per sample
        for i, e in enumerate(batch):
            for j in range(c.num_samples):
                row = i * c.num_samples + j
                # the stop string is generated, then cut: the model began the next block
                text = (c.special_token + rollout.completions[row]).split(FEWSHOT_STOP)[0]
                parsed = None if truncated[row] else parse_readable(text, c.special_token)
                samples.append({"prompt_id": e.id, "question": e.question.strip(), "answer": e.answer,
                                "response": to_readable(*parsed, c.special_token) if parsed else None,
                                "generated": text, "sample": j})
    return samples


# --------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------


def _check_output_dir(c: ColdStartConfig) -> Path:
    out = Path(c.output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output_dir={c.output_dir}: exists and is not a folder")
    existing = [n for n in ("data.jsonl", "coldstart_summary.json") if (out / n).exists()]
    if existing and not c.overwrite_output_dir:
        raise ConfigError(f"output_dir={c.output_dir} already holds a cold-start set ({existing[0]}); "
                          "set overwrite_output_dir to replace it")
    return out


def _print_report(source: str, report: list[dict]) -> None:
    n_in, n_out = report[0]["in"], report[-1]["out"]
    print(f"\n{source}: {n_in} samples -> {n_out} kept")
    print(format_report(report))


def build_cold_start(config: ColdStartConfig) -> dict:
    """Build the cold-start set; write output_dir/data.jsonl, filter_report.json, coldstart_summary.json.

    Returns the summary (also written as coldstart_summary.json). Raises ConfigError for bad options
    and DataError (naming file and line) for bad input, before any model loads.
    """
    c = config
    start = time.perf_counter()
    c.validate()
    out = _check_output_dir(c)
    if c.fewshot_model:
        from r1kit.models.loading import EMBEDDED_NAMES, resolve_model_path

        if c.fewshot_model not in EMBEDDED_NAMES:
            resolve_model_path(c.fewshot_model)  # a missing folder fails now, not after the other sources

    # read and check every source before any model loads
    user = read_user_samples(c.user_dataset, c) if c.user_dataset else None
    zero = read_zero_samples(c.zero_samples, c) if c.zero_samples else None
    prompts = load_prompts(c) if c.fewshot_model else None
    if c.fewshot_model and c.fewshot_examples not in ("builtin", "user_dataset"):
        read_user_samples(c.fewshot_examples, c)

    kept_by_source: dict[str, list[dict]] = {}
    reports: dict[str, list[dict]] = {}
    if user is not None:
        kept_by_source["user_dataset"], reports["user_dataset"] = process_user(user, c)
    if zero is not None:
        kept_by_source["zero_samples"], reports["zero_samples"] = process_zero(zero, c)
    if prompts is not None:
        shots = fewshot_examples(c, kept_by_source.get("user_dataset"))
        generated = generate_fewshot(c, prompts, shots)
        kept_by_source["fewshot_model"], reports["fewshot_model"] = _convert_and_filter(
            generated, settings_from(c), "answer written as TOKEN reasoning TOKEN summary before the next question", True)

    records = [{"prompt": s["question"], "response": s["response"], "answer": s["answer"],
                "prompt_id": s["prompt_id"], "source": source}
               for source, kept in kept_by_source.items() for s in kept]
    total = len(records)
    if c.max_examples and total > c.max_examples:
        chosen = sorted(random.Random(c.seed).sample(range(total), c.max_examples))
        records = [records[i] for i in chosen]

    for source, report in reports.items():
        _print_report(source, report)
    print(f"\ncold-start set: {len(records)} samples"
          + (f" (a seeded subset of {total}, max_examples={c.max_examples})" if len(records) < total else ""))
    if not records:
        print("warning: no sample passed the filters; data.jsonl is empty")

    out.mkdir(parents=True, exist_ok=True)
    filter_report = {source: {"samples": report[0]["in"], "kept": report[-1]["out"], "report": report}
                     for source, report in reports.items()}
    summary = {
        "num_examples": len(records),
        "kept_before_cap": total,
        "sources": {source: {"samples": info["samples"], "kept": info["kept"],
                             "written": sum(r["source"] == source for r in records)}
                    for source, info in filter_report.items()},
        "special_token": c.special_token,
        "language": c.language,
        "files": {"data": str(out / "data.jsonl"), "filter_report": str(out / "filter_report.json")},
        "config": dataclasses.asdict(c),
        "time_s": round(time.perf_counter() - start, 3),
    }
    write_atomic(out / "data.jsonl", jsonl_text(records))
    write_json(out / "filter_report.json", filter_report)
    write_json(out / "coldstart_summary.json", summary)
    print(f"-> {out / 'data.jsonl'}, filter_report.json, coldstart_summary.json")
    return summary
