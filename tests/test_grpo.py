"""The GRPO loss and advantages against an independent, scalar evaluation of the formula."""

import math

import pytest
import torch

from r1kit.grpo import group_advantages, grpo_loss, kl_k3


def reference_objective(logp, old, ref, adv, lengths, beta, eps_low, eps_high, loss_type, max_len=None, w=None):
    """J of DeepSeekMath Eq. 3 written token by token with Python floats (the loss is -J); w: optional
    per-token importance weights multiplying each token's term."""
    per_seq, all_tokens = [], []
    for i, n in enumerate(lengths):
        terms = []
        for t in range(n):
            r = math.exp(logp[i][t] - old[i][t])
            clipped = min(max(r, 1 - eps_low), 1 + eps_high)
            surrogate = min(r * adv[i], clipped * adv[i])
            q = math.exp(ref[i][t] - logp[i][t])  # pi_ref / pi_theta
            kl = q - math.log(q) - 1
            terms.append((surrogate - beta * kl) * (w[i][t] if w is not None else 1.0))
        per_seq.append(sum(terms) / n)
        all_tokens.extend(terms)
    if loss_type == "grpo":
        return sum(per_seq) / len(lengths)
    if loss_type == "dapo":
        return sum(all_tokens) / len(all_tokens)
    return sum(all_tokens) / (len(lengths) * max_len)


def make_batch(seed=0, n=6, T=5):
    g = torch.Generator().manual_seed(seed)
    logp = -torch.rand(n, T, generator=g) * 3
    # old log-probs chosen so that ratios land on both sides of both clip edges
    old = logp + torch.tensor([-0.5, -0.1, 0.0, 0.1, 0.5]).repeat(n, 1)[:, :T] * (1 + torch.rand(n, T, generator=g))
    ref = logp + torch.randn(n, T, generator=g) * 0.3
    adv = torch.tensor([1.5, -1.0, 0.7, -0.2, -0.5, 2.0])[:n]
    lengths = [5, 3, 1, 4, 5, 2][:n]
    mask = torch.zeros(n, T)
    for i, L in enumerate(lengths):
        mask[i, :L] = 1
    return logp, old, ref, adv, mask, lengths


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_importance_weights_scale_each_token(loss_type):
    logp, old, ref, adv, mask, lengths = make_batch(seed=3)
    sampler = old + torch.randn(old.shape, generator=torch.Generator().manual_seed(4)) * 0.5  # another engine
    w = torch.exp(old - sampler).clamp(max=2.0)  # truncated importance sampling, as the trainer computes it
    assert (w == 2.0).any() and (w < 1).any()  # both the cap and down-weighting are exercised
    loss, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type, max_completion_length=5,
                        importance_weights=w)
    expected = -reference_objective(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), lengths, 0.04,
                                    0.2, 0.2, loss_type, max_len=5, w=w.tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    plain, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type, max_completion_length=5)
    ones, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type, max_completion_length=5,
                        importance_weights=torch.ones_like(w))
    assert ones.item() == plain.item() and abs(loss.item() - plain.item()) > 1e-4


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("eps_high", [None, 0.28])
def test_loss_matches_independent_formula(loss_type, beta, eps_high):
    logp, old, ref, adv, mask, lengths = make_batch()
    loss, stats = grpo_loss(logp, old, ref, adv, mask, beta=beta, epsilon=0.2, epsilon_high=eps_high,
                            loss_type=loss_type, max_completion_length=5)
    expected = -reference_objective(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), lengths, beta,
                                    0.2, eps_high or 0.2, loss_type, max_len=5)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert stats["tokens"].item() == sum(lengths)
    # the batch covers clipped tokens on both sides, so the test exercises both branches of min()
    assert stats["clipped_low"].item() > 0 and stats["clipped_high"].item() > 0


def test_padding_does_not_leak_into_the_loss():
    logp, old, ref, adv, mask, _ = make_batch()
    loss, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04)
    noisy = torch.where(mask.bool(), logp, torch.full_like(logp, 123.0))
    loss2, _ = grpo_loss(noisy, old, ref, adv, mask, beta=0.04)
    assert loss.item() == pytest.approx(loss2.item(), rel=1e-6)


def test_on_policy_gradient_sign_follows_advantage():
    """At ratio 1 the gradient raises log-probs of positive-advantage outputs and lowers negative ones."""
    logp, _, _, _, mask, _ = make_batch()
    logp = logp.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    loss, _ = grpo_loss(logp, logp.detach(), None, adv, mask, beta=0.0)
    loss.backward()
    g = logp.grad
    assert (g[adv > 0][mask[adv > 0].bool()] < 0).all()  # descending the loss increases logp
    assert (g[adv < 0][mask[adv < 0].bool()] > 0).all()
    assert (g[~mask.bool()] == 0).all()


def test_clipped_tokens_get_no_gradient():
    """Beyond the clip edge in the advantage's direction the min() picks the constant clipped term."""
    logp = torch.zeros(2, 1, requires_grad=True)
    old = torch.tensor([[-1.0], [1.0]])  # ratios e^1 (above 1.2) and e^-1 (below 0.8)
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logp, old, None, adv, torch.ones(2, 1), beta=0.0)
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(2, 1))
    assert stats["clipped_high"].item() == 1 and stats["clipped_low"].item() == 1
    # on the other side of 1 the unclipped term is the smaller one and keeps its gradient
    logp2 = torch.zeros(2, 1, requires_grad=True)
    loss2, _ = grpo_loss(logp2, old, None, -adv, torch.ones(2, 1), beta=0.0)
    loss2.backward()
    assert (logp2.grad != 0).all()


def test_kl_gradient_pulls_towards_reference():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-0.5, -2.5]])
    loss, _ = grpo_loss(logp, logp.detach(), ref, torch.zeros(1), torch.ones(1, 2), beta=1.0)
    loss.backward()
    # logp below ref (first token) must be pushed up, above ref (second) pushed down
    assert logp.grad[0, 0] < 0 and logp.grad[0, 1] > 0


def test_kl_k3_nonnegative_and_zero_at_equality():
    g = torch.Generator().manual_seed(1)
    a, b = -torch.rand(1000, generator=g) * 10, -torch.rand(1000, generator=g) * 10
    assert (kl_k3(a, b) >= 0).all()
    assert torch.equal(kl_k3(a, a), torch.zeros_like(a))


def test_group_advantages_formula_and_zero_std_groups():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    adv, zero_std = group_advantages(rewards, 4)
    for k in range(3):
        grp = rewards[4 * k: 4 * k + 4].tolist()
        mean = sum(grp) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in grp) / 3)  # unbiased, as torch.std
        for j in range(4):
            want = 0.0 if std == 0 else (grp[j] - mean) / (std + 1e-4)
            assert adv[4 * k + j].item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert zero_std.tolist() == [False, True, False]
    assert torch.equal(adv[4:8], torch.zeros(4))
    unscaled, _ = group_advantages(rewards, 4, scale_rewards=False)
    assert unscaled[:4].tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


def test_micro_batches_sum_to_the_whole_batch_loss():
    """With whole-batch normalisers, micro-batch losses (and gradients) add up to the full-batch ones."""
    logp, old, ref, adv, mask, _ = make_batch()
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        full, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type, max_completion_length=5)
        parts = sum(grpo_loss(logp[s], old[s], ref[s], adv[s], mask[s], beta=0.04, loss_type=loss_type,
                              max_completion_length=5, num_sequences=6, num_tokens=mask.sum())[0]
                    for s in (slice(0, 2), slice(2, 5), slice(5, 6)))
        assert parts.item() == pytest.approx(full.item(), rel=1e-6)
