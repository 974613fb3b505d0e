"""The vLLM side of bench/generation.py, in a process of its own (run by it; needs vLLM, e.g. .venv-vllm).

    python bench/vllm_side.py --model PATH --dtype float32 --batch_sizes 16 64 --new_tokens 64 256 1024 --repeats 2 2 1

Same prompts (bench/common.QUESTIONS in the R1-Zero template), same layout (B/G prompts x G samples, G =
min(B, 8), vLLM's n=G sharing each prompt's prefill), temperature 1, EOS ignored unless --natural.
vLLM runs with its defaults (torch.compile on, prefix caching on) plus --kv_cache_gib of KV cache.
Prints one JSON line: {"dtype": ..., "startup_s": ..., "tokens_per_s": {"L/B": median}, "peak_rss_mb": ...}
(L new tokens, batch B; the peak RSS is this process's, without vLLM's engine process).
bench/generation.py sets vLLM's documented CPU settings in this process's environment (LD_PRELOAD of
tcmalloc and Intel's OpenMP where they are installed, OMP threads) before it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, per_length  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--new_tokens", type=int, nargs="+", default=[64])
    ap.add_argument("--repeats", type=int, nargs="+", default=[3], help="one count, or one per --new_tokens")
    ap.add_argument("--natural", action="store_true")
    ap.add_argument("--kv_cache_gib", type=float, default=4.0, help="KV cache (64 x 1,100 fp32 tokens of SmolLM2 "
                                                                   "take 3.2 GB)")
    ap.add_argument("--enforce_eager", action="store_true")
    args = ap.parse_args()
    from vllm import LLM

    from r1kit.models.loading import load_tokenizer

    tok = load_tokenizer(args.model)
    t = time.perf_counter()
    llm = LLM(model=args.model, dtype=args.dtype, max_model_len=256 + max(args.new_tokens), seed=0, enforce_eager=args.enforce_eager,
              kv_cache_memory_bytes=int(args.kv_cache_gib * (1 << 30)))
    startup = time.perf_counter() - t
    rates = {}
    for L, repeats in zip(args.new_tokens, per_length(args.repeats, args.new_tokens)):
        for B in args.batch_sizes:
            rates[f"{L}/{B}"] = measure(llm, tok, B, L, repeats, args.natural)
    print(json.dumps({"dtype": args.dtype, "startup_s": round(startup, 1), "tokens_per_s": rates,
                      "peak_rss_mb": peak_rss_mb(), "omp_threads": os.environ.get("OMP_NUM_THREADS"),
                      "ld_preload": os.environ.get("LD_PRELOAD", "")}))


def measure(llm, tok, B: int, new_tokens: int, repeats: int, natural: bool) -> float:
    """Median generated tokens/s of `repeats` batches of B sequences (B/G prompts x G samples)."""
    from common import QUESTIONS
    from vllm import SamplingParams

    from r1kit.data.templates import build_prompt

    G = min(B, 8)
    prompts = [{"prompt_token_ids": tok(build_prompt(q, tok, "r1zero", "<think>"))["input_ids"]}
               for q in (QUESTIONS * 8)[: B // G]]

    def run(n: int) -> float:
        # no per-request seed: vLLM 0.32's CPU worker fails on seeded requests under its default
        # (multi-process, async) scheduling ("CPU Generator does not use offset"); r1kit's engine keeps
        # vLLM in-process, where seeds work
        params = SamplingParams(n=G, temperature=1.0, top_p=1.0, max_tokens=n, ignore_eos=not natural)
        llm.reset_prefix_cache()  # each repeat prefills its prompts, as r1kit's and HF's sides do
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        return sum(len(o.token_ids) for out in outs for o in out.outputs) / (time.perf_counter() - t)

    run(4)  # warm-up
    return statistics.median(run(new_tokens) for _ in range(repeats))


if __name__ == "__main__":  # vLLM spawns its engine process: the guard keeps it from rerunning this
    main()
