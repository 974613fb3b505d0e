"""The options of where prompts come from (DataOptions) and how a question becomes a prompt (PromptOptions)."""

from __future__ import annotations

from dataclasses import dataclass

from r1kit.core.options import Options, need, need_choice, opt


@dataclass
class DataOptions(Options):
    """training data"""

    dataset: str = opt("arithmetic", "'arithmetic' (synthetic), 'gsm8k' (from data_dir), a .jsonl/.json/.parquet/"
                                     ".csv/.arrow file, a folder of such files, a save_to_disk folder, or a hub "
                                     "dataset id in the local HF cache")
    data_dir: str | None = opt(None, "folder with benchmark data (default: $R1KIT_DATA_DIR or ../shared/data)")
    dataset_config: str | None = opt(None, "configuration (subset) of a hub or folder dataset")
    dataset_split: str = opt("train", "split: gsm8k's train or test, or a split of a folder/save_to_disk/hub dataset "
                                      "(a single file is its own split)")
    question_field: str = opt("question", "JSONL field holding the question")
    answer_field: str = opt("answer", "field holding the gold answer (left at 'answer': a record without one has its "
                                      "'solution' or else 'ground_truth' read, TRL's names)")
    arithmetic_terms: int = opt(2, "arithmetic task: numbers per question")
    arithmetic_max_value: int = opt(99, "arithmetic task: largest number (difficulty)")
    arithmetic_ops: str = opt("+", "arithmetic task: operators to draw from, a subset of '+-*'")
    arithmetic_examples: int = opt(10000, "arithmetic task: number of distinct questions")
    skip_bad_data: bool = opt(False, "skip malformed dataset lines (counted, reported, listed in skipped_data.txt) "
                                     "instead of stopping with an error")

    def problems(self, seed: int, skipped: list[str] | None = None) -> list:
        """The problems these options name (a list of data.problems.Problem); with a `skipped` list, bad lines
        are recorded there instead of raising."""
        from r1kit.data.sources import load_examples

        return load_examples(self.dataset, data_dir=self.data_dir, split=self.dataset_split, config=self.dataset_config,
                             question_field=self.question_field, answer_field=self.answer_field, seed=seed,
                             num_examples=self.arithmetic_examples, num_terms=self.arithmetic_terms,
                             max_value=self.arithmetic_max_value, ops=self.arithmetic_ops, skipped=skipped)


@dataclass
class PromptOptions(Options):
    """prompts"""

    template: str = opt("r1zero", "'r1zero' (the paper's Table 1 template), 'chat' (the model's chat template) "
                                  "or 'plain'")
    system_prompt: str | None = opt(None, "template=chat: the system message (default: r1kit's R1 instruction; '': "
                                          "none); a conversational dataset's own system turn wins")
    chat_template: str | None = opt(None, "template=chat: a Jinja chat template used instead of the model's own (open-r1's "
                                          "option; checkpoints keep it)")
    prefill: str = opt("", "text the response is forced to start with, e.g. '<think>'")
    max_prompt_length: int = opt(512, "prompts longer than this many tokens are cut from the left")
    prompt_examples: str | None = opt(None, "template=chat: a .jsonl of worked examples (question, response), shown "
                                            "before each question as earlier turns of the conversation, in "
                                            "training and in evaluation")

    def check(self) -> None:
        from r1kit.data.templates import TEMPLATES

        need_choice("template", self.template, TEMPLATES)
        need(self.max_prompt_length >= 1, "max_prompt_length must be >= 1")
        need(not self.prompt_examples or self.template == "chat",
             f"prompt_examples are shown as earlier chat turns: they need template=chat, not {self.template}")
        if self.prompt_examples:
            from r1kit.data.sources import read_examples

            read_examples(self.prompt_examples)  # a bad file fails before any model loads
