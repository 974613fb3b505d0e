"""A few GRPO steps in bf16 on a Qwen2-0.5B-shaped model, through the fused and the HF rollout engines.

    python bench/gpu_grpo.py [--steps 3] [--out /tmp/gpu_grpo]     # on a CUDA GPU: under 10 minutes
    python bench/gpu_grpo.py --tiny --steps 2 --lengths 16 32        # the same script, a tiny shape, any machine

The model is built from Qwen2-0.5B's configuration (24 layers, hidden 896, 14 query / 2 KV heads, q/k/v
biases, vocabulary 151,936, tied embeddings) with random weights: nothing is downloaded, and the shapes,
which set the speed and the memory, are the real ones. The prompts are tokenized with the embedded
model's tokenizer (its ids are all inside Qwen2's vocabulary). For each completion length (64, 256, 1024
by default) each mode runs the same config in a run folder of its own: the fused engine, the fused engine
in a generation worker one step off policy (fused-async: async_rollout with importance_sampling_cap 2),
and the transformers forward (hf, up to --hf_max_length). The script prints, per mode and length, the
generated tokens/s of the rollouts, the tokens/s of the whole step, the step time, the peak GPU memory
of the training process (torch.cuda.max_memory_allocated; peak RSS on a CPU) and the rollout staleness.
The first step of each run is reported apart: it includes the engines' warm-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb  # noqa: E402

from r1kit.models.loading import resolve_model_path
from r1kit.trainers.grpo import trainer
from r1kit.trainers.grpo.config import make_config

QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(QWEN2_05B, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2)


def build_model(out: Path, shape: dict) -> Path:
    """A random-weight Qwen2 of `shape`, saved in bf16 with the embedded model's tokenizer."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model_path("embedded"))
    config = Qwen2Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, torch_dtype="bfloat16")
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_mode(model: Path, mode: str, length: int, out: Path, steps: int) -> list[dict]:
    """`mode`: a rollout engine (fused, hf), or fused-async (the fused engine in a generation worker,
    async_rollout)."""
    engine = mode.removesuffix("-async")
    config = make_config(overrides=dict(
        model=str(model), dataset=str(Path(__file__).resolve().parents[1] / "configs/data/add1_train.jsonl"),
        template="r1zero", prefill="<think>", dtype="bfloat16", rollout_engine=engine, num_generations=8,
        per_device_train_batch_size=32, max_completion_length=length, max_steps=steps, save_steps=0, eval_steps=0,
        log_completions_steps=0, write_report=False, output_dir=str(out), ignore_eos=True, learning_rate=1e-6,
        async_rollout=mode.endswith("-async"), importance_sampling_cap=2.0 if mode.endswith("-async") else 0.0))
    return trainer.train(config, show_progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="/tmp/gpu_grpo")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model of the same family (to try the script)")
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024], help="completion lengths (tokens)")
    ap.add_argument("--modes", nargs="+", default=["fused", "fused-async", "hf"],
                    help="rollout engines (fused, hf), each optionally with -async (async_rollout)")
    ap.add_argument("--hf_max_length", type=int, default=256,
                    help="longest completion the hf engine runs (it decodes through the transformers forward, "
                         "slow per token)")
    ap.add_argument("--json", help="also write every figure to this file")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    model = build_model(out / "model", TINY if args.tiny else QWEN2_05B)
    cuda = torch.cuda.is_available()
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; model: Qwen2-0.5B shape"
          f"{' (tiny)' if args.tiny else ''}, bf16; 32 completions per step (EOS ignored); medians of the steps after "
          f"the first; async: the generation worker's memory is its own, not in the peak shown", flush=True)
    print(f"{'mode':>12} {'tokens':>6} {'rollout tok/s':>14} {'step tok/s':>11} {'step s':>7} {'first s':>8} "
          f"{'peak GiB':>9} {'staleness':>9}", flush=True)
    results = []
    for length in args.lengths:
        for mode in args.modes:
            if mode.startswith("hf") and length > args.hf_max_length:
                continue
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            steps = run_mode(model, mode, length, out / f"{mode}-{length}", args.steps)
            later = steps[1:] or steps
            row = {"mode": mode, "tokens": length,
                   "rollout_tok_s": statistics.median(m["generated_tokens_per_second"] for m in later),
                   "step_tok_s": statistics.median(m["tokens_per_second"] for m in later),
                   "step_s": statistics.median(m["step_time"] for m in later), "first_step_s": steps[0]["step_time"],
                   "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else peak_rss_mb() / 1024,
                   "staleness": later[-1].get("rollout/staleness", 0)}
            results.append(row)
            print(f"{mode:>12} {length:>6} {row['rollout_tok_s']:>14.0f} {row['step_tok_s']:>11.0f} {row['step_s']:>7.2f} "
                  f"{row['first_step_s']:>8.2f} {row['peak_gib']:>9.2f} {row['staleness']:>9}", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":  # the async modes spawn a generation worker, which imports this file again
    main()
