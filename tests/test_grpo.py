"""The GRPO loss and advantages against an independent, scalar evaluation of the formula."""

import math

import pytest
import torch

from r1kit.algorithms.advantages import group_advantages
from r1kit.algorithms.losses import grpo_loss, kl_k3


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


# ---------------------------------------------------------------------------------------------------------
# The GRPO family (docs/algorithms.md): every option against an element-by-element evaluation.

from types import SimpleNamespace  # noqa: E402

from r1kit.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    advantages_for,
    informative_rows,
    register_advantage_estimator,
)
from r1kit.algorithms.corrections import mask_truncated_completions, rollout_importance_weights, soft_overlong_penalty
from r1kit.algorithms.losses import LOSS_TYPES, LOSSES, loss_options, policy_ratio, register_loss, top_entropy_threshold
from r1kit.core.errors import ConfigError
from r1kit.trainers.grpo.config import make_config  # noqa: E402


def frozen_grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, *, beta=0.001, epsilon=0.2,
                     epsilon_high=None, loss_type="grpo", max_completion_length=None, num_sequences=None,
                     num_tokens=None, importance_weights=None):
    """grpo_loss as it was before the registries (commit 27cc9ec), frozen here: the default must not move."""
    mask = mask.to(logprobs.dtype)
    eps_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp((logprobs - old_logprobs) * mask)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + eps_high) * adv
    per_token = torch.min(unclipped, clipped)
    kl = kl_k3(logprobs * mask, ref_logprobs * mask) if ref_logprobs is not None else torch.zeros_like(logprobs)
    if beta != 0.0:
        per_token = per_token - beta * kl
    per_token_loss = -per_token
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights.detach()
    n_seq = logprobs.shape[0] if num_sequences is None else num_sequences
    if loss_type == "grpo":
        lengths = mask.sum(dim=1).clamp(min=1)
        loss = ((per_token_loss * mask).sum(dim=1) / lengths).sum() / n_seq
    elif loss_type == "dapo":
        n_tok = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
        loss = (per_token_loss * mask).sum() / n_tok
    else:
        loss = (per_token_loss * mask).sum() / (n_seq * max_completion_length)
    low = ((ratio < 1 - epsilon) & (adv < 0)).to(mask.dtype)
    high = ((ratio > 1 + eps_high) & (adv > 0)).to(mask.dtype)
    stats = {"kl": (kl.detach() * mask).sum(), "clipped_low": (low * mask).sum(),
             "clipped_high": (high * mask).sum(), "tokens": mask.sum()}
    return loss, stats


def frozen_group_advantages(rewards, G, scale_rewards=True, eps=1e-4):
    grouped = rewards.view(-1, G)
    mean, std = grouped.mean(dim=1, keepdim=True), grouped.std(dim=1, keepdim=True)
    centred = grouped - mean
    advantages = centred / (std + eps) if scale_rewards else centred
    zero_std = (grouped == grouped[:, :1]).all(dim=1)
    return torch.where(zero_std[:, None], torch.zeros_like(advantages), advantages).reshape(-1), zero_std


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.001, 0.04])
@pytest.mark.parametrize("variant", ["plain", "eps_high", "weights", "micro"])
def test_default_paths_are_bit_for_bit_unchanged(loss_type, beta, variant):
    """The registries must not move a single bit of the pre-registry loss, its gradient or its stats."""
    logp, old, ref, adv, mask, _ = make_batch(seed=7)
    kw = dict(beta=beta, loss_type=loss_type, max_completion_length=5)
    rows = slice(None)
    if variant == "eps_high":
        kw["epsilon_high"] = 0.28
    if variant == "weights":
        kw["importance_weights"] = torch.exp(old - old.flip(0)).clamp(max=2.0)
    if variant == "micro":
        rows, kw = slice(1, 4), {**kw, "num_sequences": 6, "num_tokens": mask.sum()}
    results = []
    for fn in (grpo_loss, frozen_grpo_loss):
        x = logp[rows].clone().requires_grad_(True)
        kw_rows = {k: (v[rows] if isinstance(v, torch.Tensor) and v.dim() == 2 else v) for k, v in kw.items()}
        loss, stats = fn(x, old[rows], ref[rows], adv[rows], mask[rows], **kw_rows)
        loss.backward()
        results.append((loss, x.grad, stats))
    (new, g_new, s_new), (frozen, g_frozen, s_frozen) = results
    assert torch.equal(new, frozen) and torch.equal(g_new, g_frozen)
    for key in s_frozen:
        assert torch.equal(s_new[key], s_frozen[key]), key


def test_default_advantages_are_bit_for_bit_unchanged():
    rewards = torch.rand(24, generator=torch.Generator().manual_seed(2))
    rewards[8:12] = 0.5  # one group with no spread
    for scale in (True, False):
        want = frozen_group_advantages(rewards, 4, scale)
        got = group_advantages(rewards, 4, scale)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    config = make_config()  # the paper's settings: grpo estimator, group std
    got = advantages_for(config, rewards, 4)
    assert torch.equal(got[0], frozen_group_advantages(rewards, 4, True)[0])


AGGREGATION_OF = {"grpo": "grpo", "bnpo": "bnpo", "dapo": "dapo", "dr_grpo": "dr_grpo", "cispo": "dapo",
                  "sapo": "grpo"}


def reference_loss(lp, old, ref, adv, lengths, *, loss_type="grpo", level="token", beta=0.0, eps=0.2,
                   eps_high=0.2, tau_pos=1.0, tau_neg=1.05, w=None, keep=None, ent=None, ent_coef=0.0,
                   max_len=5, n_seq=None, n_tok=None, n_local=None, weight_lp=None):
    """The loss written token by token with Python floats. `weight_lp` is where CISPO's detached weight is
    evaluated (default: lp), so finite differences in lp see the stop-gradient."""
    weight_lp = lp if weight_lp is None else weight_lp

    def ratio(src, i, t):
        if level == "token":
            return math.exp(src[i][t] - old[i][t])
        return math.exp(sum(src[i][u] - old[i][u] for u in range(lengths[i])) / lengths[i])

    seq_sums, total = [], 0.0
    for i, n in enumerate(lengths):
        s = 0.0
        for t in range(n):
            r, a = ratio(lp, i, t), adv[i]
            if loss_type == "cispo":
                term = -min(ratio(weight_lp, i, t), eps_high) * a * lp[i][t]
            elif loss_type == "sapo":
                tau = tau_pos if a > 0 else tau_neg
                term = -a * 4 / tau / (1 + math.exp(-tau * (r - 1)))
            else:
                term = -min(r * a, min(max(r, 1 - eps), 1 + eps_high) * a)
            if keep is not None:
                term *= keep[i][t]
            q = math.exp(ref[i][t] - lp[i][t])
            term += beta * (q - math.log(q) - 1)
            if w is not None:
                term *= w[i][t]
            if ent is not None:
                term -= ent_coef * ent[i][t]
            s += term
        seq_sums.append(s / n)
        total += s
    n_seq = len(lengths) if n_seq is None else n_seq
    n_tok = sum(lengths) if n_tok is None else n_tok
    agg = AGGREGATION_OF[loss_type]
    if agg == "grpo":
        return sum(seq_sums) / n_seq
    if agg == "bnpo":
        return total / (sum(lengths) if n_local is None else n_local)
    if agg == "dapo":
        return total / n_tok
    return total / (n_seq * max_len)


def finite_difference(fn, lp, mask, h=1e-5):
    """d fn / d lp[i][t] by central differences in float64 (0 on padding, which fn never reads)."""
    grad = [[0.0] * len(row) for row in lp]
    for i in range(len(lp)):
        for t in range(len(lp[i])):
            if mask[i][t] == 0:
                continue
            up = [row[:] for row in lp]
            down = [row[:] for row in lp]
            up[i][t] += h
            down[i][t] -= h
            grad[i][t] = (fn(up) - fn(down)) / (2 * h)
    return torch.tensor(grad, dtype=torch.float64)


def batch_for(level):
    """make_batch, with two rows' log-ratios flipped at sequence level so that sequence ratios fall on both
    sides of 1 (geometric means of mostly-positive token log-ratios are otherwise all above it)."""
    logp, old, ref, adv, mask, lengths = make_batch(seed=11)
    if level == "sequence":
        old = logp + (old - logp) * torch.tensor([1.0, -1, 1, 1, -1, 1])[:, None]
    return logp, old, ref, adv, mask, lengths


def check_against_reference(loss_type, level, beta, eps, eps_high, use_weights, tau=(1.0, 1.05)):
    logp, old, ref, adv, mask, lengths = batch_for(level)
    w = torch.exp(old - old.flip(0)).clamp(max=2.0) if use_weights else None
    x = logp.clone().requires_grad_(True)
    loss, stats = grpo_loss(x, old, ref, adv, mask, beta=beta, epsilon=eps, epsilon_high=eps_high,
                            loss_type=loss_type, max_completion_length=5, importance_weights=w,
                            importance_sampling_level=level, sapo_temperature_pos=tau[0],
                            sapo_temperature_neg=tau[1])
    loss.backward()
    args = (old.tolist(), ref.tolist(), adv.tolist(), lengths)
    kw = dict(loss_type=loss_type, level=level, beta=beta, eps=eps, eps_high=eps_high, tau_pos=tau[0],
              tau_neg=tau[1], w=None if w is None else w.tolist())
    lp0 = logp.double().tolist()
    assert loss.item() == pytest.approx(reference_loss(lp0, *args, **kw), rel=1e-5, abs=1e-7)
    fd = finite_difference(lambda lp: reference_loss(lp, *args, **kw, weight_lp=lp0), lp0, mask.tolist())
    # autograd against finite differences of the scalar formula: magnitudes and signs, token by token
    assert torch.allclose(x.grad.double(), fd, rtol=1e-3, atol=1e-6), (x.grad, fd)
    return stats, x.grad


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("beta,use_weights", [(0.0, False), (0.04, True)])
def test_every_loss_type_matches_the_formula_in_value_and_gradient(loss_type, level, beta, use_weights):
    # sequence-level ratios are geometric means, closer to 1: GSPO-sized clip ranges put some outside
    eps, eps_high = (0.2, 0.28) if level == "token" else (0.03, 0.04)
    if loss_type == "cispo":
        eps_high = 1.3 if level == "token" else 1.02  # the cap on the weight itself: some weights exceed it
    stats, grad = check_against_reference(loss_type, level, beta, eps, eps_high, use_weights)
    if loss_type in ("grpo", "bnpo", "dapo", "dr_grpo"):
        # both branches of min() are exercised on both sides
        assert stats["clipped_low"].item() > 0 and stats["clipped_high"].item() > 0
        if beta == 0.0:  # clipped tokens have exactly zero gradient, the others not
            logp, old, _, adv, mask, _ = batch_for(level)
            r = policy_ratio(logp, old, mask, level).expand_as(mask)
            a = adv[:, None].expand_as(mask)
            clipped = (((r < 1 - eps) & (a < 0)) | ((r > 1 + eps_high) & (a > 0))) & mask.bool()
            assert (grad[clipped] == 0).all() and (grad[~clipped & mask.bool()] != 0).all()
    if loss_type == "cispo":
        assert stats["clipped_high"].item() > 0
        assert (grad[make_batch(seed=11)[4].bool()] != 0).all()  # every token keeps a gradient


def test_sapo_temperatures_act_on_their_sign_of_advantage():
    for tau in [(0.5, 1.05), (1.0, 3.0)]:
        check_against_reference("sapo", "token", 0.0, 0.2, 0.2, False, tau=tau)
    logp, old, ref, adv, mask, _ = make_batch(seed=11)
    base, _ = grpo_loss(logp, old, None, adv, mask, beta=0.0, loss_type="sapo")
    neg_only, _ = grpo_loss(logp, old, None, adv.clamp(min=0), mask, beta=0.0, loss_type="sapo",
                            sapo_temperature_neg=9.0)
    pos_only, _ = grpo_loss(logp, old, None, adv.clamp(min=0), mask, beta=0.0, loss_type="sapo")
    assert neg_only.item() == pos_only.item()  # no negative advantages: tau_neg cannot matter
    assert base.item() != pos_only.item()


@pytest.mark.parametrize("loss_type", ["grpo", "sapo", "cispo"])
def test_on_policy_gradients_of_the_variants(loss_type):
    """At ratio 1: GSPO's sequence-level gradient is the token-level one; SAPO's gate has slope 1, so its
    gradient is GRPO's; CISPO's is DAPO's (weight 1, token normalisation)."""
    logp, _, _, adv, mask, _ = make_batch(seed=5)
    grads = {}
    for name, kw in {"token": {}, "sequence": {"importance_sampling_level": "sequence"}}.items():
        x = logp.clone().requires_grad_(True)
        grpo_loss(x, x.detach(), None, adv, mask, beta=0.0, loss_type=loss_type, epsilon_high=5.0, **kw)[0].backward()
        grads[name] = x.grad
    assert torch.allclose(grads["token"], grads["sequence"], atol=1e-7)
    twin = {"grpo": "grpo", "sapo": "grpo", "cispo": "dapo"}[loss_type]
    x = logp.clone().requires_grad_(True)
    grpo_loss(x, x.detach(), None, adv, mask, beta=0.0, loss_type=twin, epsilon_high=5.0)[0].backward()
    assert torch.allclose(grads["token"], x.grad, atol=1e-7)
    assert (grads["token"][adv > 0][mask[adv > 0].bool()] < 0).all()  # descending raises good outputs


def python_quantile(values, q):
    """torch.quantile's default (linear interpolation between order statistics), by hand."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo"])
def test_top_entropy_quantile_trains_only_high_entropy_tokens(loss_type):
    logp, old, ref, adv, mask, lengths = make_batch(seed=11)
    ent = torch.rand(mask.shape, generator=torch.Generator().manual_seed(9)) * 3
    q = 0.3
    tau = python_quantile([ent[i][t].item() for i, n in enumerate(lengths) for t in range(n)], 1 - q)
    keep = [[1.0 if ent[i][t].item() >= tau else 0.0 for t in range(5)] for i in range(6)]
    kept = sum(keep[i][t] for i, n in enumerate(lengths) for t in range(n))
    assert 0 < kept < sum(lengths)
    x = logp.clone().requires_grad_(True)
    loss, stats = grpo_loss(x, old, ref, adv, mask, beta=0.04, loss_type=loss_type, entropy=ent,
                            top_entropy_quantile=q)
    loss.backward()
    lp0 = logp.double().tolist()
    args = (old.tolist(), ref.tolist(), adv.tolist(), lengths)
    kw = dict(loss_type=loss_type, beta=0.04, keep=keep)
    assert loss.item() == pytest.approx(reference_loss(lp0, *args, **kw), rel=1e-5, abs=1e-7)
    fd = finite_difference(lambda lp: reference_loss(lp, *args, **kw), lp0, mask.tolist())
    assert torch.allclose(x.grad.double(), fd, rtol=1e-3, atol=1e-6)
    assert stats["entropy_selected"].item() == kept
    assert top_entropy_threshold(ent, mask, q).item() == pytest.approx(tau, rel=1e-6)
    # with beta = 0 the unselected tokens get no gradient at all; the selected ones do
    y = logp.clone().requires_grad_(True)
    grpo_loss(y, old, None, adv, mask, beta=0.0, loss_type=loss_type, entropy=ent, top_entropy_quantile=q,
              epsilon=10.0)[0].backward()  # no clipping, so every selected token has a gradient
    sel = torch.tensor(keep).bool() & mask.bool()
    assert (y.grad[~sel] == 0).all() and (y.grad[sel] != 0).all()
    with pytest.raises(ValueError, match="entropy"):
        grpo_loss(logp, old, ref, adv, mask, top_entropy_quantile=q)


def test_entropy_bonus_raises_entropy():
    logp, old, ref, adv, mask, lengths = make_batch(seed=11)
    ent = (torch.rand(mask.shape, generator=torch.Generator().manual_seed(3)) * 2).requires_grad_(True)
    loss, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type="dapo", entropy=ent, entropy_coef=0.01)
    loss.backward()
    want = reference_loss(logp.double().tolist(), old.tolist(), ref.tolist(), adv.tolist(), lengths,
                          loss_type="dapo", beta=0.04, ent=ent.tolist(), ent_coef=0.01)
    assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-7)
    # d loss / d H = -coef / tokens: descending the loss raises every token's entropy, padding untouched
    assert torch.allclose(ent.grad[mask.bool()], torch.full((sum(lengths),), -0.01 / sum(lengths)))
    assert (ent.grad[~mask.bool()] == 0).all()
    with pytest.raises(ValueError, match="gradient"):
        grpo_loss(logp.clone().requires_grad_(True), old, ref, adv, mask, entropy=ent.detach(), entropy_coef=0.01)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo"])
@pytest.mark.parametrize("level", ["token", "sequence"])
def test_every_aggregation_is_additive_over_micro_batches(loss_type, level):
    """Split with the whole batch's normalisers (and entropy threshold), micro-batch losses and gradients
    add up to the whole batch's."""
    logp, old, ref, adv, mask, _ = make_batch(seed=4)
    ent = torch.rand(mask.shape, generator=torch.Generator().manual_seed(8))
    w = torch.exp(old - old.flip(0)).clamp(max=2.0)
    kw = dict(beta=0.04, loss_type=loss_type, max_completion_length=5, importance_sampling_level=level,
              epsilon_high=3.0 if loss_type == "cispo" else 0.28, entropy=ent, top_entropy_quantile=0.5)
    x = logp.clone().requires_grad_(True)
    full, _ = grpo_loss(x, old, ref, adv, mask, importance_weights=w, **kw)
    full.backward()
    threshold = top_entropy_threshold(ent, mask, 0.5)
    y = logp.clone().requires_grad_(True)
    parts = [grpo_loss(y[s], old[s], ref[s], adv[s], mask[s], importance_weights=w[s],
                       **{**kw, "entropy": ent[s]}, num_sequences=6, num_tokens=mask.sum(),
                       num_local_tokens=mask.sum(), entropy_threshold=threshold)[0]
             for s in (slice(0, 2), slice(2, 6))]
    sum(parts).backward()
    assert sum(parts).item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(x.grad, y.grad, atol=1e-8)
    # without the batch's threshold each micro-batch selects its own top half: a different loss
    local = sum(grpo_loss(logp[s], old[s], ref[s], adv[s], mask[s], importance_weights=w[s],
                          **{**kw, "entropy": ent[s]}, num_sequences=6, num_tokens=mask.sum(),
                          num_local_tokens=mask.sum())[0] for s in (slice(0, 2), slice(2, 6)))
    assert local.item() != pytest.approx(full.item(), rel=1e-6)


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo", "cispo", "grpo", "dr_grpo"])
def test_token_normalisers_are_local_for_bnpo_and_global_for_dapo(loss_type):
    """As if this process held 20 of the 48 completion tokens of a two-process batch of 12 outputs."""
    logp, old, ref, adv, mask, lengths = make_batch(seed=11)
    loss, _ = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type=loss_type, epsilon_high=1.3,
                        max_completion_length=5, num_sequences=12, num_tokens=48, num_local_tokens=sum(lengths))
    want = reference_loss(logp.double().tolist(), old.tolist(), ref.tolist(), adv.tolist(), lengths,
                          loss_type=loss_type, beta=0.04, eps_high=1.3, n_seq=12, n_tok=48, n_local=sum(lengths))
    assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_unknown_loss_type_and_level_are_errors():
    logp, old, ref, adv, mask, _ = make_batch()
    with pytest.raises(ValueError, match="loss_type='ppo'"):
        grpo_loss(logp, old, ref, adv, mask, loss_type="ppo")
    with pytest.raises(ValueError, match="importance_sampling_level='seq'"):
        grpo_loss(logp, old, ref, adv, mask, importance_sampling_level="seq")


# --- advantage estimators


def python_std(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def reference_advantages(rewards, G, estimator, scale):
    groups = [rewards[k:k + G] for k in range(0, len(rewards), G)]
    batch_mean, batch_std = sum(rewards) / len(rewards), python_std(rewards)
    out = []
    for grp in groups:
        mean, std = sum(grp) / G, python_std(grp)
        for j, r in enumerate(grp):
            if estimator == "grpo":
                a = r - mean
            elif estimator == "rloo":
                a = r - (sum(grp) - r) / (G - 1)
            else:
                a = r - batch_mean
            if estimator == "reinforce_plus_plus":
                a = a if scale == "none" else a / (batch_std + 1e-4)
            elif scale == "group":
                a = a / (std + 1e-4)
            elif scale == "batch":
                a = a / (batch_std + 1e-4)
            if estimator != "reinforce_plus_plus" and std == 0:
                a = 0.0
            out.append(a)
    return out


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_plus_plus"])
@pytest.mark.parametrize("scale", [True, False, "group", "batch", "none", "false"])
def test_advantage_estimators_match_their_formulas(estimator, scale):
    rewards = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.3, 0.9, 0.1, 0.2]
    config = SimpleNamespace(advantage_estimator=estimator, scale_rewards=scale)
    adv, zero_std = advantages_for(config, torch.tensor(rewards), 4)
    mode = {True: "group", False: "none", "false": "none"}.get(scale, scale)
    want = reference_advantages(rewards, 4, estimator, mode)
    assert adv.tolist() == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert zero_std.tolist() == [False, True, False, False]
    if estimator == "rloo" and mode == "none":  # the leave-one-out baseline is G/(G-1) x the group one
        grpo, _ = advantages_for(SimpleNamespace(advantage_estimator="grpo", scale_rewards="none"),
                                 torch.tensor(rewards), 4)
        assert torch.allclose(adv, grpo * 4 / 3)


def test_informative_rows_are_the_groups_with_spread():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.5, 0.0])
    _, zero_std = group_advantages(rewards, 2)
    assert informative_rows(zero_std, 2).tolist() == [0, 1, 6, 7]


# --- rollout importance weights, truncation, overlong shaping


@pytest.mark.parametrize("mode", ["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"])
def test_rollout_importance_weights_match_their_definition(mode):
    _, old, _, _, mask, lengths = make_batch(seed=3)
    g = torch.Generator().manual_seed(6)
    sampler = old + torch.randn(old.shape, generator=g) * torch.tensor([0.05, 0.5, 1.5, 0.02, 1.0, 2.0])[:, None]
    cap = 2.0
    w = rollout_importance_weights(old, sampler, mask, mode, cap)
    assert w.shape == old.shape and not w.requires_grad
    seen = set()
    for i, n in enumerate(lengths):
        log_seq = sum(old[i][t].item() - sampler[i][t].item() for t in range(n))
        for t in range(n):
            raw = math.exp(log_seq if mode.startswith("sequence") else old[i][t].item() - sampler[i][t].item())
            if mode.endswith("truncate"):
                want = min(raw, cap)
            else:
                want = raw if 1 / cap <= raw <= cap else 0.0
            seen.add("capped" if raw > cap else "low" if raw < 1 / cap else "kept")
            assert w[i][t].item() == pytest.approx(want, rel=1e-5, abs=1e-7), (i, t)
        if mode.startswith("sequence"):
            assert len(set(w[i, :n].tolist())) == 1  # one weight per completion
    assert seen == {"capped", "low", "kept"}  # every branch is exercised
    if mode == "token_truncate":  # what the trainer computes today, bit for bit
        assert torch.equal(w, ((old - sampler) * mask).exp().clamp(max=cap))
    with pytest.raises(ValueError, match="importance_sampling_mode"):
        rollout_importance_weights(old, sampler, mask, "tis", cap)


def test_mask_truncated_completions_zeroes_their_rows_only():
    logp, old, ref, adv, mask, _ = make_batch()
    truncated = torch.tensor([False, True, False, False, True, False])
    before = mask.clone()
    masked = mask_truncated_completions(mask, truncated)
    assert torch.equal(mask, before)  # pure: the input is untouched
    assert (masked[truncated] == 0).all() and torch.equal(masked[~truncated], mask[~truncated])
    x = logp.clone().requires_grad_(True)
    grpo_loss(x, old, ref, adv, masked, beta=0.04)[0].backward()
    assert (x.grad[truncated] == 0).all() and (x.grad[~truncated][mask[~truncated].bool()] != 0).all()


def test_soft_overlong_penalty_is_dapos_piecewise_ramp():
    L_max, buf = 20, 8
    lengths = list(range(0, 25))
    got = soft_overlong_penalty(lengths, L_max, buf)
    for n, p in zip(lengths, got):
        # DAPO's soft overlong punishment as a clipped ramp: 0 before the buffer, -1 at and beyond the limit
        want = -1.0 if n > L_max else -min(max((n - (L_max - buf)) / buf, 0.0), 1.0)
        assert p == pytest.approx(want, abs=1e-12), n
    assert got[L_max - buf] == 0.0 and got[L_max] == -1.0 and got[L_max + 1] == -1.0
    assert soft_overlong_penalty(torch.tensor([12, 16]), L_max, buf) == got[12:17:4]
    with pytest.raises(ValueError, match="overlong_buffer_length"):
        soft_overlong_penalty([3], L_max, 0)


# --- config helpers and registries


def test_loss_options_carry_the_config_to_grpo_loss():
    logp, old, ref, adv, mask, _ = make_batch(seed=2)
    default = loss_options(make_config())
    assert default["loss_type"] == "grpo" and default["importance_sampling_level"] == "token"
    a, _ = grpo_loss(logp, old, ref, adv, mask, **default)
    b, _ = grpo_loss(logp, old, ref, adv, mask, max_completion_length=256)  # grpo_loss's own defaults
    assert torch.equal(a, b)
    c = make_config(overrides=dict(loss_type="cispo", epsilon_high=5.0, importance_sampling_level="sequence",
                                   top_entropy_quantile=0.2, entropy_coef=0.01, sapo_temperature_neg=2.0))
    opts = loss_options(c)
    assert (opts["loss_type"], opts["epsilon_high"], opts["importance_sampling_level"], opts["top_entropy_quantile"],
            opts["entropy_coef"], opts["sapo_temperature_neg"]) == ("cispo", 5.0, "sequence", 0.2, 0.01, 2.0)
    # a config-like without the new fields falls back to grpo_loss's defaults
    assert loss_options(SimpleNamespace(beta=0.0))["importance_sampling_level"] == "token"


def test_users_register_their_own_loss_and_estimator():
    @register_loss("test_plain_pg", aggregation="dapo")
    def plain_pg(ratio, adv, logprobs, options):
        return -ratio * adv  # no clip

    @register_advantage_estimator("test_max_baseline")
    def max_baseline(rewards, G, scale):
        grouped = rewards.view(-1, G)
        return (grouped - grouped.max(dim=1, keepdim=True).values).reshape(-1), (grouped == grouped[:, :1]).all(1)

    try:
        assert "test_plain_pg" in LOSS_TYPES and "test_max_baseline" in ADVANTAGE_ESTIMATORS
        logp, old, ref, adv, mask, lengths = make_batch()
        loss, stats = grpo_loss(logp, old, ref, adv, mask, beta=0.04, loss_type="test_plain_pg")
        want = 0.0
        for i, n in enumerate(lengths):
            for t in range(n):
                q = math.exp(ref[i][t].item() - logp[i][t].item())
                want += -math.exp(logp[i][t].item() - old[i][t].item()) * adv[i].item() + 0.04 * (q - math.log(q) - 1)
        assert loss.item() == pytest.approx(want / sum(lengths), rel=1e-5)
        assert stats["clipped_low"].item() == 0 and stats["clipped_high"].item() == 0
        c = make_config(overrides=dict(loss_type="test_plain_pg", advantage_estimator="test_max_baseline"))
        adv2, _ = advantages_for(c, torch.tensor([1.0, 3.0, 2.0, 2.0]), 2)
        assert adv2.tolist() == [-2.0, 0.0, 0.0, 0.0]
        with pytest.raises(ValueError, match="already registered"):
            register_loss("test_plain_pg")(plain_pg)
        with pytest.raises(ValueError, match="unknown aggregation"):
            register_loss("test_other", aggregation="mean_of_means")
    finally:
        LOSSES.pop("test_plain_pg", None)
        ADVANTAGE_ESTIMATORS.pop("test_max_baseline", None)
    assert "test_plain_pg" not in LOSS_TYPES


@pytest.mark.parametrize("option,value", [
    ("loss_type", "ppo"), ("advantage_estimator", "gae"), ("importance_sampling_level", "seq"),
    ("importance_sampling_mode", "tis"), ("scale_rewards", "std"), ("top_entropy_quantile", 1.5),
    ("sapo_temperature_neg", 0.0), ("overlong_buffer_length", 999), ("max_resample_rounds", -1),
])
def test_config_rejects_bad_settings_naming_the_option(option, value):
    with pytest.raises(ConfigError) as e:
        make_config(overrides={option: value})
    message = str(e.value)
    assert message.startswith(f"{option}=") and "\n" not in message


def test_config_accepts_every_registered_name_and_the_boolean_scales():
    for name in LOSS_TYPES:
        make_config(overrides=dict(loss_type=name, epsilon_high=5.0 if name == "cispo" else None))
    for name in ADVANTAGE_ESTIMATORS:
        make_config(overrides=dict(advantage_estimator=name))
    for value in (True, False, "group", "batch", "none"):
        assert make_config(overrides=dict(scale_rewards=value)).scale_rewards == value
    with pytest.raises(ConfigError, match="^epsilon_high=0.2: loss_type=cispo"):
        make_config(overrides=dict(loss_type="cispo"))


def test_cli_rejects_a_bad_algorithm_name_with_one_line():
    from tests.conftest import run_cli

    result = run_cli("grpo", "--advantage_estimator", "gae")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "advantage_estimator='gae'" in lines[0], result.stderr


# --- the paper's loss on one screen (algorithms/reference.py) against the registry-driven loss


@pytest.mark.parametrize("beta,epsilon", [(0.001, 0.2), (0.04, 0.1), (0.0, 0.3)])
def test_the_one_screen_reference_loss_equals_the_library_loss(beta, epsilon):
    from r1kit.algorithms.advantages import group_advantages
    from r1kit.algorithms.reference import compute_pg_loss

    logp, old, ref, _, mask, _ = make_batch(seed=7)
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 2.0, 2.0])  # two groups of 3; the second has no spread
    lp_a, lp_b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    ours = compute_pg_loss(lp_a, old, ref, rewards, mask, group_size=3, beta=beta, epsilon=epsilon)
    adv, _ = group_advantages(rewards, 3)
    lib, _ = grpo_loss(lp_b, old, ref, adv, mask, beta=beta, epsilon=epsilon)
    ours.backward()
    lib.backward()
    assert torch.allclose(ours, lib, atol=1e-6), (ours, lib)
    assert torch.allclose(lp_a.grad, lp_b.grad, atol=1e-6)
    assert lp_a.grad[mask == 0].abs().max() == 0  # padding gets no gradient
