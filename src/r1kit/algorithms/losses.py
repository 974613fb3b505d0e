"""The GRPO family as pure tensor functions: advantage estimators, per-token policy losses, their
aggregation, importance-sampling corrections and reward/mask shaping. docs/algorithms.md gives each
option's formula and paper.

The default objective (DeepSeekMath Eq. 3, used by DeepSeek-R1 Eq. 1-3), for a group of G outputs o_i of
a question q sampled from pi_old:

    J = 1/G sum_i 1/|o_i| sum_t [ min(r_it A_i, clip(r_it, 1-eps_low, 1+eps_high) A_i) - beta * D_it ]
    r_it = pi_theta(o_it | q, o_i<t) / pi_old(o_it | q, o_i<t)
    D_it = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1          (the k3 estimator: unbiased, >= 0)
    A_i  = (R_i - mean(R)) / std(R)                            (within the group)

The loss is -J. The R1 paper writes the ratio at the level of whole outputs; the per-token form with the
1/|o_i| mean is how DeepSeekMath defines and implements GRPO and is the default here (loss_type="grpo",
importance_sampling_level="token"). Every variant is an option, never a silent change of that default.

Design, as verl's core_algos: three registries of pure functions, each extensible by a decorator.
- ADVANTAGE_ESTIMATORS (`register_advantage_estimator`): rewards [N], G, scale -> (advantages [N],
  zero_std [N // G]).
- LOSSES (`register_loss`): a loss type is a per-token policy term (ratio, advantages, log-probs ->
  per-token loss and where a clip is active) paired with the name of an aggregation.
- AGGREGATIONS (`register_aggregation`): how a per-token loss becomes a scalar (grpo, bnpo, dapo,
  dr_grpo). Every aggregation is linear in the per-token loss and takes its normalisers from the caller,
  so a batch split into micro-batches, or across processes, sums to exactly the loss of the whole batch.
The KL term, importance weights, entropy selection and the entropy bonus are applied by `grpo_loss`
around the term, identically for every loss type.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")

# ---------------------------------------------------------------------------------------------------------
# per-token policy terms and their aggregation


@dataclass(frozen=True)
class LossOptions:
    """What a per-token policy term may read (a user's term reads what it needs)."""

    epsilon: float = 0.2
    epsilon_high: float = 0.2
    sapo_temperature_pos: float = 1.0
    sapo_temperature_neg: float = 1.05


@dataclass(frozen=True)
class Normalisers:
    """The whole batch's counts, passed in so micro-batches sum to the batch's loss."""

    num_sequences: int  # completions in the global batch (all processes)
    num_tokens: Tensor | float  # completion tokens in the global batch (all processes)
    num_local_tokens: Tensor | float  # completion tokens in this process's batch (all its micro-batches)
    max_completion_length: int | None


# ratio [N, T] (token level) or [N, 1] (sequence level), advantages [N, 1], log-probs [N, T] (0 on padding)
# -> per-token loss [N, T] or [N, 1], and bool masks of where a lower / upper clip is active (or None)
PolicyTerm = Callable[[Tensor, Tensor, Tensor, LossOptions], "tuple[Tensor, Tensor | None, Tensor | None] | Tensor"]
Aggregation = Callable[[Tensor, Tensor, Normalisers], Tensor]


@dataclass(frozen=True)
class PolicyLoss:
    term: PolicyTerm
    aggregation: str


LOSSES: dict[str, PolicyLoss] = {}
LOSS_TYPES = LOSSES.keys()  # a live view: losses registered later are valid loss_type values too
AGGREGATIONS: dict[str, Aggregation] = {}


def register_aggregation(name: str) -> Callable[[Aggregation], Aggregation]:
    """Decorator: `fn(per_token_loss [N, T], mask [N, T], normalisers) -> scalar`. Keep it linear in the
    per-token loss with normalisers from `Normalisers`, so micro-batches add up to the batch."""
    def decorate(fn: Aggregation) -> Aggregation:
        if name in AGGREGATIONS:
            raise ValueError(f"aggregation {name!r} is already registered")
        AGGREGATIONS[name] = fn
        return fn
    return decorate


def register_loss(name: str, aggregation: str = "dapo") -> Callable[[PolicyTerm], PolicyTerm]:
    """Decorator: `term(ratio, advantages, logprobs, options) -> per-token loss` becomes `loss_type: name`,
    aggregated by `aggregation` (a name in AGGREGATIONS). The term may also return (loss, clipped_low,
    clipped_high) bool masks for the clip statistics. The KL term, importance weights and entropy options
    are added by grpo_loss for every loss type."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"register_loss({name!r}): unknown aggregation {aggregation!r}; "
                         f"known: {', '.join(AGGREGATIONS)}")

    def decorate(term: PolicyTerm) -> PolicyTerm:
        if name in LOSSES:
            raise ValueError(f"loss type {name!r} is already registered")
        LOSSES[name] = PolicyLoss(term, aggregation)
        return term
    return decorate


@register_aggregation("grpo")
def aggregate_sequence_mean(per_token_loss: Tensor, mask: Tensor, n: Normalisers) -> Tensor:
    """Per-output token mean, then the mean over outputs (DeepSeekMath's 1/G sum_i 1/|o_i| sum_t)."""
    lengths = mask.sum(dim=1).clamp(min=1)  # [N]
    return ((per_token_loss * mask).sum(dim=1) / lengths).sum() / n.num_sequences


@register_aggregation("bnpo")
def aggregate_local_tokens(per_token_loss: Tensor, mask: Tensor, n: Normalisers) -> Tensor:
    """Sum over tokens / this process's batch's completion tokens (TRL's bnpo normalises per micro-batch;
    here the process's whole batch, so gradient accumulation does not change the loss). One process: = dapo."""
    return (per_token_loss * mask).sum() / n.num_local_tokens


@register_aggregation("dapo")
def aggregate_global_tokens(per_token_loss: Tensor, mask: Tensor, n: Normalisers) -> Tensor:
    """Sum over tokens / the global batch's completion tokens (DAPO's token-level loss, TRL's dapo)."""
    return (per_token_loss * mask).sum() / n.num_tokens


@register_aggregation("dr_grpo")
def aggregate_constant(per_token_loss: Tensor, mask: Tensor, n: Normalisers) -> Tensor:
    """Sum over tokens / (N x max_completion_length), a constant (Dr. GRPO: no length bias)."""
    if n.max_completion_length is None:
        raise ValueError("loss_type=dr_grpo needs max_completion_length")
    return (per_token_loss * mask).sum() / (n.num_sequences * n.max_completion_length)


def clipped_term(ratio: Tensor, adv: Tensor, logprobs: Tensor, o: LossOptions) -> tuple[Tensor, Tensor, Tensor]:
    """PPO's clipped surrogate, -min(r A, clip(r, 1-eps, 1+eps_high) A): no gradient beyond the clip edge
    in the advantage's direction."""
    unclipped = ratio * adv  # [N, T]
    clipped = torch.clamp(ratio, 1 - o.epsilon, 1 + o.epsilon_high) * adv  # [N, T]
    low = (ratio < 1 - o.epsilon) & (adv < 0)  # [N, T] the clip is active below
    high = (ratio > 1 + o.epsilon_high) & (adv > 0)  # [N, T] the clip is active above
    return -torch.min(unclipped, clipped), low, high


for _name in ("grpo", "bnpo", "dapo", "dr_grpo"):
    register_loss(_name, aggregation=_name)(clipped_term)


@register_loss("cispo", aggregation="dapo")
def cispo_term(ratio: Tensor, adv: Tensor, logprobs: Tensor, o: LossOptions) -> tuple[Tensor, Tensor, Tensor]:
    """CISPO (MiniMax-M1): -sg(min(r, eps_high)) A log pi_theta. The importance weight is capped and
    detached instead of the update being clipped, so every token keeps a gradient; epsilon_high is the cap
    itself (TRL suggests 5.0), not an offset from 1."""
    weight = torch.clamp(ratio, max=o.epsilon_high).detach()  # [N, T]
    high = (ratio > o.epsilon_high).expand_as(logprobs)  # [N, T] the cap is active
    return -weight * adv * logprobs, torch.zeros_like(high), high


@register_loss("sapo", aggregation="grpo")
def sapo_term(ratio: Tensor, adv: Tensor, logprobs: Tensor, o: LossOptions) -> Tensor:
    """SAPO: -A * 4/tau * sigmoid(tau (r - 1)), a smooth gate in place of the hard clip (gradient weight
    4 s(1-s) r: 1 at r = 1, decaying off-policy); tau_pos for A > 0, tau_neg otherwise. Aggregated as grpo,
    as TRL does."""
    tau = torch.where(adv > 0, o.sapo_temperature_pos, o.sapo_temperature_neg)  # [N, 1]
    gate = torch.sigmoid(tau * (ratio - 1)) * 4 / tau  # [N, T]
    return -gate * adv


# ---------------------------------------------------------------------------------------------------------
# the loss


def kl_k3(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref): pi_ref/pi_theta - log(pi_ref/pi_theta) - 1 >= 0."""
    log_ratio = ref_logprobs - logprobs  # log(pi_ref / pi_theta)
    return torch.exp(log_ratio) - log_ratio - 1


def policy_ratio(logprobs: Tensor, old_logprobs: Tensor, mask: Tensor, level: str = "token") -> Tensor:
    """pi_theta / pi_old per token [N, T], or per sequence [N, 1] as GSPO defines it: the exponential of the
    mean token log-ratio, (pi_theta(o|q) / pi_old(o|q))^(1/|o|), with gradient through every token."""
    # log-ratios are zeroed on padding before exp(): padded positions can hold any value, and inf * 0 = NaN
    log_ratio = (logprobs - old_logprobs) * mask  # [N, T]
    if level == "token":
        return torch.exp(log_ratio)  # [N, T]
    if level == "sequence":
        return torch.exp(log_ratio.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1))  # [N, 1]
    raise ValueError(f"importance_sampling_level={level!r}: choose token or sequence")


def top_entropy_threshold(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """The entropy at or above which a token is among the top `quantile` fraction of the unmasked tokens
    (torch.quantile of the entropies at 1 - quantile, linear interpolation). Compute it over the whole
    batch (gathered over processes) and pass it to every micro-batch's grpo_loss for a batch-wide selection."""
    values = entropy.detach()[mask.bool()].float()  # [M]
    if values.numel() == 0:
        return torch.tensor(float("inf"), device=entropy.device)
    return torch.quantile(values, 1.0 - quantile)


def _loss_spec(loss_type: str) -> PolicyLoss:
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type={loss_type!r}: choose one of {', '.join(LOSS_TYPES)}")
    return LOSSES[loss_type]


def _term_output(out: Any, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A term's per-token loss and clip masks, broadcast to [N, T] (a term may return the loss alone)."""
    loss, low, high = out if isinstance(out, tuple) else (out, None, None)
    zeros = torch.zeros_like(like, dtype=torch.bool)
    low = zeros if low is None else low.expand_as(like)
    high = zeros if high is None else high.expand_as(like)
    return loss, low, high


def grpo_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor | None, advantages: Tensor,
              mask: Tensor, *, beta: float = 0.001, epsilon: float = 0.2, epsilon_high: float | None = None,
              loss_type: str = "grpo", max_completion_length: int | None = None,
              num_sequences: int | None = None, num_tokens: float | None = None,
              importance_weights: Tensor | None = None, importance_sampling_level: str = "token",
              sapo_temperature_pos: float = 1.0, sapo_temperature_neg: float = 1.05,
              entropy: Tensor | None = None, top_entropy_quantile: float = 1.0,
              entropy_threshold: float | Tensor | None = None, entropy_coef: float = 0.0,
              num_local_tokens: float | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The policy loss of a batch of completions and token sums for the step's statistics.

    logprobs, old_logprobs, ref_logprobs, mask: [N, T]; advantages: [N], or [N, T] with one advantage per
    token (process supervision, algorithms.advantages.process_advantages). `num_sequences` / `num_tokens`
    are the whole batch's counts over all processes, `num_local_tokens` this process's batch's tokens,
    when this is one micro-batch of it (defaults: this call's own).
    loss_type: a name in LOSS_TYPES (its term and aggregation); importance_sampling_level: token | sequence
    (GSPO; with loss_type grpo the R1 paper's Eq. 1 read literally, length-normalised).
    importance_weights [N, T] (no gradient) multiply each token's loss, the KL term included: the samples
    came from a slightly different sampler than pi_old (see rollout_importance_weights).
    top_entropy_quantile q < 1 keeps the policy term only on tokens whose `entropy` [N, T] is at least
    `entropy_threshold`; without a threshold it is taken over this call's tokens, so with micro-batches
    pass top_entropy_threshold(...) of the whole batch. The KL term stays on every token; normalisers are
    unchanged. entropy_coef > 0 subtracts coef * entropy per token (an entropy bonus; entropy must carry
    its gradient).
    Returns (loss, stats) where stats hold detached sums over unmasked tokens: kl, clipped_low,
    clipped_high, the token count, and entropy_selected (tokens the entropy selection kept).
    """
    spec = _loss_spec(loss_type)
    mask = mask.to(logprobs.dtype)  # [N, T]
    options = LossOptions(epsilon, epsilon if epsilon_high is None else epsilon_high,
                          sapo_temperature_pos, sapo_temperature_neg)
    ratio = policy_ratio(logprobs, old_logprobs, mask, importance_sampling_level)  # [N, T] or [N, 1]
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # [N, 1], or [N, T] (process supervision)
    per_token_loss, low, high = _term_output(spec.term(ratio, adv, logprobs * mask, options), mask)  # [N, T]
    selected = mask
    if top_entropy_quantile < 1.0:
        if entropy is None:
            raise ValueError("top_entropy_quantile < 1 needs the per-token entropy")
        threshold = (top_entropy_threshold(entropy, mask, top_entropy_quantile) if entropy_threshold is None
                     else entropy_threshold)
        selected = (entropy.detach() >= threshold).to(mask.dtype) * mask  # [N, T]
        per_token_loss = per_token_loss * selected
    kl = kl_k3(logprobs * mask, ref_logprobs * mask) if ref_logprobs is not None else torch.zeros_like(logprobs)  # [N, T]
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * kl  # [N, T]
    if importance_weights is not None:
        per_token_loss = per_token_loss * importance_weights.detach()  # [N, T]
    if entropy_coef != 0.0:
        if entropy is None or (logprobs.requires_grad and not entropy.requires_grad):
            raise ValueError("entropy_coef needs the per-token entropy with its gradient")
        per_token_loss = per_token_loss - entropy_coef * entropy  # [N, T]

    norm = Normalisers(
        num_sequences=logprobs.shape[0] if num_sequences is None else num_sequences,
        num_tokens=mask.sum().clamp(min=1) if num_tokens is None else num_tokens,
        num_local_tokens=mask.sum().clamp(min=1) if num_local_tokens is None else num_local_tokens,
        max_completion_length=max_completion_length)
    loss = AGGREGATIONS[spec.aggregation](per_token_loss.expand_as(mask), mask, norm)

    with torch.no_grad():
        stats = {
            "kl": (kl.detach() * mask).sum(),
            "clipped_low": (low.to(mask.dtype) * mask).sum(),
            "clipped_high": (high.to(mask.dtype) * mask).sum(),
            "tokens": mask.sum(),
            "entropy_selected": selected.sum(),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------------------
# rollout-engine mismatch, truncation and length shaping


def loss_options(o: Any, **given: Any) -> dict[str, Any]:
    """The grpo_loss keywords of a run from its AlgorithmOptions (any object with those names; one it lacks
    keeps grpo_loss's default), `given` on top (max_completion_length, which sampling owns). The
    per-micro-batch ones (normalisers, weights, entropy, threshold) are the step's."""
    keys = ("beta", "epsilon", "epsilon_high", "loss_type", "importance_sampling_level", "sapo_temperature_pos",
            "sapo_temperature_neg", "top_entropy_quantile", "entropy_coef")
    defaults = inspect.signature(grpo_loss).parameters
    return {**{k: getattr(o, k, defaults[k].default) for k in keys}, **given}
