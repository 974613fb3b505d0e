"""The fused decoder computes the model's own function: logits, samples and log-probs against the
transformers forward, for Llama, Qwen2 (q/k/v bias) and LoRA policies, and after policy updates."""

import copy

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

from r1kit.algorithms.logprobs import completion_logprobs
from r1kit.core.errors import ConfigError
from r1kit.models.loading import add_lora, load_model, load_tokenizer
from r1kit.rollout.decoder import FusedDecoder, unsupported_reason
from r1kit.rollout.engines import make_sampler
from r1kit.rollout.options import EngineOptions
from r1kit.rollout.sampling import generate


@pytest.fixture(scope="module")
def tiny(tiny_model):
    return load_model(tiny_model), load_tokenizer(tiny_model)


def step_by_step_logits(dec: FusedDecoder, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Prefill ids[:, :-steps] and feed the last `steps` columns one by one; logits after each call."""
    P = ids.shape[1] - steps
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    out = [dec.prefill(ids[:, :P], mask[:, :P], pos[:, :P], ids.shape[1])]
    for t in range(P, ids.shape[1]):
        out.append(dec.step(ids[:, t], mask[:, : t + 1], pos[:, t: t + 1]))
    return out


def reference_logits(model, ids, mask, steps):
    """The model's own full forward; logits at the positions the decoder predicts from."""
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    P = ids.shape[1] - steps
    return [logits[:, t - 1] for t in range(P, ids.shape[1] + 1)]


def padded_batch(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (3, 14), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding of different lengths
    mask[2, :1] = 0
    return ids, mask


def assert_same_function(model, dec, vocab, atol=1e-5):
    ids, mask = padded_batch(vocab)
    for a, b in zip(step_by_step_logits(dec, ids, mask, 5), reference_logits(model, ids, mask, 5)):
        assert (a - b).abs().max() < atol


@pytest.mark.parametrize("kernels", ["torch", "onednn"])  # the plain path and the prepacked one
def test_fused_logits_match_the_model_forward(tiny, kernels):
    model, _ = tiny
    dec = FusedDecoder(model, kernels=kernels)
    assert (dec.packed is not None) == (kernels == "onednn")
    assert_same_function(model, dec, model.config.vocab_size)


@pytest.mark.parametrize("kernels", ["torch", "onednn"])  # the plain path and the prepacked one
def test_qwen2_with_qkv_bias_matches(kernels):
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    model = Qwen2ForCausalLM(cfg).eval()
    for name, p in model.named_parameters():  # biases are zero at init; make them matter
        if name.endswith("bias"):
            p.data.normal_(0, 0.5)
    assert_same_function(model, FusedDecoder(model, kernels=kernels), 50)


@pytest.mark.parametrize("kernels", ["torch", "onednn"])  # the plain path and the prepacked one
def test_rollout_through_the_fused_decoder_equals_the_hf_forward(tiny, kernels):
    model, tok = tiny
    prompts = ["what is 1+2?", "hi", "a longer prompt here"]
    kw = dict(num_generations=4, max_new_tokens=16, stop_strings=("</answer>",))
    a = generate(model, tok, prompts, generator=torch.Generator().manual_seed(5), **kw)
    b = generate(FusedDecoder(model, kernels=kernels), tok, prompts, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.completion_ids, b.completion_ids) and torch.equal(a.completion_mask, b.completion_mask)
    assert (a.logprobs - b.logprobs).abs().max() < 1e-5
    assert a.lengths.min() < a.lengths.max()  # rows finished at different steps: row dropping was exercised


@pytest.mark.parametrize("kernels", ["torch", "onednn"])  # the plain path and the prepacked one
def test_load_follows_policy_updates_and_lora(tiny, kernels):
    model, _ = tiny
    policy = copy.deepcopy(model)
    dec = FusedDecoder(policy, kernels=kernels)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ids, mask = padded_batch(model.config.vocab_size, seed=1)
    stale = step_by_step_logits(dec, ids, mask, 2)[-1]
    fresh = reference_logits(policy, ids, mask, 2)[-1]
    assert (stale - fresh).abs().max() > 1e-2  # the copy does not silently track the policy
    dec.load(policy)
    assert_same_function(policy, dec, model.config.vocab_size)

    lora = add_lora(copy.deepcopy(model), r=4, alpha=8, dropout=0.0, target_modules="all-linear")
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)
    base_before = {k: v.clone() for k, v in lora.get_base_model().state_dict().items() if "lora_" not in k}
    assert_same_function(lora, FusedDecoder(lora, kernels=kernels), model.config.vocab_size)
    for k, v in lora.get_base_model().state_dict().items():  # merging for the copy leaves the base exact
        if k in base_before:
            assert torch.equal(v, base_before[k])


def test_bfloat16_decoder_is_close_to_the_float32_model(tiny):
    model, tok = tiny
    dec = FusedDecoder(model, torch.bfloat16)
    assert dec.embed.dtype == torch.bfloat16 and all(w.dtype == torch.bfloat16 for ws in dec.packed.values() for w in ws)
    r = generate(dec, tok, ["what is 1+2?", "hi"], num_generations=4, max_new_tokens=12,
                 generator=torch.Generator().manual_seed(0))
    # the bf16 copy samples from nearly the policy's distribution: its log-probs of its own samples
    # agree with the float32 model's within bf16 rounding
    m = r.completion_mask.bool()
    assert r.logprobs[m].isfinite().all()
    with torch.no_grad():
        lp32, _ = completion_logprobs(model, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask,
                                      torch.arange(8) // 4)
    assert (lp32[m] - r.logprobs[m]).abs().mean() < 0.05
    assert (lp32[m] - r.logprobs[m]).abs().max() > 0  # really a different (bf16) computation


def test_unsupported_models_fall_back_to_hf_or_fail_clearly(tiny, tiny_model):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=1, n_head=2))
    assert "gpt2" in unsupported_reason(gpt2)
    with pytest.raises(ValueError, match="does not support"):
        FusedDecoder(gpt2)
    c = EngineOptions(rollout_engine="fused")
    with pytest.raises(ConfigError, match="rollout_engine=fused"):
        make_sampler(c, gpt2, torch.float32, "cpu")
    auto = EngineOptions()
    assert make_sampler(auto, gpt2, torch.float32, "cpu") is gpt2  # auto: the HF forward
    model, _ = tiny
    assert isinstance(make_sampler(auto, model, torch.float32, "cpu"), FusedDecoder)
    hf_bf16 = EngineOptions(rollout_engine="hf", rollout_dtype="bfloat16")
    copy_ = make_sampler(hf_bf16, model, torch.float32, "cpu")
    assert copy_ is not model and next(copy_.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("lora", [False, True])
def test_trainer_sampler_tracks_the_policy_through_updates(tmp_path, tiny_model, lora):
    """With the default engine (the fused decoder, a copy of the weights) the sampler's log-probs equal
    pi_old's at every step, even as large updates move the policy: the copy is refreshed each step."""
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import train

    kw = dict(model=tiny_model, max_steps=3, save_steps=0, num_generations=4, per_device_train_batch_size=8,
              max_completion_length=8, learning_rate=3e-2, log_completions_steps=0, reward_funcs=["tag_count"],
              output_dir=str(tmp_path / "run"), seed=0, write_report=False, reward_timeout=0)
    if lora:
        kw |= dict(use_lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_target_modules=["q_proj", "v_proj"])
    history = train(make_config(overrides=kw), show_progress=False)
    assert max(m["rollout_logprob_gap"] for m in history) < 1e-4
    assert history[-1]["grad_norm"] > 0

    # a bf16 copy samples from a slightly different distribution: the gap shows, and truncated importance
    # sampling weights are reported
    kw |= dict(rollout_dtype="bfloat16", importance_sampling_cap=2.0, output_dir=str(tmp_path / "bf16"))
    history = train(make_config(overrides=kw), show_progress=False)
    assert all(m["rollout_logprob_gap"] > 1e-4 for m in history)
    assert all(0 < m["importance_weight"] <= 2.0 for m in history)
