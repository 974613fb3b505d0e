"""The R1-Zero template verbatim, the chat-template option, and LoRA training with the adapter-off reference."""

import json

import pytest
from safetensors.torch import load_file

from r1kit.data.templates import build_prompt
from r1kit.models.loading import load_tokenizer
from r1kit.trainers.grpo.config import make_config
from r1kit.trainers.grpo.trainer import train

PAPER_TABLE_1 = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. User: {}. "
    "Assistant:"
)


def test_r1zero_template_is_the_papers(tiny_model):
    tok = load_tokenizer(tiny_model)
    assert build_prompt("What is 2 + 3?", tok) == PAPER_TABLE_1.format("What is 2 + 3?")
    assert build_prompt("What is 2 + 3?", tok, prefill="<think>").endswith("Assistant: <think>")


def test_chat_template_option(tiny_model):
    tok = load_tokenizer(tiny_model)
    with pytest.raises(ValueError, match="no chat template"):
        build_prompt("q", tok, template="chat")
    tok.chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]"
    text = build_prompt("What is 2 + 3?", tok, template="chat", prefill="<think>")
    assert text.startswith("[system]") and "[user]What is 2 + 3?" in text and text.endswith("[assistant]<think>")


def test_lora_run_trains_only_the_adapter_and_resumes(tmp_path, tiny_model):
    kw = dict(model=tiny_model, use_lora=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
              beta=0.04, max_steps=2, save_steps=1, num_generations=4, per_device_train_batch_size=8,
              max_completion_length=8, learning_rate=1e-2, log_completions_steps=0,
              reward_funcs=["tag_count"], output_dir=str(tmp_path / "run"), seed=0)
    history = train(make_config(overrides=kw), show_progress=False)
    ckpt = tmp_path / "run" / "checkpoint-2"
    assert (ckpt / "adapter_config.json").is_file()
    adapter = load_file(ckpt / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # B starts at 0: it moved
    # the reference is the base with the adapter off: at step 1 the policy is the base, so KL is 0
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6) and history[1]["kl"] > 0
    # resume continues from the adapter checkpoint
    more = train(make_config(overrides={**kw, "max_steps": 3, "resume": True,
                                           "allow_resume_changes": True}), show_progress=False)
    assert [m["step"] for m in more] == [3]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2, 3]
