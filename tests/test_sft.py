"""Supervised fine-tuning: the loss is on response tokens only, batches are length-grouped and
deterministic, a tiny model actually learns the pairs, resume is exact, and bad input is named.

Training tests use one thread: multi-threaded CPU reductions are not bitwise repeatable, and the resume
comparison is bitwise."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from r1kit.core.errors import ConfigError, DataError
from r1kit.models.loading import load_model, load_tokenizer
from r1kit.rollout.sampling import generate
from r1kit.trainers.sft import (
    IGNORE_INDEX,
    final_model_dir,
    length_grouped_batches,
    make_sft_config,
    padding_fraction,
    sft_loss,
    sft_train,
    shuffled_batches,
    tokenize_all,
    tokenize_example,
)

VOLATILE = {"step_time", "tokens_per_second"}


def _sum_pairs(n: int, seed: int = 0) -> list[dict]:
    """n distinct 'a+b=' -> 'a+b' records."""
    rng = random.Random(seed)
    seen: set = set()
    records = []
    while len(records) < n:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        if (a, b) not in seen:
            seen.add((a, b))
            records.append({"prompt": f"{a}+{b}=", "response": str(a + b)})
    return records


def _config(model, out, **kw):
    base = dict(model=model, output_dir=str(out), torch_threads=1, seed=3)
    return make_sft_config(overrides={**base, **kw})


# ---------------------------------------------------------------- loss

def _labels_with_prompts(B: int, T: int, V: int, prompt_lens: list[int], pad_from: list[int]) -> torch.Tensor:
    labels = torch.randint(0, V, (B, T))  # [B, T]
    for b in range(B):
        labels[b, :prompt_lens[b]] = IGNORE_INDEX
        labels[b, pad_from[b]:] = IGNORE_INDEX
    return labels


def test_sft_loss_matches_per_token_evaluation_and_ignores_prompt():
    torch.manual_seed(0)
    B, T, V = 3, 9, 11
    logits = torch.randn(B, T, V, requires_grad=True)  # [B, T, V]
    labels = _labels_with_prompts(B, T, V, prompt_lens=[3, 5, 1], pad_from=[9, 7, 4])

    # independent evaluation: position t predicts token t+1, response targets only
    logp = torch.log_softmax(logits.detach().double(), dim=-1)
    terms = [-logp[b, t, labels[b, t + 1]] for b in range(B) for t in range(T - 1) if labels[b, t + 1] != IGNORE_INDEX]
    expected = sum(terms) / len(terms)
    loss = sft_loss(logits, labels)
    assert abs(loss.item() - expected.item()) < 1e-5

    # the gradient is zero exactly at positions that predict a prompt or padding token (and at the last one)
    loss.backward()
    trained = torch.zeros(B, T, dtype=torch.bool)
    trained[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    grad_norm = logits.grad.abs().sum(-1)  # [B, T]
    assert (grad_norm[~trained] == 0).all()
    assert (grad_norm[trained] > 0).all()

    # changing those logits leaves the loss unchanged
    changed = logits.detach().clone()
    changed[~trained] = torch.randn(int((~trained).sum()), V) * 10
    assert torch.equal(sft_loss(changed, labels), loss.detach())


def test_sft_loss_split_micro_batches_equal_one_batch():
    """With num_tokens = the global count, micro-batch losses and gradients add up to the whole batch's."""
    torch.manual_seed(1)
    B, T, V = 4, 8, 7
    logits = torch.randn(B, T, V, requires_grad=True)  # [B, T, V]
    labels = _labels_with_prompts(B, T, V, prompt_lens=[2, 6, 3, 1], pad_from=[8, 8, 5, 3])
    whole = sft_loss(logits, labels)
    (g_whole,) = torch.autograd.grad(whole, logits)
    n = int((labels[:, 1:] != IGNORE_INDEX).sum())
    parts = sft_loss(logits[:2], labels[:2], n) + sft_loss(logits[2:], labels[2:], n)
    (g_parts,) = torch.autograd.grad(parts, logits)
    assert abs(parts.item() - whole.item()) < 1e-6
    torch.testing.assert_close(g_parts, g_whole)
    # the per-micro-batch mean is a different (length-biased) number: the global count matters
    assert abs((sft_loss(logits[:2], labels[:2]) + sft_loss(logits[2:], labels[2:])).item() / 2 - whole.item()) > 1e-3


# ---------------------------------------------------------------- tokenization

def test_tokenize_example_masks_prompt_and_appends_eos(tiny_model):
    tok = load_tokenizer(tiny_model)
    prompt_ids = tok("Q: 12+30=")["input_ids"]
    response_ids = tok("42 <answer>42</answer>", add_special_tokens=False)["input_ids"]
    ex = tokenize_example(tok, "Q: 12+30=", "42 <answer>42</answer>", max_length=64, append_eos=True)
    assert ex["input_ids"] == prompt_ids + response_ids + [tok.eos_token_id]
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt_ids) + response_ids + [tok.eos_token_id]
    assert tok.decode(ex["input_ids"][len(prompt_ids):-1]) == "42 <answer>42</answer>"
    assert len(response_ids) == 7  # "4", "2", " ", then the tags are single tokens

    no_eos = tokenize_example(tok, "Q: 12+30=", "42", max_length=64, append_eos=False)
    assert no_eos["labels"][-1] != tok.eos_token_id and len(no_eos["input_ids"]) == len(prompt_ids) + 2
    n = len(prompt_ids) + len(response_ids) + 1
    assert tokenize_example(tok, "Q: 12+30=", "42 <answer>42</answer>", max_length=n, append_eos=True) is not None
    assert tokenize_example(tok, "Q: 12+30=", "42 <answer>42</answer>", max_length=n - 1, append_eos=True) is None
    # the batched path used by sft_train gives the same examples
    prompts, responses = ["1+2=", "Q: 12+30=", "a"], ["3", "42 <answer>42</answer>", "b" * 40]
    assert tokenize_all(tok, prompts, responses, 20, True) == [
        tokenize_example(tok, p, r, 20, True) for p, r in zip(prompts, responses)]


# ---------------------------------------------------------------- batching

def _padding(batches, lengths):
    return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in batches)


def test_length_grouped_batches_permutation_deterministic_less_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 30) if rng.random() < 0.9 else rng.randint(200, 500) for _ in range(1000)]
    for epoch in range(3):
        batches = length_grouped_batches(lengths, 8, seed=7, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        assert all(1 <= len(b) <= 8 for b in batches)
        assert batches == length_grouped_batches(lengths, 8, seed=7, epoch=epoch)
        assert max(lengths[i] for i in batches[0]) == max(lengths)  # the largest batch first
    assert length_grouped_batches(lengths, 8, 7, 0) != length_grouped_batches(lengths, 8, 7, 1)
    assert length_grouped_batches(lengths, 8, 7, 0) != length_grouped_batches(lengths, 8, 8, 0)

    plain = shuffled_batches(len(lengths), 8, seed=7, epoch=0)
    assert sorted(i for b in plain for i in b) == list(range(len(lengths)))
    grouped = length_grouped_batches(lengths, 8, seed=7, epoch=0)
    assert _padding(grouped, lengths) < 0.2 * _padding(plain, lengths)
    assert padding_fraction(grouped, lengths) < 0.2 < padding_fraction(plain, lengths)


# ---------------------------------------------------------------- training

def _greedy_accuracy(model_dir, records) -> float:
    model, tok = load_model(str(model_dir)), load_tokenizer(str(model_dir))
    out = generate(model, tok, [r["prompt"] for r in records], num_generations=1, max_new_tokens=4, temperature=0)
    # exact response and then EOS (not truncated): the model also learned to stop
    return sum(c == r["response"] and not t for c, r, t in zip(out.completions, records, out.truncated)) / len(records)


def test_sft_learns_the_pairs(tiny_model, tmp_path):
    torch.set_num_threads(1)
    records = _sum_pairs(20)
    before = _greedy_accuracy(tiny_model, records)
    config = _config(tiny_model, tmp_path / "run", learning_rate=5e-3, per_device_train_batch_size=10,
                     num_train_epochs=50, lr_scheduler_type="constant")
    history = sft_train(config, records=records, show_progress=False)
    assert len(history) == 100  # 2 steps per epoch x 50 epochs
    assert history[-1]["epoch"] == 50
    losses = [m["loss"] for m in history]
    assert sum(losses[-5:]) / 5 < 0.1 * sum(losses[:2]) / 2, losses
    after = _greedy_accuracy(final_model_dir(tmp_path / "run"), records)
    assert before <= 0.1 and after >= 0.8, (before, after)

    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == list(range(1, 101))
    # tokens: each example is its prompt (4 chars) + response (1-2 chars) + EOS, every example once per epoch
    tok = load_tokenizer(tiny_model)
    per_epoch = sum(len(tok(r["prompt"] + r["response"])["input_ids"]) + 1 for r in records)
    assert lines[0]["tokens"] + lines[1]["tokens"] == per_epoch
    summary = json.loads((tmp_path / "run" / "sft_summary.json").read_text())
    assert summary["examples"] == 20 and summary["dropped_examples"] == 0 and summary["steps"] == 100
    assert summary["final_loss"] == losses[-1]
    assert final_model_dir(tmp_path / "run").name == "checkpoint-100"


@pytest.mark.parametrize("use_lora", [False, True])
def test_resume_matches_uninterrupted_run(tiny_model, tmp_path, use_lora):
    """7 steps straight vs. resumed from the step-4 checkpoint (mid second epoch), with gradient
    accumulation, length grouping, warm-up and a linear schedule (and LoRA dropout noise)."""
    rng = random.Random(5)
    records = [{"prompt": f"{rng.randint(0, 999)}*{rng.randint(0, 99)}=", "response": "x" * rng.randint(1, 12)}
               for _ in range(10)]
    kw = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=7, save_steps=2,
              learning_rate=3e-3, warmup_ratio=0.2, use_lora=use_lora, lora_r=4, lora_dropout=0.1)
    full = tmp_path / "full"
    sft_train(_config(tiny_model, full, **kw), records=records, show_progress=False)

    # a run killed after writing the metrics of steps 5-7 but with only the step-4 checkpoint kept
    part = tmp_path / "part"
    part.mkdir()
    shutil.copytree(full / "checkpoint-4", part / "checkpoint-4")
    for name in ("metrics.jsonl", "config.json"):
        shutil.copy(full / name, part / name)
    with open(part / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # a line cut short by the kill
    (part / ".tmp-checkpoint-6").mkdir()  # a half-written checkpoint
    history = sft_train(_config(tiny_model, part, resume=True, **kw), records=records, show_progress=False)
    assert [m["step"] for m in history] == [5, 6, 7]

    weights = "adapter_model.safetensors" if use_lora else "model.safetensors"
    a, b = load_file(full / "checkpoint-7" / weights), load_file(part / "checkpoint-7" / weights)
    init = load_file(full / "checkpoint-2" / weights)
    assert a.keys() == b.keys()
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3  # the run did move the weights
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bitwise on CPU with one thread

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k not in VOLATILE}
                for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics(part)] == list(range(1, 8))
    assert metrics(part) == metrics(full)
    assert not (part / ".tmp-checkpoint-6").exists()


DIST_SCRIPT = """
import random, sys
from r1kit.trainers.sft import make_sft_config, sft_train
model, out, accum = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(5)
records = [{"prompt": f"{rng.randint(0, 999)}*{rng.randint(0, 99)}=", "response": "x" * rng.randint(1, 12)}
           for _ in range(10)]
sft_train(make_sft_config(overrides=dict(model=model, output_dir=out, per_device_train_batch_size=2, max_steps=4,
                                         gradient_accumulation_steps=accum, learning_rate=3e-3, torch_threads=1)),
          records=records, show_progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("accelerate_config, port", [("cpu_2proc.yaml", 29541), ("fsdp_cpu_2proc.yaml", 29542)])
def test_two_processes_match_one(tiny_model, tmp_path, accelerate_config, port):
    """2 processes x 1 micro-batch = 1 process x 2 accumulated micro-batches: the same batches, the same
    update, under DDP and under FSDP2 (measured: 1.2e-7 at most). 10 examples in batches of 2 make a last
    step of each epoch with one batch, so the second process runs its weight-0 stand-in batch there."""
    script = tmp_path / "sft_dist.py"
    script.write_text(DIST_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    one = subprocess.run([sys.executable, str(script), tiny_model, str(tmp_path / "one"), "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    config = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / accelerate_config
    two = subprocess.run([launcher, "launch", "--config_file", str(config), "--main_process_port", str(port),
                          str(script), tiny_model, str(tmp_path / "two"), "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "sft_summary.json").read_text())["world_size"] == 2
    a = load_file(tmp_path / "one" / "checkpoint-4" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoint-4" / "model.safetensors")
    init = load_file(Path(tiny_model) / "model.safetensors")
    assert max((a[k] - init[k]).abs().max().item() for k in a) > 1e-3
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    m1, m2 = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("one", "two")]
    assert [m["tokens"] for m in m1] == [m["tokens"] for m in m2]
    assert m1[2]["tokens"] < m1[1]["tokens"]  # step 3 is the one-batch end of the first epoch
    for x, y in zip(m1, m2):
        assert abs(x["loss"] - y["loss"]) < 1e-5 and abs(x["grad_norm"] - y["grad_norm"]) < 1e-4


# ---------------------------------------------------------------- bad input

def test_bad_dataset_lines_are_named(tiny_model, tmp_path):
    path = tmp_path / "sft.jsonl"
    path.write_text('{"prompt": "1+1=", "response": "2"}\n{"prompt": "2+2="}\n')
    with pytest.raises(DataError, match=rf"{path}:2: missing field 'response'"):
        sft_train(_config(tiny_model, tmp_path / "a", dataset=str(path)), show_progress=False)
    path.write_text('{"question": "1+1=", "response": "2"}\n\n{"question": "2+2=", "response": 4}\n')
    with pytest.raises(DataError, match=rf"{path}:3: field 'response' is a int"):
        sft_train(_config(tiny_model, tmp_path / "a", dataset=str(path), prompt_field="question"),
                  show_progress=False)
    assert not (tmp_path / "a").exists()  # nothing written before the data was checked


def test_bad_options_are_named():
    with pytest.raises(ConfigError, match="unknown option 'learning_rat' \\(did you mean learning_rate"):
        make_sft_config(overrides={"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="max_length=1"):
        make_sft_config(overrides={"max_length": 1})
    with pytest.raises(ConfigError, match="template='r1'"):
        make_sft_config(overrides={"template": "r1"})
    with pytest.raises(ConfigError, match="option 'num_train_epochs' expects an integer"):
        make_sft_config(overrides={"num_train_epochs": 1.5})
    with pytest.raises(ConfigError, match="lr_scheduler_type='cosinus'"):
        make_sft_config(overrides={"lr_scheduler_type": "cosinus"})


def test_existing_run_needs_resume_or_overwrite_and_long_examples_are_dropped(tiny_model, tmp_path, capsys):
    records = _sum_pairs(6) + [{"prompt": "9+9=", "response": "1" * 40}]  # 45 tokens with EOS
    out = tmp_path / "run"
    sft_train(_config(tiny_model, out, max_steps=3, max_length=32, per_device_train_batch_size=2),
              records=records, show_progress=False)
    assert "dropped 1 of 7 examples longer than max_length=32" in capsys.readouterr().out
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["examples"] == 6 and summary["dropped_examples"] == 1
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["dropped_examples"] == 1

    with pytest.raises(ConfigError, match=f"output_dir {out} already holds a run"):
        sft_train(_config(tiny_model, out, max_steps=1), records=records, show_progress=False)
    # overwrite replaces the run: the old step-3 checkpoint must not pass for the new run's final model
    sft_train(_config(tiny_model, out, max_steps=1, overwrite_output_dir=True), records=records, show_progress=False)
    assert final_model_dir(out) == out / "checkpoint-1"
    assert not (out / "checkpoint-3").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1

    # resuming on other data would replay other batches: refused
    with pytest.raises(ConfigError, match="resume: the training data or rewards differ .*data_fingerprint"):
        sft_train(_config(tiny_model, out, max_steps=1, resume=True), records=records[:-2], show_progress=False)
    with pytest.raises(ConfigError, match="template=chat"):  # the tiny tokenizer has no chat template
        sft_train(_config(tiny_model, tmp_path / "chat", template="chat"), records=records, show_progress=False)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        final_model_dir(tmp_path / "empty")
