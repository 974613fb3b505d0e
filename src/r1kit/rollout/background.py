"""Rollout engines that generate in the background, for one-step-off-policy training (async_rollout): the
trainer starts step t+1's rollout, trains on step t's, then collects step t+1's.

Both kinds below are rollout engines (`sync_weights`, `generate`) with three more methods:
    engine.submit(tokenizer, prompts, **generate_kwargs)   # start generating with the weights last synced
    engine.result() -> Rollout                             # wait for it
    engine.close()
`sync_weights` is called only while nothing is being generated.

- ProcessEngine: a local generation worker. A process of its own (spawned) holds a plain copy of the
  policy in shared memory and decodes from it with the engine rollout_engine names (the fused decoder or
  the transformers forward, in rollout_dtype), as the training process would. `sync_weights` writes the
  policy's merged weights into the shared copy; the worker refreshes its decoder from it at its next job.
  Rollouts come back serialised with torch.save (a few tensors and the texts). The worker ignores SIGINT
  and SIGTERM (the trainer decides when to stop) and dies with the trainer, even under SIGKILL.
- ThreadEngine: an engine whose work already happens in another process (the vLLM server's client, a
  user's remote engine): its `generate` runs in a thread of the trainer, which waits on a socket.
"""

from __future__ import annotations

import atexit
import io
import os
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from r1kit.core.errors import EngineError
from r1kit.core.processes import die_with_parent, ignore_stop_signals
from r1kit.models.weights import copy_weights_into
from r1kit.rollout.engines import LocalEngine, make_sampler
from r1kit.rollout.options import EngineOptions
from r1kit.rollout.sampling import Rollout, rollout_copy


def rollout_bytes(rollout: Rollout) -> bytes:
    buffer = io.BytesIO()
    torch.save({f.name: getattr(rollout, f.name) for f in fields(rollout)}, buffer)
    return buffer.getvalue()


def rollout_from_bytes(data: bytes) -> Rollout:
    return Rollout(**torch.load(io.BytesIO(data), weights_only=True))


class ProcessEngine:
    """A generation worker process decoding from a shared-memory copy of the policy (see the module)."""

    def __init__(self, o: EngineOptions, policy: nn.Module, dtype: torch.dtype, tokenizer: PreTrainedTokenizerBase,
                 threads: int) -> None:
        self.weights = rollout_copy(policy, dtype).share_memory()  # [what the worker decodes from]
        # what the worker samples with (its engine's copy in rollout_dtype), for the trainer's off-policy line
        self.dtype = dtype if o.rollout_dtype == "auto" else getattr(torch, o.rollout_dtype)
        ctx = torch.multiprocessing.get_context("spawn")  # fork would copy the trainer's OpenMP threads' state
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(child, o, self.weights, dtype, tokenizer, threads, os.getpid()),
                                   name="r1kit-generation-worker", daemon=True)
        self.process.start()
        child.close()
        # after multiprocessing's own exit hook, so it runs first: that one would wait for a worker that
        # ignores SIGTERM
        atexit.register(self.close)
        self.version: int | None = None  # of the weights in the shared copy
        self.busy = False

    def sync_weights(self, policy: nn.Module, policy_version: int) -> None:
        if self.busy:
            raise RuntimeError("ProcessEngine.sync_weights while the worker is generating")
        if policy_version != self.version:
            copy_weights_into(self.weights, policy)
            self.version = policy_version

    def submit(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], **kw) -> None:
        if self.busy:
            raise RuntimeError("ProcessEngine.submit while the worker is generating")
        self.conn.send((self.version, prompts, kw))
        self.busy = True

    def result(self) -> Rollout:
        while not self.conn.poll(0.5):
            if not self.process.is_alive():
                self.busy = False
                raise EngineError(f"the generation worker (pid {self.process.pid}) died with exit code "
                                  f"{self.process.exitcode} while generating")
        status, payload = self.conn.recv()
        self.busy = False
        if status != "ok":
            raise EngineError(f"the generation worker failed: {payload}")
        return rollout_from_bytes(payload)

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], **kw) -> Rollout:
        self.submit(tokenizer, prompts, **kw)
        return self.result()

    def close(self) -> None:
        atexit.unregister(self.close)
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def serve(conn, o: EngineOptions, weights: nn.Module, dtype: torch.dtype, tokenizer, threads: int,
          parent_pid: int) -> None:
    """The worker's loop: (weights version, prompts, generate kwargs) in, ("ok", rollout bytes) or
    ("error", message) out."""
    ignore_stop_signals()
    die_with_parent()
    if os.getppid() != parent_pid:
        return  # the trainer died before prctl took effect
    torch.set_num_threads(threads)
    device = next(weights.parameters()).device
    engine = LocalEngine(make_sampler(o, weights, dtype, device), device)
    while True:
        try:
            version, prompts, kw = conn.recv()
        except (EOFError, OSError):
            return
        try:
            engine.sync_weights(weights, version)
            reply = ("ok", rollout_bytes(engine.generate(tokenizer, prompts, **kw).to("cpu")))
        except Exception as e:  # noqa: BLE001 - reported to the trainer, which stops with it
            reply = ("error", f"{type(e).__name__}: {e} ({traceback.format_exc(limit=-1).splitlines()[-2].strip()})")
        conn.send(reply)


class ThreadEngine:
    """`engine.generate` in a background thread (for engines that generate in another process)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        # what it samples with, as samples_off_policy reads it off the wrapped engine
        self.own_kernels, self.dtype = getattr(engine, "own_kernels", False), getattr(engine, "dtype", None)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="r1kit-rollout")
        self.future: Future | None = None

    def sync_weights(self, policy: nn.Module, policy_version: int) -> object:
        if self.future is not None:
            raise RuntimeError("ThreadEngine.sync_weights while a rollout is being generated")
        return self.engine.sync_weights(policy, policy_version)

    def submit(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], **kw) -> None:
        self.future = self.pool.submit(self.engine.generate, tokenizer, prompts, **kw)

    def result(self) -> Rollout:
        future, self.future = self.future, None
        return future.result()

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], **kw) -> Rollout:
        return self.engine.generate(tokenizer, prompts, **kw)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if hasattr(self.engine, "close"):
            self.engine.close()
