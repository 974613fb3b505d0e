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
from r1kit.rollout.options import EngineOptions
from r1kit.rollout.sampling import Rollout, generate, rollout_copy


class RolloutEngine(Protocol):
    dtype: torch.dtype | None  # the weights it samples with (None: as the policy holds them)

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
        # the dtype of the weights it samples with (every engine says, so the trainer knows whether it samples
        # from the policy's own numbers)
        self.dtype = sampler.dtype if isinstance(sampler, FusedDecoder) else next(sampler.parameters()).dtype

    def sync_weights(self, policy: nn.Module, policy_version: int) -> None:
        if isinstance(self.sampler, FusedDecoder):
            self.sampler.load(policy)
        elif self.sampler is not policy:
            copy_weights_into(self.sampler, policy)

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, seed: int, **kw) -> Rollout:
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return generate(self.sampler, tokenizer, prompts, generator=gen, **kw)


def make_sampler(o: EngineOptions, policy: nn.Module, dtype: torch.dtype, device,
                 sharded: bool = False) -> object:
    """What `rollout.generate` samples from: a FusedDecoder (Llama-family models), the policy itself,
    or a plain copy in another dtype, as `o.rollout_engine` and `o.rollout_dtype` ask. Called before
    accelerate wraps the policy.

    `sharded` (FSDP2): never the policy itself. Each forward of a sharded module all-gathers its weights
    with the other processes, and processes decode different numbers of tokens (their rows finish at
    different steps), so they would wait on each other forever; a full copy decodes alone."""
    rollout_dtype = dtype if o.rollout_dtype == "auto" else getattr(torch, o.rollout_dtype)
    engine = o.rollout_engine
    if engine == "auto":
        engine = "hf" if unsupported_reason(policy) else "fused"
    if engine == "fused":
        reason = unsupported_reason(policy)
        if reason:
            raise ConfigError(f"rollout_engine=fused does not support this model: {reason}; use rollout_engine=hf")
        return FusedDecoder(policy, rollout_dtype, kernels=o.rollout_kernels)
    if rollout_dtype == dtype and not sharded:
        return policy
    return rollout_copy(policy, rollout_dtype).to(device)


def make_vllm_engine(o: EngineOptions, model: str, max_model_len: int, seed: int) -> RolloutEngine:
    """rollout_engine=vllm: a colocated VLLMEngine of `model`, or a client of a `r1kit vllm-serve` process."""
    if o.vllm_mode == "server":
        from r1kit.rollout.vllm_client import VLLMClient  # needs no vLLM in this process

        return VLLMClient(o.vllm_server_host, o.vllm_server_port, group_port=o.vllm_group_port,
                          timeout=o.vllm_server_timeout, dtype=o.vllm_dtype)
    if o.vllm_enable_sleep_mode and not torch.cuda.is_available():
        raise ConfigError("vllm_enable_sleep_mode: vLLM's CPU backend has no sleep mode (it releases GPU memory "
                          "only); remove the option")
    from r1kit.rollout.vllm_engine import VLLMEngine

    return VLLMEngine(resolve_model_path(model), dtype=o.vllm_dtype, gpu_memory_utilization=o.vllm_gpu_memory_utilization,
                      max_model_len=max_model_len, seed=seed, enable_sleep_mode=o.vllm_enable_sleep_mode,
                      enforce_eager=o.vllm_enforce_eager, kv_cache_memory_bytes=o.vllm_kv_cache_memory_bytes)


def samples_off_policy(engine: object, policy_dtype: torch.dtype) -> bool:
    """Whether an engine's log-probs differ from the policy's beyond rounding: one with kernels of its own
    (vLLM; TRL corrects whenever vLLM samples) or weights in another dtype than the policy's. An engine
    that does not say its dtype is taken to sample from the policy itself."""
    if getattr(engine, "own_kernels", False):
        return True
    dtype = getattr(engine, "dtype", None)
    return dtype is not None and dtype != policy_dtype


def make_engine(o: EngineOptions, policy: nn.Module, dtype: torch.dtype, device, *, model: str, max_model_len: int,
                seed: int, sharded: bool = False) -> RolloutEngine:
    """The engine `o.rollout_engine` names, holding (a copy of) `policy`, the model named `model` (vLLM loads
    it by name); `sharded`: see make_sampler."""
    if o.rollout_engine == "vllm":
        return make_vllm_engine(o, model, max_model_len, seed)
    return LocalEngine(make_sampler(o, policy, dtype, device, sharded), device)
