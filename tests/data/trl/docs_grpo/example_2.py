# Test fixture, not r1kit code: an example reward of TRL's GRPO documentation, copied unchanged from
# huggingface/trl (Apache-2.0) docs/source/grpo_trainer.md at commit 010dd23f91b8cb007849ad94dbf336379aea0750,
# "Example 2: Reward completions with a specific format" (for a conversational dataset).
import re


def format_reward_func(completions, **kwargs):
    """Reward function that checks if the completion has a specific format."""
    pattern = r"^<think>.*?</think><answer>.*?</answer>$"
    completion_contents = [completion[0]["content"] for completion in completions]
    matches = [re.match(pattern, content) for content in completion_contents]
    return [1.0 if match else 0.0 for match in matches]
