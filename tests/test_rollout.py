"""The rollout engine: sampling log-probs agree with a plain forward, stops, determinism, top-p."""

import pytest
import torch

from r1kit.algorithms.logprobs import completion_logprobs
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.sampling import generate, sample_tokens


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_model(tiny_model), load_tokenizer(tiny_model)


def plain_logprobs(model, r):
    """Log-probs of completion tokens from one full forward over prompt + completion (no cache tricks)."""
    G = r.num_generations
    ids = torch.cat([r.prompt_ids.repeat_interleave(G, 0), r.completion_ids], 1)
    att = torch.cat([r.prompt_mask.repeat_interleave(G, 0), r.completion_mask], 1)
    pos = (att.cumsum(1) - 1).clamp(min=0)
    T = r.completion_ids.shape[1]
    logits = model(input_ids=ids, attention_mask=att, position_ids=pos).logits[:, -T - 1:-1]
    return torch.log_softmax(logits.float(), -1).gather(2, r.completion_ids[..., None]).squeeze(2)


def test_rollout_logprobs_match_a_plain_forward(tiny):
    model, tok = tiny
    r = generate(model, tok, ["what is 1+2?", "hi", "a longer prompt here"], num_generations=4, max_new_tokens=12,
                 generator=torch.Generator().manual_seed(0))
    assert r.completion_ids.shape[0] == 12 and r.prompt_ids.shape[0] == 3
    m = r.completion_mask.bool()
    with torch.no_grad():
        ref = plain_logprobs(model, r)
        shared, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask,
                                        torch.arange(12) // 4)
    assert (r.logprobs[m] - ref[m]).abs().max() < 1e-4
    assert (shared[m] - ref[m]).abs().max() < 1e-4
    assert (r.logprobs[~m] == 0).all()


def test_shared_prefix_gradient_equals_plain_gradient(tiny):
    model, tok = tiny
    r = generate(model, tok, ["12+3=", "x"], num_generations=3, max_new_tokens=8, generator=torch.Generator().manual_seed(1))
    m = r.completion_mask.bool()
    lp, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask,
                                torch.arange(6) // 3)
    grads_shared = torch.autograd.grad(lp[m].sum(), list(model.parameters()))
    grads_plain = torch.autograd.grad(plain_logprobs(model, r)[m].sum(), list(model.parameters()))
    for a, b in zip(grads_shared, grads_plain):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_same_seed_same_samples_and_stop_at_eos(tiny):
    model, tok = tiny
    kw = dict(num_generations=4, max_new_tokens=20)
    a = generate(model, tok, ["abc"], generator=torch.Generator().manual_seed(3), **kw)
    b = generate(model, tok, ["abc"], generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a.completion_ids, b.completion_ids) and a.completions == b.completions
    for row, n, truncated in zip(a.completion_ids, a.lengths, a.truncated):
        assert tok.eos_token_id not in row[: n - 1].tolist()  # generation stops at the first EOS
        if not truncated:
            assert row[n - 1] == tok.eos_token_id


def test_stop_string_ends_a_completion(tiny):
    model, tok = tiny
    # make "</answer>" certain with a large bias on its logit
    answer_id = tok.convert_tokens_to_ids("</answer>")
    head = model.get_output_embeddings()
    bias = torch.zeros(head.weight.shape[0])
    bias[answer_id] = 50.0
    head.bias = torch.nn.Parameter(bias)
    try:
        r = generate(model, tok, ["q"], num_generations=3, max_new_tokens=10, stop_strings=("</answer>",),
                     generator=torch.Generator().manual_seed(0))
    finally:
        head.bias = None
    assert r.lengths.tolist() == [1, 1, 1]
    assert not r.truncated.any()
    assert all(c == "</answer>" for c in r.completions)


def test_top_p_only_draws_from_the_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    tokens, logp = sample_tokens(logits, temperature=1.0, top_p=0.7, generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.7; 2 and 3 are never drawn
    share = (tokens == 0).float().mean().item()
    assert 0.57 < share < 0.68  # renormalised: 0.5 / 0.8 = 0.625
    # log-probs are those of the unfiltered distribution, the one the trainer evaluates
    assert torch.allclose(logp[tokens == 0], torch.log(torch.tensor(0.5)), atol=1e-6)


def test_sampling_draws_from_the_tempered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf"), 0.5]]).repeat(40000, 1)
    T = 0.7
    tokens, logp = sample_tokens(logits, temperature=T, top_p=1.0, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(logits[0] / T, -1)
    freq = torch.bincount(tokens, minlength=6).float() / len(tokens)
    sigma = (p * (1 - p) / len(tokens)).sqrt()
    assert ((freq - p).abs() <= 4 * sigma + 1e-9).all(), (freq, p)
    assert freq[4] == 0  # a token of zero probability is never drawn
    assert torch.allclose(logp, torch.log(p[tokens]), atol=1e-5)
    greedy, _ = sample_tokens(logits[:3], temperature=0.0, top_p=1.0, generator=None)
    assert greedy.tolist() == [0, 0, 0]


def test_growing_cache_layer_equals_concatenation():
    from r1kit.rollout.sampling import GrowingLayer

    layer = GrowingLayer(capacity=3)  # smaller than what is written: growth is exercised
    parts = [torch.randn(2, 2, n, 4) for n in (2, 1, 1, 3)]
    for part in parts:
        keys, values = layer.update(part, part * 2)
    assert torch.equal(keys, torch.cat(parts, 2)) and torch.equal(values, torch.cat(parts, 2) * 2)
    assert layer.get_seq_length() == 7
    layer.batch_repeat_interleave(3)
    layer.batch_select_indices(torch.tensor([5, 0]))
    assert torch.equal(layer.keys, torch.cat(parts, 2)[[1, 0]])
    keys, _ = layer.update(torch.ones(2, 2, 1, 4), torch.ones(2, 2, 1, 4))
    assert keys.shape == (2, 2, 8, 4) and torch.equal(keys[:, :, -1], torch.ones(2, 2, 4))


def test_trailing_padding_columns_can_be_dropped(tiny):
    """The trainer computes a micro-batch only up to its longest completion; the columns kept must not
    depend on the padding dropped (causal attention), so log-probs and gradients are unchanged."""
    model, tok = tiny
    r = generate(model, tok, ["12+3=", "x"], num_generations=3, max_new_tokens=10, generator=torch.Generator().manual_seed(2))
    ids = torch.nn.functional.pad(r.completion_ids, (0, 6), value=tok.pad_token_id)  # 6 extra padding columns
    mask = torch.nn.functional.pad(r.completion_mask, (0, 6))
    rows = torch.arange(6) // 3
    wide, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, ids, mask, rows)
    narrow, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask, rows)
    T = r.completion_ids.shape[1]
    m = r.completion_mask.bool()
    assert (wide[:, :T][m] - narrow[m]).abs().max() < 1e-5
    g_wide = torch.autograd.grad((wide[:, :T] * r.completion_mask).sum(), list(model.parameters()))
    g_narrow = torch.autograd.grad((narrow * r.completion_mask).sum(), list(model.parameters()))
    for a, b in zip(g_wide, g_narrow):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
