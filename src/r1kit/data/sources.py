"""Training prompts: a synthetic arithmetic task, GSM8K in its original format, and any dataset the
`datasets` library reads: a .jsonl/.json/.parquet/.csv/.arrow file, a folder of such files, a `save_to_disk`
folder, or a hub id already in the local Hugging Face cache.

Every source yields `Problem(question, answer, id)`; the answer is the gold string the accuracy reward
compares against. A conversational record (the question field holds chat messages, as TRL's `prompt`
column does) keeps its messages in `Problem.messages`, which `templates.build_prompt` renders with the
chat template; every column but the question travels in `Problem.columns`, for TRL-style rewards.

JSONL files are read by r1kit itself, line by line, so a bad line is reported with its line number and
skip_bad_data can drop single lines; every other source goes through `datasets` and a bad row is
reported by its 0-based row index. Bad input raises DataError naming the file and line; with skip_bad_data the caller
passes a `skipped` list instead, and bad lines are recorded there and left out. The order of prompts is a pure
function of (seed, position), so a resumed run sees exactly the prompts it would have seen.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from r1kit.core.errors import DataError
from r1kit.data.arithmetic import arithmetic_examples
from r1kit.data.problems import Problem, default_data_dir, gsm8k_gold

# TRL's usual names for the gold answer column (its documentation's `ground_truth`, open-r1's and TRL's
# `solution`): with answer_field left at 'answer', a record without an 'answer' field has the first of these
# it holds read as its gold answer.
GOLD_FIELDS = ("answer", "solution", "ground_truth")


def _reject(message: str, lineno: int, bad: list[tuple[int, str]] | None) -> None:
    """Raise DataError, or with a `bad` list (skip_bad_data) record the line and carry on."""
    if bad is None:
        raise DataError(message)
    bad.append((lineno, message))


def _read_rows(path: Path, bad: list[tuple[int, str]] | None) -> Iterator[tuple[int, dict]]:
    """(line number, record) as the file is read, so errors found by the caller come in line order too."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = 0
    # bytes decoded line by line, so invalid UTF-8 is reported (or skipped) with its line
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _reject(f"{path}:{lineno}: invalid UTF-8 at byte {e.start} of the line", lineno, bad)
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                _reject(f"{path}:{lineno}: malformed JSON ({e.msg})", lineno, bad)
                continue
            if not isinstance(rec, dict):
                _reject(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}", lineno, bad)
                continue
            rows += 1
            yield lineno, rec
    if not rows and not bad:
        raise DataError(f"{path}: no records (empty file)")
    return rows


def _no_usable_records(path: Path, bad: list[tuple[int, str]]) -> DataError:
    return DataError(f"{path}: no usable records ({len(bad)} bad lines skipped; first: {min(bad)[1]})")


def read_jsonl(path: str | Path, skipped: list[str] | None = None) -> list[tuple[int, dict]]:
    """(line number, record) for each non-blank line; DataError names file and line on bad input.

    With a `skipped` list, a bad line (malformed JSON, not an object, invalid UTF-8) is appended to it
    as "file:line: reason" and left out instead. A missing file, an empty one, or one with no good
    line is an error either way.
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    rows = list(_read_rows(path, bad))
    if bad and not rows:
        raise _no_usable_records(path, bad)
    if skipped is not None:
        skipped.extend(message for _, message in bad)
    return rows


def _field_text(rec: dict, field: str, where: str, lineno: int, bad: list[tuple[int, str]] | None) -> str | None:
    """The field as text (unstripped); None, after raising or recording why, when missing, blank or not text."""
    value = rec.get(field)
    if value is None:
        also = f" (nor {', '.join(GOLD_FIELDS[1:])})" if field == GOLD_FIELDS[0] else ""
        _reject(f"{where}: missing field '{field}'{also} (set question_field/answer_field)", lineno, bad)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _reject(f"{where}: field '{field}' is a {type(value).__name__}, expected text or a number", lineno, bad)
        return None
    text = str(value)
    if not text.strip():
        _reject(f"{where}: field '{field}' is empty", lineno, bad)
        return None
    return text


def _is_messages(value: Any) -> bool:
    """A conversation as TRL stores it: a non-empty list of {"role": ..., "content": ...} dicts."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value))


def _question(rec: dict, field: str, where: str, key: int,
              bad: list[tuple[int, str]] | None) -> tuple[str, list[dict] | None] | None:
    """(question text, chat messages or None); a conversation's question is its last user turn."""
    value = rec.get(field)
    if not _is_messages(value):
        text = _field_text(rec, field, where, key, bad)
        return None if text is None else (text, None)
    users = [m for m in value if m["role"] == "user" and isinstance(m["content"], str) and m["content"].strip()]
    if not users:
        _reject(f"{where}: field '{field}' holds chat messages without a non-empty user turn", key, bad)
        return None
    return users[-1]["content"], [dict(m) for m in value]


def _record_example(rec: dict, key: int, where: str, default_id: str, question_field: str, answer_field: str,
                    gsm8k_answers: bool, bad: list[tuple[int, str]] | None) -> Problem | None:
    """One record as an Problem, or None after raising or recording why it is unusable.

    A TRL dataset keeps its prompt in a `prompt` column: with question_field left at 'question', a record
    without a 'question' field but with a 'prompt' one has its prompt used; likewise the gold answer
    (GOLD_FIELDS). Every column but `prompt` travels with the problem, as TRL passes them to rewards.
    """
    if question_field == "question" and "question" not in rec and "prompt" in rec:
        question_field = "prompt"
    if answer_field == GOLD_FIELDS[0]:
        answer_field = next((f for f in GOLD_FIELDS if f in rec), answer_field)
    question = _question(rec, question_field, where, key, bad)
    answer = _field_text(rec, answer_field, where, key, bad) if question is not None else None
    if answer is None:
        return None
    if gsm8k_answers:
        answer = gsm8k_gold(answer)
        if not answer:
            _reject(f"{where}: field '{answer_field}' has no '#### <answer>' line", key, bad)
            return None
    columns = {k: v for k, v in rec.items() if k != "prompt"}
    return Problem(question=question[0], answer=answer.strip(), messages=question[1], columns=columns,
                   id=str(rec.get("id", rec.get("unique_id", default_id))))


def jsonl_examples(path: str | Path, question_field: str = "question", answer_field: str = "answer",
                   gsm8k_answers: bool = False, skipped: list[str] | None = None) -> list[Problem]:
    """Examples from a JSONL file with a field mapping; `gsm8k_answers` takes the gold after '####'.

    A record without a usable question or gold answer raises DataError naming file and line, or with a
    `skipped` list is recorded there (in line order, with the lines read_jsonl rejects) and left out.
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    examples = []
    for lineno, rec in _read_rows(path, bad):
        example = _record_example(rec, lineno, f"{path}:{lineno}", f"{path.name}:{lineno}", question_field,
                                  answer_field, gsm8k_answers, bad)
        if example is not None:
            examples.append(example)
    if not examples:
        raise _no_usable_records(path, bad)
    if skipped is not None:
        skipped.extend(message for _, message in sorted(bad))
    return examples


# --------------------------------------------------------------------------
# Datasets through the `datasets` library
# --------------------------------------------------------------------------

# file suffix -> the `datasets` builder that reads it
DATA_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _pick_split(ds: Any, source: str, split: str) -> Any:
    """The split of a DatasetDict (a Dataset is returned as it is); DataError names the splits there are."""
    if not hasattr(ds, "keys"):
        return ds
    if split not in ds:
        raise DataError(f"{source}: no split '{split}' (splits: {', '.join(ds)}; set dataset_split)")
    return ds[split]


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub dataset in the Hugging Face hub cache, without any network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None


def _load_hf(source: str, config: str | None, split: str) -> Any:
    """A `datasets.Dataset` for a data file, a folder of data files, a save_to_disk folder or a cached hub id.

    Design: a file is its own only split (dataset_split does not apply); a folder is read as
    `load_dataset(folder)` reads it, so train/test file names become splits; a hub id is looked up in the
    hub cache only (`local_files_only`): r1kit never downloads data, and a missing one is an error saying so.
    """
    import datasets

    datasets.disable_progress_bars()
    path = Path(source)
    if path.suffix.lower() in DATA_FILE_BUILDERS and not path.exists():
        raise DataError(f"{path}: no such file")
    try:
        if path.is_file():
            builder = DATA_FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"{path}: unsupported file type '{path.suffix}' (use one of "
                                f"{', '.join(DATA_FILE_BUILDERS)})")
            return load_dataset_quietly(builder, data_files=str(path), split="train")
        if path.is_dir():
            if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
                return _pick_split(datasets.load_from_disk(str(path)), source, split)
            return _pick_split(load_dataset_quietly(str(path), name=config), source, split)
        snapshot = _hub_snapshot(source) if _HUB_ID.match(source) else None
        if snapshot is None:
            raise DataError(f"dataset={source!r}: not 'arithmetic', 'gsm8k', a data file or folder, nor a hub "
                            f"dataset in the local Hugging Face cache (download it first, e.g. "
                            f"`hf download --repo-type dataset {source}`)")
        return _pick_split(load_dataset_quietly(str(snapshot), name=config), source, split)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow, pandas and datasets raise many kinds; one line each
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"{source}: could not be read ({type(e).__name__}: {first[:300]})") from None


def load_dataset_quietly(path: str, **kw: Any) -> Any:
    """datasets.load_dataset without its log lines (cache hits, and errors that DataError reports in one line)."""
    import datasets

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a bad file is our one-line DataError
    try:
        return datasets.load_dataset(path, **kw)
    finally:
        datasets.logging.set_verbosity(verbosity)


def read_records(source: str | Path, config: str | None = None, split: str = "train") -> list[tuple[str, dict]]:
    """(where, record) per row of any dataset source; `where` is "file:line" for JSONL, "source: row i"
    otherwise. Used by every r1kit command that reads records (training, evaluation, SFT, reward models)."""
    source = str(source)
    if source.endswith(".jsonl") or (source.endswith(".json") and not _is_json_array(Path(source))):
        return [(f"{source}:{lineno}", rec) for lineno, rec in read_jsonl(source)]
    ds = _load_hf(source, config, split)
    if len(ds) == 0:
        raise DataError(f"{source}: no records (empty dataset)")
    return [(f"{source}: row {i}", rec) for i, rec in enumerate(ds)]


def _is_json_array(path: Path) -> bool:
    """A .json file holding one JSON array (read by `datasets`) rather than JSON lines (read by r1kit)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return head[:1] == b"["


def dataset_examples(source: str | Path, question_field: str = "question", answer_field: str = "answer", *,
                     config: str | None = None, split: str = "train",
                     skipped: list[str] | None = None) -> list[Problem]:
    """Examples from any source `read_records` takes, with the same field checks as `jsonl_examples`.

    With a `skipped` list, unusable rows are recorded and left out.
    """
    source = str(source)
    rows = read_records(source, config, split)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    name = Path(source).name or source
    examples = []
    for i, (where, rec) in enumerate(rows):
        example = _record_example(rec, i, where, f"{name}:{i}", question_field, answer_field, False, bad)
        if example is not None:
            examples.append(example)
    if not examples:
        raise DataError(f"{source}: no usable records ({len(bad)} bad rows skipped; first: {min(bad)[1]})")
    if skipped is not None:
        skipped.extend(message for _, message in sorted(bad))
    return examples


def load_examples(dataset: str, *, data_dir: str | None = None, split: str = "train", config: str | None = None,
                  question_field: str = "question", answer_field: str = "answer", seed: int = 0,
                  num_examples: int = 10000, num_terms: int = 2, max_value: int = 99, ops: str = "+",
                  skipped: list[str] | None = None) -> list[Problem]:
    """Resolve the `dataset` option: 'arithmetic', 'gsm8k' (from data_dir), a path to a .jsonl file, or
    any other source `read_records` takes (`config`: the dataset configuration, `split`: its split).

    With a `skipped` list, bad lines are recorded there and left out rather than raising (skip_bad_data).
    """
    if dataset == "arithmetic":
        return arithmetic_examples(num_examples, seed, num_terms=num_terms, max_value=max_value, ops=ops)
    if dataset == "gsm8k":
        path = Path(data_dir or default_data_dir()) / "gsm8k" / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"dataset=gsm8k: {path} not found (set data_dir or R1KIT_DATA_DIR)")
        return jsonl_examples(path, "question", "answer", gsm8k_answers=True, skipped=skipped)
    if dataset.endswith(".jsonl") or (dataset.endswith(".json") and not _is_json_array(Path(dataset))) \
            or (Path(dataset).is_file() and Path(dataset).suffix.lower() not in DATA_FILE_BUILDERS):
        return jsonl_examples(dataset, question_field, answer_field, skipped=skipped)
    return dataset_examples(dataset, question_field, answer_field, config=config, split=split, skipped=skipped)


def general_examples(path: str | Path, prompt_field: str = "prompt", skipped: list[str] | None = None) -> list[Problem]:
    """General (non-reasoning) prompts for all-scenario RL: a JSONL of records with a prompt field.

    They have no gold answer; reward models score their responses (Problem.kind == "general").
    """
    path = Path(path)
    bad: list[tuple[int, str]] | None = None if skipped is None else []
    examples = []
    for lineno, rec in _read_rows(path, bad):
        prompt = _field_text(rec, prompt_field, f"{path}:{lineno}", lineno, bad)
        if prompt is not None:
            examples.append(Problem(question=prompt, answer="", id=str(rec.get("id", f"{path.name}:{lineno}")),
                                    kind="general"))
    if not examples:
        raise _no_usable_records(path, bad or [(0, "no records")])
    if skipped is not None:
        skipped.extend(message for _, message in sorted(bad))
    return examples


def read_examples(path: str | Path) -> tuple[tuple[str, str], ...]:
    """Worked examples for a prompt, (question, response) pairs from a .jsonl with those fields; DataError
    names the file and line of a bad one."""
    pairs = []
    for lineno, rec in read_jsonl(path):
        values = [rec.get(f) for f in ("question", "response")]
        if not all(isinstance(v, str) and v.strip() for v in values):
            raise DataError(f"{path}:{lineno}: a worked example needs text fields 'question' and 'response'")
        pairs.append((values[0], values[1]))
    return tuple(pairs)
