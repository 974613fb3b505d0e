# Test fixture, not r1kit code: an example reward of TRL's GRPO documentation, copied unchanged from
# huggingface/trl (Apache-2.0) docs/source/grpo_trainer.md at commit 010dd23f91b8cb007849ad94dbf336379aea0750,
# "Example 3: Reward completions based on a reference" (a dataset with a ground_truth column).
import re


def reward_func(completions, ground_truth, **kwargs):
    # Regular expression to capture content inside \boxed{}
    matches = [re.search(r"\\boxed\{(.*?)\}", completion) for completion in completions]
    contents = [match.group(1) if match else "" for match in matches]
    # Reward 1 if the content is the same as the ground truth, 0 otherwise
    return [1.0 if c == gt else 0.0 for c, gt in zip(contents, ground_truth)]
