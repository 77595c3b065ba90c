"""Contrastive objectives of the paper's Table 2, as pure functions of two batches of projections.

All losses take ``z1, z2`` of shape (N, D): row i of ``z1`` and row i of ``z2`` are the two views of
image i. Every one of the 2N views is an anchor; its positive is the other view of the same image and
its negatives are the 2N - 2 views of the other images (``negatives="both_views"``), or only the N - 1
views of the other images in the *other* view (``negatives="one_view"``, the paper's footnote 8 setting
used for Table 4). Losses are averaged over the 2N anchors.

Scale convention: every loss is the mean over all 2N anchors. google-research/simclr adds the two
directions (each a mean over N anchors), so its loss is exactly twice ours; ``loss.reduction:
sum_directions`` (``loss_from_config``) trains on that sum, whose gradient is twice ours too.

Semi-hard negative mining (Schroff et al. 2015, as the paper's Table 4 uses it): an anchor keeps only
the negatives that are less similar to it than its positive, s(a, n) < s(a, p). An anchor with no such
negative keeps only its positive term.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from core.config import LossConfig

Negatives = Literal["both_views", "one_view"]


def similarities(z1: torch.Tensor, z2: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (sim, positive_index): the (2N, 2N) similarity matrix of all views and each anchor's positive.

    Half-precision inputs are promoted to float32: logits at a low temperature lose too much in bf16.
    """
    z = torch.cat([z1, z2], dim=0)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    if normalize:
        z = F.normalize(z, dim=1)
    n = z1.shape[0]
    # built on the device: a host tensor copied over would be a host-device sync every step
    positive = torch.arange(2 * n, device=z.device).roll(n)
    return z @ z.T, positive


def negative_mask(
    n: int, positive: torch.Tensor, negatives: Negatives, device: torch.device
) -> torch.Tensor:
    """Boolean (2N, 2N) mask of each anchor's negatives (self and positive excluded)."""
    two_n = 2 * n
    idx = torch.arange(two_n, device=device)
    # comparisons, not index assignment: assigning a Python scalar copies it from the host (a sync)
    mask = (idx[:, None] != idx[None, :]) & (idx[None, :] != positive[:, None])
    if negatives == "one_view":
        view = idx // n
        mask &= view[:, None] != view[None, :]
    return mask


def _pairs(
    z1: torch.Tensor, z2: torch.Tensor, normalize: bool, negatives: Negatives, semi_hard: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared setup: (sim, positive similarity per anchor (2N,), negative mask (2N, 2N))."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"expected two (N, D) batches of the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 images per batch (there are no negatives)")
    sim, positive = similarities(z1, z2, normalize)
    pos_sim = sim.gather(1, positive[:, None]).squeeze(1)
    mask = negative_mask(z1.shape[0], positive, negatives, sim.device)
    if semi_hard:
        mask &= sim < pos_sim[:, None]
    return sim, pos_sim, mask


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    normalize: bool = True,
    negatives: Negatives = "both_views",
    semi_hard: bool = False,
) -> torch.Tensor:
    """NT-Xent: -log( exp(s+/t) / (exp(s+/t) + sum_neg exp(s-/t)) ), mean over the 2N anchors."""
    sim, pos_sim, mask = _pairs(z1, z2, normalize, negatives, semi_hard)
    logits = (sim / temperature).masked_fill(~mask, float("-inf"))
    # positive in the denominator: log-sum-exp over {positive} U negatives
    denominator = torch.logsumexp(torch.cat([logits, (pos_sim / temperature)[:, None]], dim=1), dim=1)
    return (denominator - pos_sim / temperature).mean()


def nt_logistic(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
    normalize: bool = True,
    negatives: Negatives = "both_views",
    semi_hard: bool = False,
) -> torch.Tensor:
    """NT-Logistic: -log sigma(s+/t) - mean_neg log sigma(-s-/t), mean over anchors.

    The negative term is averaged over each anchor's negatives so that one positive and many negatives
    weigh equally (the paper's Table 2 writes the objective for one positive and one negative).
    """
    sim, pos_sim, mask = _pairs(z1, z2, normalize, negatives, semi_hard)
    positive_term = -F.logsigmoid(pos_sim / temperature)
    negative_terms = -F.logsigmoid(-sim / temperature)
    negative_term = _masked_mean(negative_terms, mask)
    return (positive_term + negative_term).mean()


def margin_triplet(
    z1: torch.Tensor,
    z2: torch.Tensor,
    margin: float = 0.4,
    normalize: bool = True,
    negatives: Negatives = "both_views",
    semi_hard: bool = False,
) -> torch.Tensor:
    """Margin triplet: mean_neg max(s- - s+ + m, 0), mean over anchors (Table 2, as a loss to minimise)."""
    sim, pos_sim, mask = _pairs(z1, z2, normalize, negatives, semi_hard)
    hinge = torch.clamp(sim - pos_sim[:, None] + margin, min=0)
    return _masked_mean(hinge, mask).mean()


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise mean of ``values`` over ``mask``; 0 for a row with nothing selected."""
    total = (values * mask).sum(dim=1)
    count = mask.sum(dim=1)
    return total / count.clamp(min=1)


def contrastive_accuracy(z1: torch.Tensor, z2: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Fraction of the 2N anchors whose most similar other view is their positive (Table 5's column)."""
    sim, positive = similarities(z1, z2, normalize)
    sim = sim.detach().clone()
    sim.fill_diagonal_(float("-inf"))
    return (sim.argmax(dim=1) == positive).float().mean()


REDUCTION_FACTOR = {"mean": 1.0, "sum_directions": 2.0}
"""``loss.reduction`` as a factor on the mean over 2N anchors: the sum of the two directions' means
(view 1's anchors against all views, plus view 2's) is twice the mean over both."""


def builtin_loss(cfg: LossConfig, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The built-in objective ``cfg.name`` with the config's settings, as the mean over 2N anchors."""
    common = dict(normalize=cfg.normalize, negatives=cfg.negatives, semi_hard=cfg.semi_hard)
    if cfg.name == "nt_xent":
        return nt_xent(z1, z2, temperature=cfg.temperature, **common)
    if cfg.name == "nt_logistic":
        return nt_logistic(z1, z2, temperature=cfg.temperature, **common)
    if cfg.name == "margin_triplet":
        return margin_triplet(z1, z2, margin=cfg.margin, **common)
    raise ValueError(f"{cfg.name!r} is not a built-in loss")


def loss_from_config(cfg: LossConfig, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """``cfg``'s loss (a built-in or a plugin) of one pair of batches, reduced as ``cfg.reduction`` says;
    a training loop builds it once with ``core.components.build_loss`` instead."""
    from core.components import build_loss

    return build_loss(cfg)(z1, z2)
