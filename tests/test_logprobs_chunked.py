"""Log-probs through the LM head in chunks: the same values, entropies and gradients as one full-vocabulary
forward, and a peak memory that no longer grows with vocabulary x completion length."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from r1kit.algorithms.logprobs import completion_logprobs
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.sampling import generate


@pytest.fixture(scope="module")
def sampled(tiny_model):
    model, tok = load_model(tiny_model), load_tokenizer(tiny_model)
    r = generate(model, tok, ["12+3=", "what is 7*6?", "x"], num_generations=3, max_new_tokens=14,
                 generator=torch.Generator().manual_seed(4))
    return model, r


def full_logits_reference(model, r, temperature):
    """Log-probs and entropies [n, T] from one forward over prompt + completion holding all [n, T, V]
    logits, each row with its prompt repeated: the path the chunks replace, written out independently."""
    G = r.num_generations
    ids = torch.cat([r.prompt_ids.repeat_interleave(G, 0), r.completion_ids], 1)
    att = torch.cat([r.prompt_mask.repeat_interleave(G, 0), r.completion_mask], 1)
    pos = (att.cumsum(1) - 1).clamp(min=0)
    T = r.completion_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -T - 1:-1].float() / temperature
    logp = torch.log_softmax(logits, -1)  # [n, T, V]
    entropy = -(logp.exp() * logp).sum(-1)  # [n, T]
    return logp.gather(2, r.completion_ids[..., None]).squeeze(2), entropy


@pytest.mark.parametrize("chunk_tokens", [1, 7, 3 * 9, 0])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunks_give_the_full_forwards_values_entropies_and_gradients(sampled, chunk_tokens, temperature):
    """chunk_tokens 1 (one position per chunk at 9 rows), 7 (less than a position across the rows), 27 (3
    positions), 0 (one chunk): log-probs, entropies, and the gradients of a loss that uses both, against
    the full-logits forward."""
    model, r = sampled
    m = r.completion_mask.bool()
    rows = torch.arange(len(r.completions)) // r.num_generations
    lp, ent = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, rows,
                                  temperature, with_entropy=True, entropy_grad=True, chunk_tokens=chunk_tokens)
    ref_lp, ref_ent = full_logits_reference(model, r, temperature)
    assert (lp[m] - ref_lp[m]).abs().max() < 1e-5
    assert (ent[m] - ref_ent[m]).abs().max() < 1e-5
    weights = torch.linspace(-1, 1, m.sum().item())  # any mix of token terms, as a loss would have
    params = list(model.parameters())
    grads = torch.autograd.grad((lp[m] * weights).sum() + 0.3 * ent[m].sum(), params)
    ref_grads = torch.autograd.grad((ref_lp[m] * weights).sum() + 0.3 * ref_ent[m].sum(), params)
    for a, b in zip(grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_entropy_without_entropy_grad_carries_no_gradient(sampled):
    model, r = sampled
    rows = torch.arange(len(r.completions)) // r.num_generations
    lp, ent = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, rows,
                                  with_entropy=True, chunk_tokens=5)
    assert lp.requires_grad and not ent.requires_grad


def test_a_one_token_completion(sampled):
    """T = 1: only the prompt's last position predicts; no completion forward runs."""
    model, r = sampled
    rows = torch.arange(len(r.completions)) // r.num_generations
    ids, mask = r.completion_ids[:, :1], r.completion_mask[:, :1]
    lp, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, ids, mask, rows, chunk_tokens=4)
    ref, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, rows)
    assert lp.shape == (len(rows), 1) and torch.allclose(lp, ref[:, :1], atol=1e-6)


# --- peak memory, measured in a fresh process per case (the peak RSS of a process never goes down) -----------

VOCAB, ROWS = 32_000, 4

CHILD = """
import json, resource, sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from r1kit.algorithms.logprobs import completion_logprobs
T, chunk = int(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
config = LlamaConfig(vocab_size=%d, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=True)
model = LlamaForCausalLM(config)
rows = %d
prompt = torch.randint(0, config.vocab_size, (1, 8))
completion = torch.randint(0, config.vocab_size, (rows, T))
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
before = rss_kib()
lp, ent = completion_logprobs(model, prompt, torch.ones_like(prompt), completion, torch.ones_like(completion),
                              torch.zeros(rows, dtype=torch.long), with_entropy=True, chunk_tokens=chunk)
lp.sum().backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_mb": (peak - before) / 1024}))
""" % (VOCAB, ROWS)


def peak_growth_mb(T: int, chunk_tokens: int) -> float:
    """How far the peak RSS rose above the process's resident memory over one forward and backward."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(T), str(chunk_tokens)], capture_output=True, text=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(Path(__file__).parents[1] / "src"),
                              # a fixed mmap threshold: freed chunks go back to the system, so the peak is the
                              # tensors held at once, not glibc's heap growth (its dynamic threshold made it vary)
                              "MALLOC_MMAP_THRESHOLD_": "1048576"},
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["growth_mb"]


@pytest.mark.slow
def test_peak_memory_no_longer_scales_with_vocabulary_times_length():
    """One [rows, T, V] fp32 logits tensor is 4 x 1024 x 32,000 x 4 B = 500 MB at T = 1024. The full path
    (chunk_tokens 0) holds several; in chunks of 256 tokens the peak is one chunk's (32 MB a copy), and
    going from 256 to 1024 tokens adds less than one logits tensor of the 768 added positions would."""
    logits_mb = lambda T: ROWS * T * VOCAB * 4 / 2**20  # noqa: E731
    full = peak_growth_mb(1024, 0)
    short, long = peak_growth_mb(256, 256), peak_growth_mb(1024, 256)
    assert full > 2 * logits_mb(1024), full  # the measure sees the full-vocabulary logits
    assert long < full / 4, (long, full)
    assert long - short < 0.25 * logits_mb(1024 - 256), (short, long)
