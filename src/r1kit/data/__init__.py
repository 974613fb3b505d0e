"""Prompts: the `Problem` record (a question, its gold answer and how it is scored), where problems come from
(JSONL, `datasets`, GSM8K, synthetic arithmetic, preference pairs), the seeded prompt order, and the
templates that turn a question into a prompt."""

from r1kit.core.errors import DataError
from r1kit.data.arithmetic import arithmetic_examples
from r1kit.data.order import prompt_indices
from r1kit.data.problems import Example, default_data_dir
from r1kit.data.sources import load_examples, read_jsonl, read_records

__all__ = ["DataError", "Example", "arithmetic_examples", "default_data_dir", "load_examples", "prompt_indices",
           "read_jsonl", "read_records"]
