"""The losses against hand-made cases and against independent, loop-by-loop implementations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_flatten

from core.config import LossConfig
from core.losses import contrastive_accuracy, loss_from_config, margin_triplet, nt_logistic, nt_xent
from tests.dispatch import RecordOps


def _views(z1: torch.Tensor, z2: torch.Tensor, normalize: bool = True) -> list[list[float]]:
    z = torch.cat([z1, z2]).double()
    if normalize:
        z = z / z.norm(dim=1, keepdim=True)
    return z.tolist()


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _neighbours(i: int, n: int, one_view: bool) -> tuple[int, list[int]]:
    """Positive index and negative indices of anchor i among 2n views (written out, no masks)."""
    pos = i + n if i < n else i - n
    negs = []
    for j in range(2 * n):
        if j in (i, pos):
            continue
        if one_view and (j < n) == (i < n):
            continue
        negs.append(j)
    return pos, negs


def reference_loss(kind: str, z1, z2, tau=0.5, margin=0.4, normalize=True, one_view=False, semi_hard=False) -> float:
    """The paper's Table 2 formulas evaluated anchor by anchor in double precision."""
    v = _views(z1, z2, normalize)
    n = len(v) // 2
    total = 0.0
    for i in range(2 * n):
        pos, negs = _neighbours(i, n, one_view)
        s_pos = _dot(v[i], v[pos])
        s_negs = [_dot(v[i], v[j]) for j in negs]
        if semi_hard:
            s_negs = [s for s in s_negs if s < s_pos]
        if kind == "nt_xent":
            denom = math.exp(s_pos / tau) + sum(math.exp(s / tau) for s in s_negs)
            total += -math.log(math.exp(s_pos / tau) / denom)
        elif kind == "nt_logistic":
            sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
            neg = sum(-math.log(sig(-s / tau)) for s in s_negs) / max(1, len(s_negs))
            total += -math.log(sig(s_pos / tau)) + neg
        else:
            total += sum(max(s - s_pos + margin, 0.0) for s in s_negs) / max(1, len(s_negs))
    return total / (2 * n)


def tf_simclr_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """google-research/simclr's add_contrastive_loss (both directions summed), rewritten in torch."""
    h1, h2 = F.normalize(z1.double(), dim=1), F.normalize(z2.double(), dim=1)
    n = h1.shape[0]
    large = 1e9
    eye = torch.eye(n, dtype=torch.double)
    logits_aa = h1 @ h1.T / tau - large * eye
    logits_bb = h2 @ h2.T / tau - large * eye
    logits_ab = h1 @ h2.T / tau
    logits_ba = h2 @ h1.T / tau
    labels = torch.arange(n)
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)
    return loss_a + loss_b


@pytest.fixture
def random_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(6, 5, generator=g, dtype=torch.double), torch.randn(6, 5, generator=g, dtype=torch.double)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("one_view", [False, True])
@pytest.mark.parametrize("semi_hard", [False, True])
@pytest.mark.parametrize("kind", ["nt_xent", "nt_logistic", "margin_triplet"])
def test_losses_equal_reference_on_random_inputs(random_pair, kind, normalize, one_view, semi_hard):
    z1, z2 = random_pair
    if not normalize:
        z1, z2 = z1 * 0.3, z2 * 0.3
    fn = {"nt_xent": nt_xent, "nt_logistic": nt_logistic, "margin_triplet": margin_triplet}[kind]
    negatives = "one_view" if one_view else "both_views"
    kwargs = dict(normalize=normalize, negatives=negatives, semi_hard=semi_hard)
    if kind == "margin_triplet":
        got = fn(z1, z2, margin=0.7, **kwargs)
        want = reference_loss(kind, z1, z2, margin=0.7, normalize=normalize, one_view=one_view, semi_hard=semi_hard)
    else:
        got = fn(z1, z2, temperature=0.3, **kwargs)
        want = reference_loss(kind, z1, z2, tau=0.3, normalize=normalize, one_view=one_view, semi_hard=semi_hard)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n,tau", [(2, 0.5), (4, 0.1), (8, 1.0)])
def test_nt_xent_identical_pairs_orthogonal_negatives(n, tau):
    e = torch.eye(n, 8)
    # positive similarity 1, all 2n-2 negatives 0: loss = log(1 + (2n-2) e^{-1/tau})
    assert nt_xent(e, e, temperature=tau).item() == pytest.approx(
        math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-5, abs=1e-6
    )
    # one view of negatives: n-1 of them
    got = nt_xent(e, e, temperature=tau, negatives="one_view").item()
    assert got == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / tau)), rel=1e-5, abs=1e-6)


def test_nt_xent_collapsed_embeddings_is_log_2n_minus_1():
    z = torch.ones(5, 3)
    assert nt_xent(z, z, temperature=0.2).item() == pytest.approx(math.log(9), rel=1e-5)


def test_nt_xent_is_half_of_google_research_value(random_pair):
    z1, z2 = random_pair
    ours = nt_xent(z1, z2, temperature=0.5)
    assert (2 * ours).item() == pytest.approx(tf_simclr_loss(z1, z2, 0.5).item(), rel=1e-6)


def test_nt_xent_gradients_match_google_research(random_pair):
    a1, a2 = (t.clone().requires_grad_(True) for t in random_pair)
    b1, b2 = (t.clone().requires_grad_(True) for t in random_pair)
    (2 * nt_xent(a1, a2, temperature=0.2)).backward()
    tf_simclr_loss(b1, b2, 0.2).backward()
    torch.testing.assert_close(a1.grad, b1.grad)
    torch.testing.assert_close(a2.grad, b2.grad)


def test_nt_xent_stable_at_tiny_temperature():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    value = nt_xent(z1, z2, temperature=1e-3)
    assert torch.isfinite(value)


def test_semi_hard_drops_negatives_harder_than_the_positive():
    # anchor 0's positive has similarity 0.6; image 1 in view 2 is identical to the anchor (harder)
    a = torch.tensor([1.0, 0.0])
    p = torch.tensor([0.6, 0.8])
    far = torch.tensor([0.0, -1.0])
    z1 = torch.stack([a, far])
    z2 = torch.stack([p, a])
    full = nt_xent(z1, z2, temperature=1.0, negatives="one_view")
    mined = nt_xent(z1, z2, temperature=1.0, negatives="one_view", semi_hard=True)
    # anchor 0 (a, view 1): positive p (0.6); its one-view negative z2[1] = a has similarity 1 > 0.6: dropped.
    # anchor 3 (a, view 2): positive far (0.0); its negative z1[0] = a has similarity 1 > 0: dropped.
    # anchors 1 and 2 keep their negative (similarity -0.8 < their positive's).
    anchor0 = math.log(math.exp(0.6) + math.exp(1.0)) - math.log(math.exp(0.6))
    anchor3 = math.log(math.exp(0.0) + math.exp(1.0)) - math.log(math.exp(0.0))
    assert (full - mined).item() * 4 == pytest.approx(anchor0 + anchor3, rel=1e-5)


def test_nt_logistic_and_margin_on_hand_made_case():
    e = torch.eye(3)
    tau = 0.5
    expected = -math.log(1 / (1 + math.exp(-1 / tau))) + math.log(2)
    assert nt_logistic(e, e, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    assert margin_triplet(e, e, margin=0.4).item() == pytest.approx(0.0, abs=1e-7)
    assert margin_triplet(e, e, margin=1.5).item() == pytest.approx(0.5, rel=1e-6)


def test_contrastive_accuracy():
    e = torch.eye(4)
    assert contrastive_accuracy(e, e).item() == 1.0
    # swap the second view's rows: every anchor's nearest other view is now a negative
    assert contrastive_accuracy(e, e[[1, 0, 3, 2]]).item() == 0.0


def test_loss_from_config_dispatch_and_bad_shapes(random_pair):
    z1, z2 = random_pair
    for name in ("nt_xent", "nt_logistic", "margin_triplet"):
        assert torch.isfinite(loss_from_config(LossConfig(name=name), z1, z2))
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z1, z2[:3])
    with pytest.raises(ValueError, match="at least 2"):
        nt_xent(z1[:1], z2[:1])


def _touches_the_host(func, args, kwargs, out) -> bool:
    """Whether an op takes or makes a tensor on the CPU."""
    leaves = [*tree_flatten((args, kwargs))[0], *tree_flatten(out)[0]]
    return any(isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in leaves)


@pytest.mark.parametrize("name", ["nt_xent", "nt_logistic", "margin_triplet"])
@pytest.mark.parametrize("negatives", ["both_views", "one_view"])
def test_losses_make_no_host_tensor_when_the_projections_are_on_a_device(name, negatives):
    # A host tensor in the loss is a host-device copy, which on CUDA stalls the host every step
    # (found by benchmarks/gpu_sync_check.py on an H200: the positives' index was built on the CPU
    # and the negative mask was written by index assignment of a Python scalar). The 'meta' device
    # stands in for the GPU: nothing may touch the CPU.
    z1, z2 = torch.empty(8, 4, device="meta"), torch.empty(8, 4, device="meta")
    cfg = LossConfig(name=name, negatives=negatives, semi_hard=name != "nt_xent")
    with RecordOps(_touches_the_host) as mode:
        loss_from_config(cfg, z1, z2)
        contrastive_accuracy(z1, z2)
    assert mode.seen == []
