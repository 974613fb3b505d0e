"""FSDP2 (fully sharded data parallel) through accelerate: what the shared loop does differently when the
policy's parameters are sharded over the processes (DTensors) instead of replicated (DDP).

Design decisions:
- FSDP2 only (`fsdp_version: 2`). FSDP1 wraps the model in flat parameters, with state dicts and optimizer
  state of its own; r1kit refuses it in one line rather than half supporting it.
- FSDP on CPU. accelerate (1.15) never turns FSDP on without an accelerator: AcceleratorState switches to
  DistributedType.FSDP only from the GPU-like multi-process types, and with `cpu=True` (MULTI_CPU, gloo) an
  FSDP config silently trains as DDP. torch's `fully_shard` itself works on CPU: gloo in torch 2.13 has
  the all_gather_into_tensor and reduce_scatter_tensor FSDP2 is built on. So `enable_fsdp_on_cpu` makes the
  two assignments AcceleratorState.__init__ makes on a GPU: the plugin (read from the FSDP_* variables that
  `accelerate launch` sets) and the distributed type, on PartialState too (each later AcceleratorState()
  copies PartialState's type over its own: without it, the type was MULTI_CPU again after `prepare`, and
  get_state_dict returned the shards).
  Everything after that is accelerate's own FSDP2 path: prepare, no_sync, clip_grad_norm_, get_state_dict.
  tests/test_fsdp.py runs it on 2 CPU processes.
- Checkpoints stay plain HF folders: every process takes part in gathering the full state dict
  (accelerator.get_state_dict, rank 0 receives it) and rank 0 writes it with save_pretrained.
- Optimizer state: torch.distributed.checkpoint's full optimizer state dict (full tensors keyed by
  parameter name, gathered to rank 0), written into training_state.pt where DDP writes its own. On resume
  every process reads it and keeps its shard (set_optimizer_state_dict). One file whatever the number of
  processes, and the resumed run continues exactly (tests/test_fsdp.py). Its keys are names where DDP's
  optimizer.state_dict() has indices, so the checkpoint says which it holds and a resume across the two
  is refused.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

from r1kit.core.errors import ConfigError

# training_state["optimizer_format"] of a checkpoint written under FSDP2 (absent under DDP)
FULL_BY_NAME = "full-by-name"


def fsdp_requested() -> bool:
    """Whether `accelerate launch` was given an FSDP config (it exports ACCELERATE_USE_FSDP)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def enable_fsdp_on_cpu(acc: Accelerator) -> None:
    """Turn on accelerate's FSDP2 for a multi-process CPU run under an FSDP config (see the module
    docstring); a no-op anywhere else."""
    if not (fsdp_requested() and acc.distributed_type == DistributedType.MULTI_CPU):
        return
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* environment, as Accelerator() reads it
    if acc.mixed_precision != "no":
        plugin.set_mixed_precision(acc.mixed_precision)
    acc.state.fsdp_plugin = plugin
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def check_fsdp_request() -> None:
    """Refuse, in one line and before accelerate starts, the FSDP and DeepSpeed settings r1kit cannot
    train under."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        # accelerate's DeepSpeed path wants a dataloader's batch size in prepare() and steps the optimizer
        # inside backward(); r1kit's loop has no dataloader and steps the optimizer itself
        raise ConfigError("DeepSpeed: r1kit's training loop does not run under accelerate's DeepSpeed integration "
                          "yet; shard with FSDP2 instead (configs/accelerate/fsdp_gpu.yaml)")
    if not fsdp_requested():
        return
    version = os.environ.get("FSDP_VERSION", "1")  # what FullyShardedDataParallelPlugin reads
    if version != "2":
        raise ConfigError(f"fsdp_version {version}: r1kit trains under FSDP2 only; set fsdp_version: 2 in the "
                          f"accelerate config (configs/accelerate/fsdp_gpu.yaml)")
    if os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() in ("1", "true", "yes"):
        # transformers then loads no weights on ranks other than 0 for every from_pretrained, expecting
        # prepare() to broadcast them; the reference and reward models are never prepared
        raise ConfigError("fsdp_cpu_ram_efficient_loading: true would leave the reference and reward models without "
                          "weights on every process but rank 0; set it to false in the accelerate config")


def is_sharded(acc: Accelerator) -> bool:
    """Whether the policy is sharded: FSDP2 (open_run has refused FSDP1 with `check_fsdp_request`)."""
    return acc.distributed_type == DistributedType.FSDP


def full_model_state(acc: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full state dict on rank 0 (empty elsewhere). A collective: every process calls it.

    Tied weights (embeddings and LM head) come back gathered twice, as separate tensors; each alias is
    pointed back at one tensor, so that save_pretrained recognises the tie by shared storage and writes
    the folder it writes for the unsharded model (without a separate lm_head.weight)."""
    state = acc.get_state_dict(model)
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for first, *aliases in names.values():
        for alias in aliases:
            if first in state and alias in state:
                state[alias] = state[first]
    return state


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The full optimizer state keyed by parameter name, on rank 0 (empty elsewhere). A collective:
    every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a `full_optimizer_state` into the sharded optimizer: each process keeps its own shard of the
    full tensors it read (no communication needed: every process has read the checkpoint)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def check_optimizer_format(state: dict, sharded: bool, checkpoint) -> None:
    """Refuse to resume an FSDP2 checkpoint without FSDP2, or a DDP/single-process one under FSDP2."""
    written_sharded = state.get("optimizer_format") == FULL_BY_NAME
    if written_sharded != sharded:
        was, now = ("FSDP2", "without FSDP") if written_sharded else ("DDP or one process", "under FSDP2")
        raise ConfigError(f"resume: {checkpoint} was written under {was}; its optimizer state cannot be resumed {now} "
                          f"(launch with the accelerate config it was written with)")
