"""Distillation helpers: layer-dropped students, token agreement, and SFT on teacher outputs closing the gap."""

import copy
import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from r1kit.core.errors import ConfigError, ModelError
from r1kit.models.loading import build_tiny_model, load_model, load_tokenizer
from r1kit.pipeline.distill import make_student, student_layers, token_agreement
from r1kit.rollout.sampling import generate
from r1kit.trainers.sft import sft_loss


@pytest.fixture(scope="module")
def teacher4(tmp_path_factory) -> str:
    """A 4-layer tiny model whose weights are scaled up, so that its greedy outputs depend on the prompt
    (at the default init scale a tied-embedding model just repeats one token)."""
    path = tmp_path_factory.mktemp("teacher") / "model"
    build_tiny_model(path, num_layers=4, seed=0)
    model = load_model(str(path))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(20.0)
    model.save_pretrained(path)
    return str(path)


def test_student_layers():
    assert student_layers(4, 2) == [0, 3]
    assert student_layers(5, 3) == [0, 2, 4]
    assert student_layers(12, 4) == [0, 4, 7, 11]
    assert student_layers(30, 30) == list(range(30))
    for n in (0, 1, 5):
        with pytest.raises(ConfigError, match=f"num_layers={n}"):
            student_layers(4, n)


def test_make_student_halves_the_layers(teacher4, tmp_path):
    out = make_student(teacher4, tmp_path / "student", 2)
    student = AutoModelForCausalLM.from_pretrained(out)
    teacher = load_model(teacher4)
    assert student.config.num_hidden_layers == 2 and len(student.model.layers) == 2
    assert json.loads((out / "student_info.json").read_text())["kept_layers"] == [0, 3]
    ts, ss = teacher.state_dict(), student.state_dict()
    for new, old in ((0, 0), (1, 3)):
        for name in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(ss[f"model.layers.{new}.{name}"], ts[f"model.layers.{old}.{name}"])
    assert torch.equal(ss["model.embed_tokens.weight"], ts["model.embed_tokens.weight"])
    assert torch.equal(ss["model.norm.weight"], ts["model.norm.weight"])

    tok = load_tokenizer(str(out))
    assert tok.get_vocab() == load_tokenizer(teacher4).get_vocab()
    enc = tok(["What is 3+4?", "hi"], return_tensors="pt", padding=True)
    logits = student(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], student.config.vocab_size)
    # the same as the teacher with its middle layers removed in memory
    pruned = copy.deepcopy(teacher)
    pruned.model.layers = torch.nn.ModuleList([pruned.model.layers[0], pruned.model.layers[3]])
    ids = tok("What is 3+4?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(student(input_ids=ids).logits, pruned(input_ids=ids, use_cache=False).logits, atol=1e-5)
        # KV-cache decoding works on the student (its layers are indexed 0..1): cached greedy == uncached greedy
        r = generate(student, tok, ["What is 3+4?"], num_generations=1, max_new_tokens=8, temperature=0.0)
        seq = ids
        for _ in range(r.completion_ids.shape[1]):
            nxt = student(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    assert torch.equal(seq[0, ids.shape[1]:], r.completion_ids[0])


def test_make_student_errors(teacher4, tmp_path):
    with pytest.raises(ConfigError, match="num_layers=5"):
        make_student(teacher4, tmp_path / "s5", 5)
    with pytest.raises(ConfigError, match="num_layers=0"):
        make_student(teacher4, tmp_path / "s0", 0)
    assert not (tmp_path / "s5").exists() and not list(tmp_path.glob(".s5-*"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    with pytest.raises(ConfigError, match="already exists"):
        make_student(teacher4, tmp_path / "taken", 2)
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=90, n_positions=64, n_embd=32, n_layer=2, n_head=2)).save_pretrained(gpt2)
    load_tokenizer(teacher4).save_pretrained(gpt2)
    with pytest.raises(ModelError, match="no model.layers"):
        make_student(str(gpt2), tmp_path / "s", 1)


def test_token_agreement_of_a_model_with_itself(teacher4):
    teacher = load_model(teacher4)
    tok = load_tokenizer(teacher4)
    prompts = ["What is 3+4?", "hi", "Name the largest planet in our solar system"]  # left padding differs by row
    assert token_agreement(teacher, teacher, tok, prompts, max_new_tokens=12, batch_size=2) == 1.0


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and the test machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sft_on_teacher_outputs_raises_token_agreement(teacher4, tmp_path, one_thread):
    torch.manual_seed(0)
    teacher = load_model(teacher4).eval()
    tok = load_tokenizer(teacher4)
    student = load_model(str(make_student(teacher4, tmp_path / "student", 2)))
    rng = random.Random(0)
    prompts = [f"What is {rng.randint(0, 99)}+{rng.randint(0, 99)}?" for _ in range(20)]
    max_new = 16
    before = token_agreement(student, teacher, tok, prompts, max_new)

    # distillation = plain SFT on the teacher's greedy outputs (loss on the response tokens only)
    r = generate(teacher, tok, prompts, num_generations=1, max_new_tokens=max_new, temperature=0.0)
    ids = torch.cat([r.prompt_ids, r.completion_ids], dim=1)  # [B, P+T]
    mask = torch.cat([r.prompt_mask, r.completion_mask], dim=1)  # [B, P+T]
    labels = ids.masked_fill(mask == 0, -100)  # [B, P+T]
    labels[:, : r.prompt_ids.shape[1]] = -100
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # [B, P+T]
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-2)
    student.train()
    for _ in range(60):
        logits = student(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # [B, P+T, V]
        loss = sft_loss(logits, labels)  # distillation is r1kit's SFT loss on the teacher's outputs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    after = token_agreement(student, teacher, tok, prompts, max_new)
    assert before < 0.3 and after > 0.8, (before, after)
