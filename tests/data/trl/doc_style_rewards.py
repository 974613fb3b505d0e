"""Test fixture written for r1kit: one reward for each calling convention that the examples of TRL's GRPO
documentation (docs/source/grpo_trainer.md, "Using a custom reward function") teach, in our own code. Each is
called by keyword, as TRL's GRPOTrainer calls it, and says which prompt shape it is written for.
"""

import asyncio
import re


def token_count_reward(completions_ids, **kwargs):
    """Reads `completions_ids` (one list of token ids per completion); any prompt shape."""
    return [float(len(ids)) for ids in completions_ids]


def char_count_reward(completions, **kwargs):
    """Reads `completions` as plain strings: written for a standard (text) prompt."""
    return [float(len(text)) for text in completions]


def think_then_answer_reward(completions, **kwargs):
    """Reads `completions` as messages (`completion[0]["content"]`): written for a conversational prompt."""
    layout = re.compile(r"<think>.*?</think><answer>.*?</answer>")
    return [1.0 if layout.fullmatch(c[0]["content"]) else 0.0 for c in completions]


def boxed_equals_ground_truth(completions, ground_truth, **kwargs):
    """Reads plain-string `completions` and the dataset's `ground_truth` column."""
    found = [re.findall(r"\\boxed\{(.*?)\}", text) for text in completions]
    return [1.0 if boxes and boxes[0] == truth else 0.0 for boxes, truth in zip(found, ground_truth)]


async def nonempty_async_reward(prompts, completions, **kwargs):
    """An `async def` reward (TRL awaits it); reads `prompts` and `completions` in either shape."""
    await asyncio.sleep(0.005)  # stands for an I/O-bound call such as an HTTP request
    return [1.0 if completion else 0.0 for completion, _ in zip(completions, prompts)]
