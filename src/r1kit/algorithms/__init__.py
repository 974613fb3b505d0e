"""The GRPO family as pure tensor functions (verl's core_algos): advantage estimators, per-token policy
losses and their aggregation, importance-sampling corrections and shaping, per-token log-probs, and the
paper's loss written out on one screen (`reference.py`). docs/algorithms.md gives each formula."""
