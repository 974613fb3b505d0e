"""Training data: the synthetic task, GSM8K's original format, JSONL with a field mapping, bad input."""

import pytest

from r1kit.core.errors import DataError
from r1kit.data.arithmetic import arithmetic_examples
from r1kit.data.order import prompt_indices
from r1kit.data.problems import gsm8k_gold
from r1kit.data.sources import jsonl_examples, load_examples
from tests.conftest import DATA_DIR


def test_arithmetic_is_deterministic_and_correct():
    a = arithmetic_examples(50, seed=7, num_terms=3, max_value=20, ops="+-*")
    assert a == arithmetic_examples(50, seed=7, num_terms=3, max_value=20, ops="+-*")
    assert a != arithmetic_examples(50, seed=8, num_terms=3, max_value=20, ops="+-*")
    for ex in a:
        expr = ex.question.removeprefix("What is ").removesuffix("?")
        assert len(expr.split()) == 5
        assert str(eval(expr)) == ex.answer


@pytest.mark.skipif(not (DATA_DIR / "gsm8k" / "train.jsonl").is_file(), reason="shared data folder not present")
def test_gsm8k_from_the_shared_data_folder():
    ex = load_examples("gsm8k", data_dir=str(DATA_DIR))
    assert len(ex) == 7473
    assert ex[0].answer == "72" and ex[0].question.startswith("Natalia")
    assert all("####" not in e.answer and "," not in e.answer for e in ex)


def test_gsm8k_gold_strips_commas():
    assert gsm8k_gold("so 1,000 + 234 = 1234\n#### 1,234") == "1234"
    assert gsm8k_gold("no marker") is None


def test_jsonl_mapping(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"q": "2+2?", "a": 4}\n\n{"q": "3+3?", "a": "6", "id": "x"}\n')
    ex = jsonl_examples(f, "q", "a")
    assert [(e.question, e.answer) for e in ex] == [("2+2?", "4"), ("3+3?", "6")]
    assert ex[1].id == "x"


@pytest.mark.parametrize("content,message", [
    ('{"question": "a", "answer": "1"}\n{"question": "b"\n', "d.jsonl:2: malformed JSON"),
    ('{"question": "a", "answer": "1"}\n{"question": "b"}\n', "d.jsonl:2: missing field 'answer'"),
    ("", "no records (empty file)"),
    ('[1, 2]\n', "d.jsonl:1: expected a JSON object"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, content, message):
    f = tmp_path / "d.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jsonl_examples(f)


def test_invalid_utf8_and_missing_file(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"question": "\xff", "answer": "1"}\n')
    with pytest.raises(DataError, match="invalid UTF-8"):
        jsonl_examples(f)
    with pytest.raises(DataError, match="no such file"):
        jsonl_examples(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="not found"):
        load_examples("gsm8k", data_dir=str(tmp_path))


def test_prompt_order_is_a_seeded_stream_of_epochs():
    first = prompt_indices(10, 0, 10, seed=1)
    assert sorted(first) == list(range(10))  # one epoch visits every example once
    assert prompt_indices(10, 3, 12, seed=1) == (first + prompt_indices(10, 10, 10, seed=1))[3:15]
    assert prompt_indices(10, 0, 10, seed=2) != first
