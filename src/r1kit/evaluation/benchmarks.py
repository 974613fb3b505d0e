"""The benchmarks evaluation reads: GSM8K, MATH-500, AIME 2024/2025 and AMC 2023 from the data folder with
their own field names and answer quirks, any dataset r1kit.data.sources reads, and held-out synthetic
arithmetic; each problem a `Problem` with its gold answer."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from r1kit.core.errors import DataError
from r1kit.data.problems import Problem, default_data_dir, gsm8k_gold
from r1kit.data.sources import DATA_FILE_BUILDERS, read_records


@dataclass(frozen=True)
class Benchmark:
    path: str  # relative to the data folder
    question_field: str
    answer_field: str
    id_field: str | None = None
    group_fields: tuple[str, ...] = ()  # per-group pass@1 (MATH-500: subject, level)
    gsm8k_answers: bool = False


BENCHMARKS = {
    "gsm8k": Benchmark("gsm8k/test.jsonl", "question", "answer", gsm8k_answers=True),
    "math500": Benchmark("math500/test.jsonl", "problem", "answer", "unique_id", ("subject", "level")),
    "aime24": Benchmark("aime24/test.jsonl", "problem", "answer", "id"),
    "aime25": Benchmark("aime25/test.jsonl", "problem", "answer", "id"),
    "amc23": Benchmark("amc23/test.jsonl", "problem", "answer", "id"),
}


def load_benchmark(name: str, data_dir: str | None = None, question_field: str = "question",
                   answer_field: str = "answer", config: str | None = None, split: str = "test") -> list[Problem]:
    """A built-in benchmark by name, or any dataset r1kit.data.read_records takes (a JSONL or other data
    file, a folder, a save_to_disk folder, a cached hub id; `config` and `split` for the latter) with a
    field mapping."""
    if name in BENCHMARKS:
        bench = BENCHMARKS[name]
        path = Path(data_dir or default_data_dir()) / bench.path
        if not path.is_file():
            raise DataError(f"benchmark {name}: {path} not found (set --data_dir or R1KIT_DATA_DIR)")
        rows = read_records(path)
    elif name.endswith(tuple(DATA_FILE_BUILDERS)) or Path(name).exists() or "/" in name:
        bench = Benchmark(name, question_field, answer_field, "id")
        rows = read_records(name, config, split)
    else:
        raise DataError(f"unknown benchmark {name!r}: use one of {', '.join(BENCHMARKS)}, a data file or folder, "
                        f"or a cached hub dataset")
    problems = []
    for n, (where, rec) in enumerate(rows, 1):
        for f in (bench.question_field, bench.answer_field):
            if rec.get(f) is None:
                raise DataError(f"{where}: missing field '{f}'")
        gold = str(rec[bench.answer_field])
        if bench.gsm8k_answers:
            gold = gsm8k_gold(gold)
            if gold is None:
                raise DataError(f"{where}: field '{bench.answer_field}' has no '#### <answer>' line")
        pid = rec.get(bench.id_field) if bench.id_field else None
        # a JSONL problem without an id is named by its line, any other by its position
        fallback = where.rsplit(":", 1)[1] if ": row " not in where else str(n)
        problems.append(Problem(id=str(pid if pid is not None else fallback), question=str(rec[bench.question_field]),
                                answer=gold.strip(), groups={g: str(rec.get(g)) for g in bench.group_fields}))
    return problems


def select_problems(problems: list[Problem], limit: int | None, subset: str = "first", seed: int = 0) -> list[Problem]:
    """The first `limit` problems, or a seeded random subset of that size (kept in file order)."""
    if not limit or limit >= len(problems):
        return problems
    if subset == "first":
        return problems[:limit]
    if subset == "random":
        keep = sorted(random.Random(seed).sample(range(len(problems)), limit))
        return [problems[i] for i in keep]
    raise ValueError(f"subset={subset!r}: choose first or random")


def held_out_problems(benchmark: str, limit: int, seed: int, data_dir: str | None = None, *,
                      question_field: str = "question", answer_field: str = "answer", arithmetic_terms: int = 2,
                      arithmetic_max_value: int = 99, arithmetic_ops: str = "+") -> list[Problem]:
    """The first `limit` problems of a benchmark, or for 'arithmetic' a synthetic set drawn from a seed
    stream (seed + 7919) that the training questions of the same seed never use.

    A benchmark with fewer than `limit` problems is an error, not a smaller evaluation: a figure measured on
    fewer problems than asked would be reported as if it were the asked size."""
    if benchmark == "arithmetic":
        from r1kit.data.arithmetic import arithmetic_examples

        held_out = arithmetic_examples(limit, seed + 7919, num_terms=arithmetic_terms, max_value=arithmetic_max_value,
                                       ops=arithmetic_ops)
        return held_out
    problems = load_benchmark(benchmark, data_dir, question_field, answer_field)
    if len(problems) < limit:
        raise DataError(f"benchmark {benchmark}: {limit} held-out problems asked for, it has only {len(problems)} "
                        f"(lower the limit or use a larger set)")
    return select_problems(problems, limit)
