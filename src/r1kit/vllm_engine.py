"""vLLM rollout engine (optional extra, CUDA only): the same `Rollout` as r1kit's HF engine, sampled by vLLM.

Design decisions:
- Colocated, as TRL's `vllm_mode="colocate"`: vLLM runs inside the training process on the training GPU and
  takes `gpu_memory_utilization` of its memory. Its engine core is kept in this process
  (VLLM_ENABLE_V1_MULTIPROCESSING=0 for a single process; under a multi-process launch the
  `external_launcher` executor, which TRL uses and which turns that off itself), so that weights reach the
  model by a direct `model.load_weights(...)` call instead of being serialised to an engine-core process.
  This is the path TRL 1.16 takes (`llm.llm_engine.model_executor.driver_worker.model_runner.model`).
- Weights are refreshed after each policy update: `sync_weights(policy, policy_version)` pushes
  `merged_named_weights(policy)` (plain HF names, LoRA merged out of place, so the policy's base weights,
  the reference model under LoRA, are never touched), converted to the engine dtype, tied weights once,
  in buckets of `sync_bucket_bytes` to bound the extra memory. The same `policy_version` as the last push
  (the trainer passes its step) skips the push. The prefix cache is reset after a push: its KV blocks were
  computed with the old weights.
- Precision: vLLM samples from a bf16 copy with its own kernels while the trainer holds fp32 weights, so
  the samples come from a policy a rounding error away from pi_theta. The trainer recomputes pi_old from
  its own weights (at num_iterations == 1, pi_old = pi_theta.detach()), so ratios and the loss are those
  of the fp32 policy and `Rollout.logprobs` is only a diagnostic here; what remains is that the samples are
  very slightly off-policy (no importance correction is applied).
- Log-probabilities: vLLM's `logprobs_mode="processed_logprobs"` (ModelConfig.LogprobsMode: raw_logits,
  raw_logprobs (the default), processed_logits, processed_logprobs). vLLM V1's sampler divides the logits
  by the temperature, applies top-k/top-p by setting dropped logits to -inf, and with processed_logprobs
  returns log_softmax of those logits (vllm/v1/sample/ops/topk_topp_sampler.py, forward_native; greedy
  requests get log_softmax of the raw logits). So at top_p == 1 (the default) they are log softmax(logits
  / T), the HF engine's quantity; at top_p < 1 they are renormalised over the nucleus, higher than the HF
  engine's by -log(nucleus mass). `raw_logprobs` would be those of the untempered distribution. A
  processed mode keeps vLLM on its PyTorch-native top-k/top-p sampler (FlashInfer's does not return them).
- Layout identical to the HF engine (prompt-major rows, left-padded prompts, right-padded completions,
  EOS counted in the mask, 0 log-prob on padding). Completions are decoded from the token ids, as there,
  not taken from vLLM's text, so text and ids agree in the same way under both engines.
- Seeds: prompt b gets seed + b * G and vLLM gives its j-th sample seed + b * G + j, so every row's noise
  is a function of (seed, row), as the HF engine's samples are a function of its generator's seed.
- `enable_sleep_mode`: after each generate vLLM sleeps at level 2 (weights and KV cache released, as in
  TRL), freeing the GPU for the update; the next `sync_weights` wakes the weights and always pushes.
- Not covered: tensor parallelism, quantised or sharded (FSDP, ZeRO-3) policies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from .rollout import Rollout, encode_prompts
from .weights import merged_named_weights

INSTALL_HINT = "rollout_engine=vllm needs vLLM: pip install 'r1kit[vllm]' (a CUDA GPU is required)"

_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16,
                 "float32": torch.float32, "float": torch.float32}


class VLLMEngine:
    """A colocated vLLM engine: `sync_weights` after each policy update, then `generate` -> `Rollout`."""

    def __init__(self, model: str, *, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.3,
                 max_model_len: int, seed: int = 0, enable_sleep_mode: bool = False,
                 llm_factory: Callable[..., Any] | None = None,
                 sampling_params_factory: Callable[..., Any] | None = None) -> None:
        """llm_factory / sampling_params_factory: stand-ins for vllm.LLM / vllm.SamplingParams (tests)."""
        kwargs: dict[str, Any] = dict(model=model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                                      max_model_len=max_model_len, seed=seed, enable_sleep_mode=enable_sleep_mode,
                                      logprobs_mode="processed_logprobs")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # one engine per training process over the launcher's process group (TRL's colocate mode)
            kwargs["distributed_executor_backend"] = "external_launcher"
        if llm_factory is None:
            # read by vLLM when it builds the engine: keep the engine core, and so the model, in this process
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            llm_factory = _vllm().LLM
        self.llm = llm_factory(**kwargs)
        self._sampling_params_factory = sampling_params_factory
        self.enable_sleep_mode = enable_sleep_mode
        self.dtype = _TORCH_DTYPES.get(dtype) or _engine_dtype(self.llm)  # None: sent as the policy holds them
        self.sync_bucket_bytes = 256 << 20
        self.version = 0  # pushes so far
        self.policy_version: int | None = None  # policy_version of the last push
        self._weights_asleep = self._kv_asleep = False
        if enable_sleep_mode:  # nothing is sampled before the first sync, which brings the weights back
            self._sleep()

    # --- weights

    @torch.no_grad()
    def sync_weights(self, policy: nn.Module, policy_version: int | None = None) -> int:
        """Push the policy's current weights into vLLM; returns the number of tensors sent.

        policy_version: e.g. optimizer steps taken; equal to the last push's, the weights are unchanged
        and nothing is sent (0). None always pushes.
        """
        if policy_version is not None and policy_version == self.policy_version and not self._weights_asleep:
            return 0
        if self._weights_asleep:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # room for the weights to come back next to the training state
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
        sent = 0
        for bucket in self._weight_buckets(policy):
            self._load_weights(bucket)
            sent += len(bucket)
        self.llm.reset_prefix_cache()
        self.version += 1
        self.policy_version = policy_version
        return sent

    def _weight_buckets(self, policy: nn.Module) -> Iterator[list[tuple[str, Tensor]]]:
        """merged_named_weights in the engine dtype, each storage once, grouped up to sync_bucket_bytes."""
        # Only the policy's own tensors can be tied. They all stay alive during the sync, so their addresses
        # are unique; the merged LoRA tensors are temporaries whose addresses the allocator may reuse.
        own = {t.data_ptr() for t in (*policy.parameters(), *policy.buffers()) if t.numel()}
        sent_own: set[int] = set()
        bucket: list[tuple[str, Tensor]] = []
        size = 0
        for name, tensor in merged_named_weights(policy):
            ptr = tensor.data_ptr()
            if ptr in own:
                if ptr in sent_own:  # a tied weight (lm_head.weight = model.embed_tokens.weight)
                    continue
                sent_own.add(ptr)
            if self.dtype is not None and tensor.is_floating_point():
                tensor = tensor.to(self.dtype)  # stays on the policy's device
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= self.sync_bucket_bytes:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket

    def _load_weights(self, weights: list[tuple[str, Tensor]]) -> None:
        """The one call into vLLM's model: copy `weights` (HF names) into its parameters."""
        engine = self.llm.llm_engine
        if not hasattr(engine, "model_executor"):  # only an in-process engine core exposes it
            raise RuntimeError("vLLM's engine core runs in another process, so weights cannot be pushed into it; "
                               "set VLLM_ENABLE_V1_MULTIPROCESSING=0 before vLLM builds its engine")
        worker = engine.model_executor.driver_worker
        # the driver worker is either the GPU worker itself (TRL 1.16's path) or a wrapper holding it
        runner = worker.model_runner if hasattr(worker, "model_runner") else worker.worker.model_runner
        runner.model.load_weights(weights)

    # --- sampling

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, num_generations: int,
                 max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 stop_strings: Sequence[str] = (), max_prompt_length: int | None = None, seed: int | None = None,
                 ignore_eos: bool = False) -> Rollout:
        """Sample `num_generations` completions per prompt; the same arguments and result as rollout.generate.

        seed: None leaves the noise to vLLM's engine seed. ignore_eos: exactly max_new_tokens per row, stop
        strings ignored too (as in the HF engine). Tensors come back on the CPU.
        """
        if self._weights_asleep:
            raise RuntimeError("vLLM's weights were released by sleep mode: call sync_weights(policy) first")
        if self._kv_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False
        G = num_generations
        prompt_ids, prompt_mask, prompt_truncated = encode_prompts(tokenizer, prompts, max_prompt_length)  # [B, P]
        requests = [{"prompt_token_ids": ids[mask.bool()].tolist()} for ids, mask in zip(prompt_ids, prompt_mask)]
        stop = None if ignore_eos or not stop_strings else list(stop_strings)
        make_params = self._sampling_params_factory or _vllm().SamplingParams
        params = [make_params(n=G, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                              stop=stop, include_stop_str_in_output=True, ignore_eos=ignore_eos, logprobs=0,
                              seed=None if seed is None else seed + b * G)
                  for b in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        if self.enable_sleep_mode:
            self._sleep()
        return rollout_from_outputs(outputs, prompt_ids, prompt_mask, tokenizer, G, prompt_truncated)

    def _sleep(self) -> None:
        self.llm.sleep(level=2)  # level 2 drops the weights too: they are replaced at the next sync anyway
        self._weights_asleep = self._kv_asleep = True


def rollout_from_outputs(outputs: Sequence[Any], prompt_ids: Tensor, prompt_mask: Tensor,
                         tokenizer: PreTrainedTokenizerBase, num_generations: int,
                         prompt_truncated: int = 0) -> Rollout:
    """vLLM RequestOutputs (one per prompt, in prompt order, n=G samples each) -> Rollout, HF engine layout."""
    G = num_generations
    if len(outputs) != prompt_ids.shape[0]:
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {prompt_ids.shape[0]} prompts")
    rows = []
    for out in outputs:
        samples = sorted(out.outputs, key=lambda o: o.index)  # sample order within a prompt is not promised
        if len(samples) != G:
            raise RuntimeError(f"vLLM returned {len(samples)} samples for a prompt, expected {G}")
        rows.extend(samples)
    pad_id = tokenizer.pad_token_id
    N, T = len(rows), max((len(o.token_ids) for o in rows), default=0)
    completion_ids = torch.full((N, T), pad_id, dtype=torch.long)  # [N, T]
    completion_mask = torch.zeros(N, T, dtype=torch.long)  # [N, T]
    logprobs = torch.zeros(N, T)  # [N, T]
    for i, o in enumerate(rows):
        ids = list(o.token_ids)
        if o.logprobs is None:
            raise RuntimeError("vLLM returned no log-probs: SamplingParams(logprobs=0) asks for the sampled token's")
        n = len(ids)
        completion_ids[i, :n] = torch.tensor(ids, dtype=torch.long)
        completion_mask[i, :n] = 1
        # each position's dict holds the sampled token (and, with logprobs=k > 0, the top k): look it up by id
        logprobs[i, :n] = torch.tensor([step[tok].logprob for step, tok in zip(o.logprobs, ids)])
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        completion_mask=completion_mask,
        logprobs=logprobs,
        completions=texts,
        truncated=torch.tensor([o.finish_reason == "length" for o in rows], dtype=torch.bool),  # [N]
        prompt_truncated=prompt_truncated,
    )


def _vllm() -> Any:
    """The vllm module, or an ImportError that says how to get it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


def _engine_dtype(llm: Any) -> torch.dtype | None:
    """The dtype vLLM chose for dtype="auto" (None when the engine does not say)."""
    dtype = getattr(getattr(getattr(llm, "llm_engine", None), "model_config", None), "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else None
