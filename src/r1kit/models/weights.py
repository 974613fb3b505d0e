"""The policy's weights as a rollout engine needs them: plain HF parameter names, LoRA merged in.

Design decisions:
- A rollout engine (the bf16 HF copy, vLLM) holds its own copy of the weights and is refreshed after each
  policy update. It never sees adapters: under LoRA each adapted layer is sent as W + scale * B @ A,
  computed out of place, so the policy's base weights (which are also the reference model under LoRA)
  are never touched. Merging in place and unmerging afterwards, as some trainers do, leaves rounding
  error in the base.
- Names are those of the plain model (`model.layers.0.self_attn.q_proj.weight`), with peft's
  `base_model.model.` prefix and `.base_layer` infix removed, so any loader of HF checkpoints accepts them.
- Under FSDP2 the policy's parameters are DTensors holding one shard each; a copy needs the whole tensor,
  so each is gathered (`full_tensor()`, an all-gather) as it is sent. That is a collective: every process
  must sync at the same point, as the trainer does (before each step's rollout). Gathering one tensor at a
  time keeps the extra memory to the largest weight, where unsharding the whole model would hold it all.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor


def _lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """peft LoRA layers of `model` by module name (empty without peft or without adapters)."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # peft is optional; without it there are no adapters
        return {}
    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


@torch.no_grad()
def merged_named_weights(policy: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) for every weight of the plain model the policy stands for, adapters merged in.

    Tensors that are not adapted are the policy's own (no copy); a consumer that keeps them must copy.
    Tied weights appear under each of their names, as in `state_dict()`.
    """
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    lora = _lora_layers(base)
    deltas = {}
    for name, layer in lora.items():
        # only adapters that are active contribute, as in the policy's own forward
        active = [a for a in layer.active_adapters if a in getattr(layer, "lora_A", {})]
        if active and not getattr(layer, "merged", False):
            deltas[f"{name}.weight"] = sum(layer.get_delta_weight(a) for a in active)
    for key, tensor in base.state_dict(keep_vars=False).items():
        if ".lora_" in key:  # lora_A, lora_B, lora_dropout, lora_embedding_*: merged below, not sent
            continue
        name = key.replace(".base_layer.", ".")
        if name in deltas:
            tensor = tensor + deltas[name].to(tensor.dtype)  # out of place: the base stays exact
        yield name, full_tensor(tensor)


def full_tensor(tensor: Tensor) -> Tensor:
    """The whole tensor of an FSDP2 shard (a collective), any other tensor as it is."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


@torch.no_grad()
def copy_weights(targets: dict[str, Tensor], policy: nn.Module) -> set[str]:
    """Copy the policy's merged weights into `targets` (name -> tensor, any dtype); returns the names
    copied. A weight with no target is an error: a copy that silently kept old values would sample from
    a stale policy."""
    copied = set()
    for name, tensor in merged_named_weights(policy):
        if name not in targets:
            raise KeyError(f"the rollout copy has no weight named {name!r}")
        targets[name].copy_(tensor)
        copied.add(name)
    return copied


def copy_weights_into(target: nn.Module, policy: nn.Module) -> None:
    """Refresh a plain model `target` (e.g. a bf16 copy) from the policy's merged weights."""
    copy_weights(dict(target.state_dict(keep_vars=True)), policy)
