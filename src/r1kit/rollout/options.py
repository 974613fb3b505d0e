"""The options of sampling completions (SamplingOptions) and of the engine that samples them (EngineOptions)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from r1kit.core.options import DTYPES, Options, need, need_choice, opt

ENGINES = ("auto", "fused", "hf", "vllm")
VLLM_MODES = ("colocate", "server")


@dataclass
class SamplingOptions(Options):
    """sampling completions"""

    num_generations: int = opt(8, "G: completions sampled per prompt (a group)")
    max_completion_length: int = opt(256, "most new tokens per completion")
    temperature: float = opt(1.0, "sampling temperature for rollouts")
    top_p: float = opt(1.0, "nucleus sampling for rollouts")
    stop_strings: list[str] = opt(["</answer>"], "generation stops after any of these strings (and at EOS)")
    ignore_eos: bool = opt(False, "generate exactly max_completion_length tokens, ignoring EOS and stop strings "
                                  "(benchmarks)")

    def check(self) -> None:
        need(self.max_completion_length >= 1, "max_completion_length must be >= 1")
        need(self.temperature > 0, f"temperature={self.temperature}: rollouts must sample (temperature > 0)")
        need(0 < self.top_p <= 1, f"top_p={self.top_p}: must be in (0, 1]")


@dataclass
class EngineOptions(Options):
    """rollout engine"""

    rollout_engine: str = opt("auto", "'fused' (r1kit's fused decoder for Llama-family models), 'hf' (the "
                                      "transformers forward, any model), 'vllm' (vLLM, colocated or as a server, "
                                      "see vllm_mode; CUDA: pip install 'r1kit[vllm]', CPU: setup.sh --vllm), or "
                                      "'auto' (fused where supported, else hf); copies of the weights are refreshed "
                                      "after every update")
    rollout_dtype: str = opt("auto", "weights dtype of the fused/hf rollout: auto (the policy's dtype: exactly "
                                     "on-policy), bfloat16 (on CPUs with AVX512-BF16 about 1.7x faster decoding; "
                                     "samples from a bf16 copy) or float32")
    rollout_kernels: str = opt("auto", "fused decoder's matmuls: 'onednn' (weights prepacked once per update, ~2.5x "
                                       "faster fp32 decode matmuls on CPUs; differs from plain by reduction order, "
                                       "~4e-6), 'torch' (plain F.linear), 'auto' (onednn on the CPU where torch has it)")
    async_rollout: bool = opt(False, "one-step-off-policy rollouts: step t+1's completions are generated with the "
                                     "weights of step t by a second process (a local generation worker, or the "
                                     "vLLM server with vllm_mode=server) while step t trains; the one-step lag is "
                                     "corrected by importance_sampling_cap (3 unless set; 0 turns it off)")
    rollout_worker_threads: int = opt(0, "async_rollout with a local worker: its CPU threads (0: as many as the "
                                         "training process)")
    vllm_dtype: str = opt("bfloat16", "weights dtype inside vLLM (rollout_engine=vllm)")
    vllm_gpu_memory_utilization: float = opt(0.3, "share of the GPU's memory vLLM may take, colocated with training "
                                                  "(rollout_engine=vllm; on the CPU: share of the RAM for its KV cache)")
    vllm_mode: str = opt("colocate", "rollout_engine=vllm: 'colocate' (vLLM inside each training process) or "
                                     "'server' (a `r1kit vllm-serve` process at vllm_server_host:vllm_server_port, "
                                     "weights pushed through torch.distributed)")
    vllm_server_host: str = opt("127.0.0.1", "vllm_mode=server: host of the `r1kit vllm-serve` process")
    vllm_server_port: int = opt(8000, "vllm_mode=server: its HTTP port")
    vllm_group_port: int = opt(51216, "vllm_mode=server: port on the server host for the torch.distributed group "
                                      "(gloo on CPU, NCCL on GPUs) the weights are pushed through")
    vllm_server_timeout: float = opt(240.0, "vllm_mode=server: seconds to wait for the server to answer (at start, "
                                            "and for each request)")
    vllm_enable_sleep_mode: bool = opt(False, "colocated vLLM on a GPU: release its weights and KV cache during the "
                                              "update (vLLM's CPU backend has none)")
    vllm_enforce_eager: bool = opt(False, "vLLM without torch.compile and CUDA graphs: starts in seconds instead of "
                                          "minutes, decodes slower")
    vllm_kv_cache_memory_bytes: int = opt(0, "colocated vLLM: bytes for its KV cache (0: vllm_gpu_memory_utilization "
                                             "decides)")

    def check(self) -> None:
        from r1kit.rollout.decoder import KERNELS

        need(self.rollout_engine in ENGINES, f"rollout_engine={self.rollout_engine!r}: choose auto, fused, hf or vllm")
        need_choice("rollout_dtype", self.rollout_dtype, DTYPES)
        need_choice("rollout_kernels", self.rollout_kernels, KERNELS)
        need_choice("vllm_dtype", self.vllm_dtype, DTYPES)
        need(0 < self.vllm_gpu_memory_utilization <= 1,
             f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization}: must be in (0, 1]")
        need(self.vllm_mode in VLLM_MODES, f"vllm_mode={self.vllm_mode!r}: choose colocate or server")
        ports = (self.vllm_server_port, self.vllm_group_port)
        need(all(0 < p < 65536 for p in ports) and ports[0] != ports[1],
             f"vllm_server_port={ports[0]}, vllm_group_port={ports[1]}: two different ports in 1..65535")
        need(self.vllm_server_timeout > 0, f"vllm_server_timeout={self.vllm_server_timeout}: must be > 0 seconds")
        need(not (self.async_rollout and self.rollout_engine == "vllm" and self.vllm_mode == "colocate"),
             "async_rollout generates in a second process: with rollout_engine=vllm set vllm_mode=server (a "
             "`r1kit vllm-serve` process), or use rollout_engine fused/hf (a local generation worker)")
        # checked after the settings, before any model loads; `r1kit vllm-serve` needs no vLLM in this process
        need(self.rollout_engine != "vllm" or self.vllm_mode != "colocate" or importlib.util.find_spec("vllm") is not None,
             f"rollout_engine=vllm (TRL: use_vllm): vLLM is not installed in this Python ({sys.executable}); on a CUDA "
             "machine pip install 'r1kit[vllm]', on the CPU bash scripts/setup.sh --vllm and run .venv-vllm/bin/r1kit; "
             "or vllm_mode: server with `r1kit vllm-serve` running where vLLM is, or rollout_engine: auto")
        need(self.rollout_worker_threads >= 0, f"rollout_worker_threads={self.rollout_worker_threads}: must be >= 0")
        need(self.vllm_kv_cache_memory_bytes >= 0,
             f"vllm_kv_cache_memory_bytes={self.vllm_kv_cache_memory_bytes}: must be >= 0")
