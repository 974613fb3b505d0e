"""The trainer's side of vLLM server mode (vllm_mode=server): a rollout engine that samples from a
`r1kit vllm-serve` process and pushes the policy's weights to it after each update.

Design decisions:
- Two channels, as TRL's server mode: prompts and samples travel as JSON over HTTP (stdlib urllib, so the
  trainer needs no vLLM and no web framework); weights travel through a torch.distributed process group
  of two ranks (the server is rank 0, this trainer rank 1), gloo on the CPU and NCCL on GPUs. The group
  is built from a TCPStore on the server host (`vllm_group_port`), outside the default process group, so
  it lives beside accelerate's DDP/FSDP group and beside vLLM's own.
- A push is: for each bucket of merged weights (one dtype, up to `sync_bucket_bytes`), an HTTP request
  naming the tensors and their shapes, then one broadcast of the bucket as a flat tensor; then a commit
  that returns once the server has loaded every bucket and reset its prefix cache. The commit carries the
  policy version (the trainer's step), and every /generate names the version it expects: the server
  answers only with those weights loaded. Under a multi-process launch only the main process pushes;
  the others wait for the version through their own /generate, so no process samples from stale weights.
- Failure: a server that cannot be reached at start, stops answering or dies during a push raises
  EngineError, one line naming the server and what to do; the training loop adds the step and the last
  checkpoint, which a crash mid-step never touches. A refused request (a prompt too long for the server's
  max_model_len) is a ConfigError, as in the colocated engine.
"""

from __future__ import annotations

import atexit
import json
import os
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor
from transformers import PreTrainedTokenizerBase

from r1kit.core.errors import ConfigError, EngineError
from r1kit.models.weights import merged_named_weights
from r1kit.rollout.sampling import Rollout, encode_prompts
from r1kit.rollout.vllm_engine import (
    TORCH_DTYPES,
    Sample,
    check_lengths,
    rollout_from_samples,
    unpadded_prompts,
    weight_buckets,
)

SERVER_RANK, TRAINER_RANK = 0, 1  # in the two-rank weight group


def open_weight_group(host: str, port: int, rank: int, backend: str, timeout: float) -> tuple[Any, Any]:
    """(store, group): a two-rank torch.distributed group outside the default one. Rank 0 hosts the store."""
    wait = timedelta(seconds=timeout)
    store = dist.TCPStore(host, port, world_size=2, is_master=rank == SERVER_RANK, timeout=wait,
                          wait_for_workers=False)
    if backend == "nccl":  # GPUs: the tensors must be on this process's CUDA device
        group = dist.ProcessGroupNCCL(store, rank, 2, dist.ProcessGroupNCCL.Options())
    else:
        group = dist.ProcessGroupGloo(store, rank, 2, wait)
    return store, group


def broadcast(group: Any, tensor: torch.Tensor) -> None:
    """Send (trainer) or receive (server) one tensor; the trainer is the root."""
    opts = dist.BroadcastOptions()
    opts.rootRank = TRAINER_RANK
    group.broadcast([tensor], opts).wait()


def request(base_url: str, path: str, payload: dict | None = None, *, timeout: float) -> dict:
    """One JSON request to the server: the answer, or EngineError / ConfigError in one line."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(base_url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        message = _error_text(err)
        if err.code == 400:
            raise ConfigError(f"vLLM server {base_url}: {message}") from None
        raise EngineError(f"vLLM server {base_url} failed on {path}: {message}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        reason = getattr(reason, "strerror", None) or str(reason)  # "Connection refused", not "[Errno 111] ..."
        raise EngineError(f"vLLM server {base_url} did not answer {path} ({reason})") from None


def _error_text(err: urllib.error.HTTPError) -> str:
    try:
        return json.loads(err.read()).get("error", str(err))
    except (ValueError, OSError):
        return str(err)


class VLLMClient:
    """A rollout engine backed by a `r1kit vllm-serve` process (see the module docstring)."""

    own_kernels = True  # its log-probs differ from the policy's even in the same dtype

    def __init__(self, host: str, port: int, *, group_port: int, timeout: float = 240.0,
                 dtype: str = "bfloat16") -> None:
        self.base_url, self.host, self.group_port, self.timeout = f"http://{host}:{port}", host, group_port, timeout
        info = self._wait_until_up()
        self.max_model_len, self.backend = int(info["max_model_len"]), info["backend"]
        self.dtype = TORCH_DTYPES[info.get("dtype", dtype)]  # the server's, which its weights are held in
        self.is_main = int(os.environ.get("RANK", "0")) == 0
        self.sync_bucket_bytes = 256 << 20
        self.policy_version: int | None = None
        self._store = self._group = None
        atexit.register(self.close)  # a group torn down at interpreter exit aborts the process

    def _wait_until_up(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return request(self.base_url, "/health", timeout=5)
            except EngineError as err:
                if time.monotonic() > deadline:
                    raise EngineError(f"{err}; start it with `r1kit vllm-serve --model MODEL --port PORT` "
                                      f"(vllm_server_host / vllm_server_port, waited vllm_server_timeout="
                                      f"{self.timeout:g} s)") from None
                time.sleep(1.0)

    @torch.no_grad()
    def sync_weights(self, policy: nn.Module, policy_version: int) -> int:
        """Push the policy's weights (main process only); returns the number of tensors sent."""
        if policy_version == self.policy_version:
            return 0
        self.policy_version = policy_version
        if not self.is_main:  # the main process pushes; this one's /generate waits for the version
            if any(isinstance(p, DTensor) for p in policy.parameters()):
                for _ in merged_named_weights(policy):  # FSDP2: each gather is a collective, so take part
                    pass
            return 0
        if self._group is None:
            request(self.base_url, "/init_weight_group", {"port": self.group_port}, timeout=self.timeout)
            try:
                self._store, self._group = open_weight_group(self.host, self.group_port, TRAINER_RANK,
                                                             self.backend, self.timeout)
            except RuntimeError as err:
                raise EngineError(f"vLLM server {self.base_url}: could not join its weight group on port "
                                  f"{self.group_port} ({str(err).splitlines()[0]})") from None
        sent = 0
        for bucket in weight_buckets(policy, self.dtype, self.sync_bucket_bytes):
            flat = torch.cat([t.reshape(-1) for _, t in bucket])  # [numel]
            request(self.base_url, "/update_weights", {
                "tensors": [[name, list(t.shape)] for name, t in bucket], "dtype": str(flat.dtype).split(".")[-1],
            }, timeout=self.timeout)
            try:
                broadcast(self._group, flat.to("cuda") if self.backend == "nccl" else flat)
            except RuntimeError as err:
                raise EngineError(f"vLLM server {self.base_url} dropped the weight push "
                                  f"({str(err).splitlines()[0]})") from None
            sent += len(bucket)
        request(self.base_url, "/commit_weights", {"version": policy_version}, timeout=self.timeout)
        return sent

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, num_generations: int,
                 max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0, stop_strings=(),
                 max_prompt_length: int | None = None, seed: int | None = None, ignore_eos: bool = False) -> Rollout:
        """The same arguments and Rollout as rollout.generate, sampled by the server."""
        prompt_ids, prompt_mask, prompt_truncated = encode_prompts(tokenizer, prompts, max_prompt_length)  # [B, P]
        token_ids = unpadded_prompts(prompt_ids, prompt_mask)
        check_lengths([len(p) for p in token_ids], max_new_tokens, self.max_model_len, engine="the vLLM server's",
                      remedy="restart `r1kit vllm-serve` with a larger --max_model_len")
        answer = request(self.base_url, "/generate", {
            "prompts": token_ids, "n": num_generations, "max_tokens": max_new_tokens, "temperature": temperature,
            "top_p": top_p, "stop": list(stop_strings), "ignore_eos": ignore_eos, "seed": seed,
            "version": self.policy_version}, timeout=self.timeout)
        groups = [[Sample(s["token_ids"], s["logprobs"], s["finish_reason"]) for s in group]
                  for group in answer["samples"]]
        return rollout_from_samples(groups, prompt_ids, prompt_mask, tokenizer, prompt_truncated)

    def close(self) -> None:
        """Leave the weight group (the store and the group are freed in this order, before interpreter exit)."""
        self._group = None
        self._store = None
