"""Rewards, split as verl splits them: what is scored (`functions.py`: small pure rule rewards; `answers.py`,
`readable.py`, `tags.py`: what an answer, a readable response and a tagged response are) and how scoring
runs (`registry.py`: names, specs and TRL's calling convention; `worker.py`: a forked worker with time
limits; `scoring.py`: combining rewards under a failure policy)."""

from r1kit.core.errors import RewardError
from r1kit.rewards import functions  # noqa: F401 - registers the built-in rewards
from r1kit.rewards.answers import answers_match, extract_answer
from r1kit.rewards.functions import accuracy_reward, format_reward, tag_count_reward
from r1kit.rewards.registry import REWARDS, bind_reward_options, load_reward_spec, register_reward
from r1kit.rewards.scoring import RewardFailure, compute_rewards, score_completions
from r1kit.rewards.tags import copies_template, template_copy_rate

__all__ = ["REWARDS", "RewardError", "RewardFailure", "accuracy_reward", "answers_match", "bind_reward_options",
           "compute_rewards", "copies_template", "extract_answer", "format_reward", "load_reward_spec",
           "register_reward", "score_completions", "tag_count_reward", "template_copy_rate"]
