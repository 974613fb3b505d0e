"""Reward models (R1 stage 4): the Bradley-Terry loss, learning a preference, scoring a saved model, bad input."""

import json
import math
import re

import pytest
import torch

from r1kit.core.errors import ConfigError, DataError, ModelError
from r1kit.data.preferences import toy_preferences
from r1kit.models.reward_model import load_reward_model
from r1kit.trainers.reward_model import bradley_terry_loss, make_rm_config, train_reward_model


def test_bradley_terry_loss_matches_hand_computation_and_pushes_chosen_up():
    chosen = [1.5, -0.3, 2.0, 0.0]
    rejected = [0.5, 0.7, -1.0, 0.0]
    expected = -sum(math.log(1 / (1 + math.exp(-(c - r)))) for c, r in zip(chosen, rejected)) / len(chosen)
    c = torch.tensor(chosen, requires_grad=True)
    r = torch.tensor(rejected, requires_grad=True)
    loss = bradley_terry_loss(c, r)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d loss / d chosen_i = -sigmoid(r_i - c_i) / n < 0: gradient descent raises chosen and lowers rejected
    for i, (ci, ri) in enumerate(zip(chosen, rejected)):
        assert c.grad[i].item() == pytest.approx(-1 / (1 + math.exp(ci - ri)) / len(chosen), rel=1e-5)
        assert r.grad[i].item() == pytest.approx(-c.grad[i].item(), rel=1e-6)

    centered = bradley_terry_loss(torch.tensor(chosen), torch.tensor(rejected), center_rewards_coefficient=0.1)
    penalty = 0.1 * sum((a + b) ** 2 for a, b in zip(chosen, rejected)) / len(chosen)
    assert centered.item() == pytest.approx(expected + penalty, rel=1e-6)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("rm") / "run"
    config = make_rm_config(overrides=dict(
        model=tiny_model, dataset="toy", toy_examples=500, eval_fraction=0.2, num_train_epochs=2,
        per_device_train_batch_size=16, learning_rate=1e-3, lr_scheduler_type="constant", seed=0,
        output_dir=str(out)))
    return out, train_reward_model(config, show_progress=False)


def test_reward_model_learns_to_rank_chosen_above_rejected(trained):
    out, summary = trained
    assert summary["eval_pairs"] == 100 and summary["train_pairs"] == 400 and summary["dropped"] == 0
    # untrained score head: about chance; trained: held-out pairs (unseen combinations) ranked right
    assert 0.3 <= summary["eval_accuracy_before"] <= 0.7, summary
    assert summary["eval_accuracy_after"] >= 0.9, summary
    assert summary["eval_margin_after"] > summary["eval_margin_before"] + 1.0
    on_disk = json.loads((out / "rm_summary.json").read_text())
    assert on_disk["eval_accuracy_after"] == summary["eval_accuracy_after"]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == summary["steps"] == 50
    assert {"loss", "accuracy", "margin", "grad_norm", "learning_rate"} <= set(metrics[0])
    assert sum(m["loss"] for m in metrics[-5:]) / 5 < sum(m["loss"] for m in metrics[:5]) / 5


def test_saved_model_reproduces_training_scores_and_ignores_padding(trained, tiny_model):
    out, summary = trained
    records = summary["eval_records"]
    rm = load_reward_model(str(out / "model"), device="cpu")
    assert rm.template == "plain"  # the training template, read back from the folder
    prompts = [r["prompt"] for r in records] * 2
    responses = [r["chosen"] for r in records] + [r["rejected"] for r in records]
    scores = rm.score(prompts, responses, batch_size=16)
    expected = [r["chosen_score"] for r in records] + [r["rejected_score"] for r in records]
    assert scores == pytest.approx(expected, abs=1e-5)
    # a short text alone and in a batch padded to a much longer one
    alone = rm.score(["Say hi to Bob."], ["No."])
    batched = rm.score(["Say hi to Bob.", "Write a short thank you note to Eva for the flowers."],
                       ["No.", "Dear Eva, thank you so much for the lovely flowers. " * 3])
    assert batched[0] == pytest.approx(alone[0], abs=1e-5)
    assert rm.score(["Say hi to Zoe."], ["Hi Zoe, nice to meet you."])[0] > alone[0]
    # a causal LM has no trained score head: not a reward model
    with pytest.raises(ModelError, match="causal LM"):
        load_reward_model(tiny_model)


def test_bad_input_names_the_line_or_option(tmp_path, tiny_model):
    data = tmp_path / "prefs.jsonl"
    data.write_text(json.dumps({"prompt": "Say hi.", "chosen": "Hi.", "rejected": "No."}) + "\n"
                    + json.dumps({"prompt": "Say hi.", "chosen": "Hi."}) + "\n")
    config = make_rm_config(overrides=dict(model=tiny_model, dataset=str(data), output_dir=str(tmp_path / "run")))
    with pytest.raises(DataError, match=re.escape(f"{data}:2: missing field 'rejected'")):
        train_reward_model(config, show_progress=False)
    with pytest.raises(ConfigError, match=r"unknown option 'learning_rat' \(did you mean learning_rate\?\)"):
        make_rm_config(overrides={"learning_rat": 1e-4})
    with pytest.raises(ConfigError, match="template"):
        make_rm_config(overrides={"template": "fancy"})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "rm_summary.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds"):
        train_reward_model(config, show_progress=False)
    with pytest.raises(ModelError, match="no config.json"):
        load_reward_model(str(tmp_path))


def test_toy_preferences_are_deterministic_and_in_the_tiny_alphabet():
    pairs = toy_preferences(300, seed=3)
    assert pairs == toy_preferences(300, seed=3) and pairs != toy_preferences(300, seed=4)
    assert len({(p["prompt"], p["chosen"], p["rejected"]) for p in pairs}) == 300
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,?:")
    assert all(set(p[k]) <= allowed for p in pairs for k in ("prompt", "chosen", "rejected"))
