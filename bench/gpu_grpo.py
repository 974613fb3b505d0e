"""A few GRPO steps in bf16 on a Qwen2-0.5B-shaped model, through the fused and the HF rollout engines.

    python bench/gpu_grpo.py [--steps 4] [--out /tmp/gpu_grpo]     # on a CUDA GPU
    python bench/gpu_grpo.py --tiny --steps 1                       # the same script, a tiny shape, any machine

The model is built from Qwen2-0.5B's configuration (24 layers, hidden 896, 14 query / 2 KV heads, q/k/v
biases, vocabulary 151,936, tied embeddings) with random weights: nothing is downloaded, and the shapes,
which set the speed and the memory, are the real ones. The prompts are tokenized with the embedded
model's tokenizer (its ids are all inside Qwen2's vocabulary). Each engine runs the same config in a run
folder of its own, and the script prints, per engine, the generated tokens/s of the rollouts, the tokens/s
of the whole step and the peak GPU memory (torch.cuda.max_memory_allocated; peak RSS on a CPU).
The first step of each engine is reported apart: it includes the engines' warm-up.
"""

from __future__ import annotations

import argparse
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


def run_engine(model: Path, engine: str, out: Path, steps: int) -> list[dict]:
    config = make_config(overrides=dict(
        model=str(model), dataset=str(Path(__file__).resolve().parents[1] / "configs/data/add1_train.jsonl"),
        template="r1zero", prefill="<think>", dtype="bfloat16", rollout_engine=engine, num_generations=8,
        per_device_train_batch_size=32, max_completion_length=128, max_steps=steps, save_steps=0, eval_steps=0,
        log_completions_steps=0, write_report=False, output_dir=str(out), ignore_eos=True, learning_rate=1e-6))
    return trainer.train(config, show_progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="/tmp/gpu_grpo")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model of the same family (to try the script)")
    ap.add_argument("--engines", nargs="+", default=["fused", "hf"])
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    model = build_model(out / "model", TINY if args.tiny else QWEN2_05B)
    cuda = torch.cuda.is_available()
    print(f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; model: Qwen2-0.5B shape"
          f"{' (tiny)' if args.tiny else ''}, bf16; 32 completions x 128 tokens per step (EOS ignored)")
    for engine in args.engines:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        steps = run_engine(model, engine, out / engine, args.steps)
        later = steps[1:] or steps
        memory = torch.cuda.max_memory_allocated() / 2**30 if cuda else peak_rss_mb() / 1024
        print(f"{engine:>6}: rollout {statistics.median(m['generated_tokens_per_second'] for m in later):8.0f} tok/s, "
              f"step {statistics.median(m['tokens_per_second'] for m in later):8.0f} tok/s, "
              f"step time {statistics.median(m['step_time'] for m in later):6.2f} s "
              f"(first step {steps[0]['step_time']:.2f} s), peak {'GPU memory' if cuda else 'RSS'} {memory:.2f} GiB")


if __name__ == "__main__":
    main()
