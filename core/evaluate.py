"""Evaluation protocols for a frozen encoder: weighted kNN and offline linear evaluation.

Every number comes back as an ``Accuracy`` that carries the sentence describing
the protocol that produced it, so a table can never mix up "kNN top-1" with
"linear top-1" or hide which k, temperature or optimizer settings were used.

Top-k with fewer than k classes: "top5" is top-min(5, num_classes) and the
``Accuracy.name`` says so (``knn_top4`` for 4 classes), because a top-5 over
4 classes would be a trivial 100%.

Memory, for a million images: images are read and encoded one batch (``eval.batch_size``) at a time,
from memory or from the memory-mapped store (read ahead in a thread, ``core.data.prefetch``), into
one preallocated (N, D) float32 array per split on the evaluation device (2.6 GB for 1.28M
ResNet-18/512-d features, 10.5 GB at 2048-d). The kNN monitor never forms a test x train matrix:
``QUERY_CHUNK`` queries at a time are compared with ``BANK_BLOCK`` bank features at a time (128 MiB
of similarities), normalising each block as it goes (a bank of one block is normalised once, as
before), and keep a running top-k. Linear evaluation
adds one standardised copy of the features. So evaluation needs about
(N_train + N_test) x D x 4 bytes, plus N_train x D x 4 during linear evaluation, plus one block.

Resolution (``augment.crop.size``): features are computed on ``core.augment.center.center_view``
of each image, i.e. the stored image at the stored size, else its central 87.5% resized to the
training resolution (SimCLR's evaluation protocol).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from core.augment.center import center_view
from core.config import CropConfig, EvalConfig
from core.data.mapped_images import MappedImages
from core.data.prefetch import prefetch
from core.optim import warmup_cosine

__all__ = ["Accuracy", "extract_features", "knn_accuracy", "linear_eval", "evaluate_encoder"]

QUERY_CHUNK = 512
"""kNN queries compared with the bank at once."""
BANK_BLOCK = 65536
"""Bank features per block of the kNN search: QUERY_CHUNK x BANK_BLOCK float32 is 128 MiB."""


@dataclass(frozen=True)
class Accuracy:
    """One accuracy in percent (0-100), named (e.g. ``knn_top1``) and labelled with its protocol."""

    name: str
    value: float
    protocol: str


def _restore_modes(module: nn.Module, modes: list[bool]) -> None:
    """Put every submodule back in the train/eval mode it had (keeps e.g. deliberately frozen BN)."""
    for m, mode in zip(module.modules(), modes):
        m.training = mode


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; nothing for None or float32 (avoids unsupported-dtype warnings)."""
    return nullcontext() if dtype in (None, torch.float32) else torch.autocast(device.type, dtype=dtype)


def _batches(images: torch.Tensor | MappedImages, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """uint8 batches of ``images`` in order on ``device``; a memory map is read ahead in a thread."""
    n = len(images)
    if isinstance(images, MappedImages):
        yield from prefetch(images, (slice(s, min(s + batch_size, n)) for s in range(0, n, batch_size)), device)
        return
    for start in range(0, n, batch_size):
        yield images[start : start + batch_size].to(device, non_blocking=True)


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images_uint8: torch.Tensor | MappedImages,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    size: int | None = None,
) -> torch.Tensor:
    """Features (N, D) float32 on ``device`` of uint8 images (N, C, H, W) scaled to [0, 1] and seen
    at ``size`` (``core.augment.center.center_view``; None: as stored).

    The encoder runs in eval mode (BatchNorm uses running statistics, so a
    feature does not depend on its batch) and every submodule's mode is
    restored afterwards. Images are read, moved and converted one batch at a
    time so a whole dataset never sits on the device as float, and features go
    straight into one (N, D) array (no list of batches to concatenate).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    if len(images_uint8) == 0:
        raise ValueError("no images to extract features from")
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    modes = [m.training for m in encoder.modules()]
    encoder.eval()
    try:
        feats: torch.Tensor | None = None
        start = 0
        for batch in _batches(images_uint8, batch_size, device):
            x = center_view(batch.to(dtype=torch.float32).div_(255), size).contiguous(memory_format=memory_format)
            with _autocast(device, autocast_dtype):
                out = encoder(x).flatten(1).float()
            if feats is None:
                feats = torch.empty((len(images_uint8), out.shape[1]), dtype=torch.float32, device=device)
            feats[start : start + len(out)] = out
            start += len(out)
        assert feats is not None
        return feats
    finally:
        _restore_modes(encoder, modes)


def _topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts (device tensors, no sync) of top-1 and top-k hits of class scores (Q, C)."""
    pred = scores.topk(k, dim=1).indices
    hits = pred == labels[:, None]
    return hits[:, 0].sum(), hits.any(dim=1).sum()


def _nearest(
    queries: torch.Tensor, bank: torch.Tensor, k: int, block: int, normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and bank indices of each (l2-normalised) query's k nearest bank rows,
    best first. The bank (l2-normalised here unless ``normalized``) is compared ``block`` rows at a
    time, keeping a running top-k, so memory is queries x block, never queries x bank; a bank of
    one block is one product and one top-k."""
    if len(bank) <= block:
        return (queries @ (bank if normalized else F.normalize(bank, dim=1)).T).topk(k, dim=1)
    best_sims = best_idx = None
    for start in range(0, len(bank), block):
        part = bank[start : start + block]
        part = part if normalized else F.normalize(part, dim=1)
        sims, idx = (queries @ part.T).topk(min(k, len(part)), dim=1)
        idx += start
        if best_sims is not None and best_idx is not None:
            sims, at = torch.cat([best_sims, sims], dim=1).topk(min(k, best_sims.shape[1] + sims.shape[1]), dim=1)
            idx = torch.cat([best_idx, idx], dim=1).gather(1, at)
        best_sims, best_idx = sims, idx
    assert best_sims is not None and best_idx is not None
    return best_sims, best_idx


def _knn_scores(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    block: int = BANK_BLOCK,
    normalized: bool = False,
) -> torch.Tensor:
    """Per-class sums of exp(s/T) over the k most cosine-similar bank items (queries l2-normalised,
    the bank too when ``normalized``, else block by block in ``_nearest``).

    The weights are exp((s - s_max)/T): dividing a query's whole vote by the
    same exp(s_max/T) changes no prediction but avoids float overflow for small T.
    """
    sims, idx = _nearest(queries, bank, k, block, normalized)
    weights = ((sims - sims[:, :1]) / temperature).exp()
    scores = torch.zeros(len(queries), num_classes, device=queries.device, dtype=weights.dtype)
    return scores.scatter_add_(1, bank_labels[idx], weights)


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = QUERY_CHUNK,
    bank_block: int = BANK_BLOCK,
) -> tuple[Accuracy, Accuracy]:
    """Weighted kNN (Wu et al. 2018, the SimCLR/InstDisc monitor): top-1 and top-min(5, C) in percent.

    Features are l2-normalised; each test query takes its k most cosine-similar
    train items (k clipped to the bank size), each votes exp(s/T) for its
    label, and the class with the largest sum wins. Queries go in chunks of
    ``chunk`` and the bank in blocks of ``bank_block``, so memory is
    chunk x bank_block, not N_test x N_train (nor a normalised copy of the bank).
    """
    bank = train_feats.float()
    # a bank of one block is normalised once (a copy no larger than a block); a larger one block by
    # block for every chunk of queries (a fraction 3 / chunk of the products' work), never copied whole
    normalized = len(bank) <= bank_block
    if normalized:
        bank = F.normalize(bank, dim=1)
    queries = F.normalize(test_feats.to(bank.device).float(), dim=1)
    bank_labels = train_labels.to(bank.device, torch.long)
    labels = test_labels.to(bank.device, torch.long)
    k_eff, top = min(k, len(bank)), min(5, num_classes)
    hit1 = hitk = torch.zeros((), dtype=torch.long, device=bank.device)
    for start in range(0, len(queries), chunk):
        scores = _knn_scores(
            queries[start : start + chunk], bank, bank_labels, num_classes, k_eff, temperature, bank_block, normalized
        )
        c1, ck = _topk_correct(scores, labels[start : start + chunk], top)
        hit1, hitk = hit1 + c1, hitk + ck
    protocol = (
        f"kNN on h: k={k_eff} (asked {k}, bank {len(bank)}), cosine similarity, weighted vote exp(s/{temperature}), "
        f"train split bank (N={len(bank)}), test split queries (N={len(queries)}), {num_classes} classes"
    )
    return _as_accuracies("knn", hit1, hitk, top, len(queries), protocol)


def _as_accuracies(
    prefix: str, hit1: torch.Tensor, hitk: torch.Tensor, top: int, n: int, protocol: str
) -> tuple[Accuracy, Accuracy]:
    """Turn hit counts into labelled percentages (the only host sync of an evaluation)."""
    counts = torch.stack([hit1, hitk]).tolist()
    return (
        Accuracy(f"{prefix}_top1", 100.0 * counts[0] / n, protocol),
        Accuracy(f"{prefix}_top{top}", 100.0 * counts[1] / n, protocol),
    )


def _standardizer(train_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Train-split mean and std per dimension; constant dimensions get std 1 (left centred, not blown up)."""
    mean = train_feats.mean(dim=0)
    std = train_feats.std(dim=0, unbiased=False)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def _zero_linear(in_dim: int, num_classes: int, device: torch.device) -> nn.Linear:
    """nn.Linear starting at zero: deterministic and leaves the global RNG untouched (the problem is convex)."""
    layer = torch.nn.utils.skip_init(nn.Linear, in_dim, num_classes, device=device)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _train_linear(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    generator: torch.Generator,
) -> nn.Linear:
    """SGD Nesterov (momentum 0.9), cosine decay per step, shuffled mini-batches from ``generator``."""
    total = epochs * math.ceil(len(x) / batch_size)
    clf, opt, sched = _linear_trainer(x.shape[1], num_classes, x.device, lr, total, weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(clf(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return clf


def linear_eval(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    weight_decay: float = 0.0,
) -> tuple[Accuracy, Accuracy]:
    """Offline linear evaluation on frozen features: top-1 and top-min(5, C) test accuracy in percent.

    Features are standardised with the train split's mean/std, an affine map
    of h, so the classifier is still linear in h. A zero-initialised
    nn.Linear is trained with cross-entropy, SGD Nesterov momentum 0.9, lr
    scaled by batch/256 (batch = batch_size clipped to the train size) and
    cosine-decayed over all steps, weight decay on the weight only (0 by
    default). Mini-batch order comes from ``generator`` (on the generator's
    device), so a fixed seed gives the same result on CPU.
    """
    device = train_feats.device
    mean, std = _standardizer(train_feats.float())
    x_train = train_feats.float().sub(mean).div_(std)  # one copy of the features, not two
    x_test = test_feats.to(device).float().sub(mean).div_(std)
    y_train = train_labels.to(device, torch.long)
    y_test = test_labels.to(device, torch.long)
    batch = min(batch_size, len(x_train))
    scaled_lr = lr * batch / 256
    with torch.enable_grad():
        clf = _train_linear(x_train, y_train, num_classes, epochs, batch, scaled_lr, weight_decay, generator)
    top = min(5, num_classes)
    with torch.no_grad():
        hit1, hitk = _topk_correct(clf(x_test), y_test, top)
    protocol = (
        f"linear on h standardized with train mean/std (an affine map, so still linear in h): "
        f"zero-init nn.Linear, cross-entropy, SGD Nesterov momentum 0.9, lr {lr} x {batch}/256 = {scaled_lr:g}, "
        f"cosine decay over {epochs * math.ceil(len(x_train) / batch)} steps ({epochs} epochs, batch {batch}), "
        f"weight decay {weight_decay}, trained on train split (N={len(x_train)}), "
        f"tested on test split (N={len(x_test)}), {num_classes} classes"
    )
    return _as_accuracies("linear", hit1, hitk, top, len(x_test), protocol)


def _augmented_batches(
    images: torch.Tensor | MappedImages, order: torch.Tensor, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """uint8 batches of ``images`` in ``order`` on ``device`` (a memory map read ahead in a thread)."""
    jobs = order.split(batch_size)
    if isinstance(images, MappedImages):
        yield from prefetch(images, jobs, device)
        return
    for rows in jobs:
        yield images[rows.to(images.device)].to(device, non_blocking=True)


def linear_eval_augmented(
    encoder: nn.Module,
    train_images: torch.Tensor | MappedImages,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    cfg: EvalConfig,
    crop: CropConfig,
    device: torch.device,
    generator: torch.Generator,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[Accuracy, Accuracy]:
    """google-research/simclr's linear evaluation (``eval.linear_protocol: official``).

    Every epoch each training image is seen once through a fresh random crop and flip (the
    ``augment.crop`` of pretraining, as the official fine-tuning input pipeline crops and flips
    but does not colour-distort), encoded by the frozen encoder in eval mode (its BatchNorm keeps
    the running statistics, as the official code's frozen blocks do), and a zero-initialised
    ``nn.Linear`` takes one SGD step per batch on those features, not standardised: Nesterov momentum
    0.9, lr ``linear_lr`` x batch/256 cosine-decayed per step, no weight decay (the README's CIFAR-10
    command: momentum optimizer, lr 0.1, weight decay 0, 100 epochs, batch 512, no warmup). The
    test split's features (``test_feats``, unaugmented) are classified at the end. Batch order
    and crops come from ``generator`` (on the CPU), so a seed gives the same result.
    """
    from core.augment.transforms import RandomResizedCrop  # the augmentations are not needed elsewhere here

    device = torch.device(device)
    n = len(train_images)
    batch = min(cfg.linear_batch_size, n)
    scaled_lr = cfg.linear_lr * batch / 256
    steps_per_epoch = math.ceil(n / batch)
    total = cfg.linear_epochs * steps_per_epoch
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    views = RandomResizedCrop(crop)
    y_all = train_labels.to(device, torch.long)
    modes = [m.training for m in encoder.modules()]
    encoder.eval()
    clf: nn.Linear | None = None
    try:
        for _ in range(cfg.linear_epochs):
            order = torch.randperm(n, generator=generator)
            for rows, images in zip(order.split(batch), _augmented_batches(train_images, order, batch, device)):
                x = images.to(torch.float32).div_(255)
                params = views.sample(torch.empty(()).expand(x.shape), generator)  # drawn on the CPU generator
                x = views.apply(x, {k: v.to(device) for k, v in params.items()}).contiguous(memory_format=memory_format)
                with torch.no_grad(), _autocast(device, autocast_dtype):
                    feats = encoder(x).flatten(1).float()
                if clf is None:
                    clf, opt, sched = _linear_trainer(feats.shape[1], num_classes, device, scaled_lr, total)
                with torch.enable_grad():
                    loss = F.cross_entropy(clf(feats), y_all[rows.to(device)])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                opt.step()
                sched.step()
    finally:
        _restore_modes(encoder, modes)
    assert clf is not None
    top = min(5, num_classes)
    with torch.no_grad():
        hit1, hitk = _topk_correct(clf(test_feats.to(device).float()), test_labels.to(device, torch.long), top)
    protocol = (
        f"linear on h of augmented training images (google-research/simclr's linear evaluation): a fresh random "
        f"crop ({crop.sampler} sampler, {crop.interpolation}) and flip of every training image every epoch, "
        f"encoder frozen in eval mode, features not standardized, zero-init nn.Linear, cross-entropy, SGD "
        f"Nesterov momentum 0.9, lr {cfg.linear_lr} x {batch}/256 = {scaled_lr:g}, cosine decay over {total} steps "
        f"({cfg.linear_epochs} epochs, batch {batch}), weight decay 0, trained on train split (N={n}), "
        f"tested on unaugmented test split (N={len(test_feats)}), {num_classes} classes"
    )
    return _as_accuracies("linear", hit1, hitk, top, len(test_feats), protocol)


def _linear_trainer(
    in_dim: int, num_classes: int, device: torch.device, lr: float, total_steps: int, weight_decay: float = 0.0
) -> tuple[nn.Linear, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The classifier, optimizer and schedule both linear protocols share: zero-init nn.Linear,
    SGD Nesterov momentum 0.9 (weight decay on the weight only, 0 by default), cosine decay per step."""
    clf = _zero_linear(in_dim, num_classes, device)
    opt = torch.optim.SGD(
        [dict(params=[clf.weight], weight_decay=weight_decay), dict(params=[clf.bias], weight_decay=0.0)],
        lr=lr, momentum=0.9, nesterov=True,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total_steps, 0))
    return clf, opt, sched


def evaluate_encoder(
    encoder: nn.Module,
    train_images: torch.Tensor | MappedImages,
    train_labels: torch.Tensor,
    test_images: torch.Tensor | MappedImages,
    test_labels: torch.Tensor,
    num_classes: int,
    cfg: EvalConfig,
    device: torch.device,
    generator: torch.Generator,
    *,
    linear: bool,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    size: int | None = None,
    crop: CropConfig | None = None,
) -> list[Accuracy]:
    """Extract features of both splits once, then kNN (always) and linear evaluation (if ``linear``).

    kNN runs at every k of ``cfg.knn_k``: the first is reported as ``knn_top1``/``knn_top5``, the
    others as ``knn_top1_k10``/``knn_top5_k10`` (so one run sits beside protocols of k=200 and k=10).

    ``linear`` is explicit rather than read from ``cfg.linear`` so the per-epoch
    kNN monitor and the final evaluation can share one config. Images may be
    memory-mapped (``MappedImages``); ``size`` is the training resolution
    (``augment.crop.size``; None: the stored size), see the module docstring; ``crop`` is the
    pretraining crop, which ``eval.linear_protocol: official`` trains the classifier on.
    """
    def feats(images: torch.Tensor | MappedImages) -> torch.Tensor:
        return extract_features(encoder, images, cfg.batch_size, device, channels_last, autocast_dtype, size)

    train_feats, test_feats = feats(train_images), feats(test_images)
    results: list[Accuracy] = []
    for i, k in enumerate(cfg.knn_ks()):
        found = knn_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes, k, cfg.knn_temperature)
        results += found if i == 0 else [replace(a, name=f"{a.name}_k{k}") for a in found]
    if linear and cfg.linear_protocol == "official":
        results += linear_eval_augmented(
            encoder, train_images, train_labels, test_feats, test_labels, num_classes, cfg,
            crop if crop is not None else CropConfig(), device, generator, channels_last, autocast_dtype,
        )
    elif linear:
        results += linear_eval(
            train_feats,
            train_labels,
            test_feats,
            test_labels,
            num_classes,
            cfg.linear_epochs,
            cfg.linear_batch_size,
            cfg.linear_lr,
            generator,
        )
    return results
