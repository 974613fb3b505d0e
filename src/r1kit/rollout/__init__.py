"""Rollout engines: sampling G completions per prompt (the fused decoder, the transformers forward, vLLM
colocated or as a server) behind one interface, `sync_weights` and `generate`."""

from r1kit.rollout.sampling import Rollout, generate

__all__ = ["Rollout", "generate"]
