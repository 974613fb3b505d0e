# Test fixture, not r1kit code: an example reward of TRL's GRPO documentation, copied unchanged from
# huggingface/trl (Apache-2.0) docs/source/grpo_trainer.md at commit 010dd23f91b8cb007849ad94dbf336379aea0750,
# "Example 1.1: Reward longer completions (based on the number of characters)".


def reward_func(completions, **kwargs):
    """Reward function that assigns higher scores to longer completions (in terms of character count)."""
    return [float(len(completion)) for completion in completions]
