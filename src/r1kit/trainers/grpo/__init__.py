"""GRPO: its config, the set-up of a run, the step (prompts -> rollout -> rewards -> advantages -> update),
scoring, metrics and records, and the loop that runs the steps."""
