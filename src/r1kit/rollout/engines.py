"""Rollout engines: what samples the G completions of each prompt for the GRPO step.

Every engine does two things, and the trainer calls nothing else:
    engine.sync_weights(policy, policy_version)   # before each rollout: hold the policy's current weights
    engine.generate(tokenizer, prompts, seed=..., num_generations=..., ...) -> Rollout

- LocalEngine samples in the training process: from r1kit's fused decoder (a copy of the weights in
  fused layout, Llama-family models), from the policy itself through the transformers forward, or from
  a plain copy in another dtype (rollout_dtype).
- vllm_engine.VLLMEngine is a colocated vLLM engine (weights pushed after every update), on a GPU or,
  with vLLM's CPU build, on the CPU.
- vllm_client.VLLMClient samples from a `r1kit vllm-serve` process (vllm_mode=server) and pushes the
  weights to it through a torch.distributed group.
A user's own engine (a server client, a stand-in for tests) is any object with these two methods,
passed as `train(config, engine=...)`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from r1kit.core.errors import ConfigError
from r1kit.models.loading import resolve_model_path
from r1kit.models.weights import copy_weights_into
from r1kit.rollout.decoder import FusedDecoder, unsupported_reason
from r1kit.rollout.sampling import Rollout, generate, rollout_copy
from r1kit.trainers.grpo.config import GRPOConfig


class RolloutEngine(Protocol):
    def sync_weights(self, policy: nn.Module, policy_version: int) -> object: ...

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, seed: int, num_generations: int,
                 max_new_tokens: int, temperature: float, top_p: float, stop_strings: tuple[str, ...],
                 max_prompt_length: int, ignore_eos: bool) -> Rollout: ...


class LocalEngine:
    """Sampling in this process from `sampler`: the policy itself, a FusedDecoder or a copy of the policy.
    Copies are refreshed from the policy before every rollout, so samples are on-policy (up to the copy's
    dtype; the trainer logs the gap)."""

    def __init__(self, sampler: "nn.Module | FusedDecoder", device: torch.device | str) -> None:
        self.sampler, self.device = sampler, device

    def sync_weights(self, policy: nn.Module, policy_version: int) -> None:
        if isinstance(self.sampler, FusedDecoder):
            self.sampler.load(policy)
        elif self.sampler is not policy:
            copy_weights_into(self.sampler, policy)

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, seed: int, **kw) -> Rollout:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return generate(self.sampler, tokenizer, prompts, generator=gen, **kw)


def make_sampler(c: GRPOConfig, policy: nn.Module, dtype: torch.dtype, device,
                 sharded: bool = False) -> tuple[object, object]:
    """(what `rollout.generate` samples from, vLLM engine or None): a FusedDecoder (Llama-family models),
    the policy itself, or a plain copy in another dtype. Called before accelerate wraps the policy.

    `sharded` (FSDP2): never the policy itself. Each forward of a sharded module all-gathers its weights
    with the other processes, and processes decode different numbers of tokens (their rows finish at
    different steps), so they would wait on each other forever; a full copy decodes alone."""
    if c.rollout_engine == "vllm":
        return None, make_vllm_engine(c)
    rollout_dtype = dtype if c.rollout_dtype == "auto" else getattr(torch, c.rollout_dtype)
    engine = c.rollout_engine
    if engine == "auto":
        engine = "hf" if unsupported_reason(policy) else "fused"
    if engine == "fused":
        reason = unsupported_reason(policy)
        if reason:
            raise ConfigError(f"rollout_engine=fused does not support this model: {reason}; use rollout_engine=hf")
        return FusedDecoder(policy, rollout_dtype, kernels=c.rollout_kernels), None
    if rollout_dtype == dtype and not sharded:
        return policy, None
    return rollout_copy(policy, rollout_dtype).to(device), None


def make_vllm_engine(c: GRPOConfig) -> RolloutEngine:
    """rollout_engine=vllm: a colocated VLLMEngine, or a client of a `r1kit vllm-serve` process."""
    if c.vllm_mode == "server":
        from r1kit.rollout.vllm_client import VLLMClient

        return VLLMClient(c.vllm_server_host, c.vllm_server_port, group_port=c.vllm_group_port,
                          timeout=c.vllm_server_timeout, dtype=c.vllm_dtype)
    if c.vllm_enable_sleep_mode and not torch.cuda.is_available():
        raise ConfigError("vllm_enable_sleep_mode: vLLM's CPU backend has no sleep mode (it releases GPU memory "
                          "only); remove the option")
    from r1kit.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(resolve_model_path(c.model), dtype=c.vllm_dtype, gpu_memory_utilization=c.vllm_gpu_memory_utilization,
                      max_model_len=c.max_prompt_length + c.max_completion_length, seed=c.seed,
                      enable_sleep_mode=c.vllm_enable_sleep_mode, enforce_eager=c.vllm_enforce_eager,
                      kv_cache_memory_bytes=c.vllm_kv_cache_memory_bytes)


def make_engine(c: GRPOConfig, policy: nn.Module, dtype: torch.dtype, device, sharded: bool = False) -> RolloutEngine:
    """The engine `c.rollout_engine` names, holding (a copy of) `policy`; `sharded`: see make_sampler."""
    sampler, vllm = make_sampler(c, policy, dtype, device, sharded)
    return vllm if vllm is not None else LocalEngine(sampler, device)
