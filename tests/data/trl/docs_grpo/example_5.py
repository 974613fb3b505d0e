# Test fixture, not r1kit code: an example reward of TRL's GRPO documentation, copied unchanged from
# huggingface/trl (Apache-2.0) docs/source/grpo_trainer.md at commit 010dd23f91b8cb007849ad94dbf336379aea0750,
# "Example 5: Asynchronous reward functions".
import asyncio


async def async_reward_func(prompts, completions, **kwargs):
    # Simulate an I/O-bound call (e.g., HTTP request, database lookup)
    await asyncio.sleep(0.01)
    # Simple toy reward: 1.0 if the completion is non-empty, else 0.0
    return [1.0 if completion else 0.0 for completion in completions]
