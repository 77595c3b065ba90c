"""The decoupled contrastive loss, DCL (Yeh et al. 2022, arXiv:2110.06848, Eq. 6): NT-Xent without
the positive pair in the denominator.

For anchor view i with positive p(i) among the 2N views: -s(i, p(i))/t + log sum over the 2N - 2
negatives (every view of the other images) of exp(s(i, k)/t), with s the cosine similarity; the mean
over all 2N anchors, as simclr-ablations' own losses are reduced. (lightly's DCLLoss,
lightly-ai/lightly@30b2e45 lightly/loss/dcl_loss.py ``DCLLoss._loss``, adds two log-sum-exps, one
per view, instead of one over all negatives.)
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F


def dcl_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """DCL of the pairs (z1[i], z2[i]), (N, D) each, at ``temperature``."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    idx = torch.arange(2 * n, device=z.device)
    positive = idx.roll(n)
    negatives = (idx[:, None] != idx[None, :]) & (idx[None, :] != positive[:, None])
    pos = sim[idx, positive]
    neg = torch.logsumexp(sim.masked_fill(~negatives, float("-inf")), dim=1)
    return (neg - pos).mean()


def dcl(params: dict[str, Any]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Factory (entry point): ``loss.params`` takes ``temperature`` (default 0.5, as the CIFAR base)."""
    unknown = set(params) - {"temperature"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; dcl takes temperature")
    temperature = float(params.get("temperature", 0.5))
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return lambda z1, z2: dcl_loss(z1, z2, temperature)
