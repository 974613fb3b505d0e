"""Trainers: the shared loop (run folder, resume, optimizer, checkpoints, signals), GRPO (`grpo/`), SFT and
reward-model training."""
