"""Stratified, seeded subsets: class proportions kept, exact total, stable (ascending) order."""

from __future__ import annotations

import numpy as np

from core.data.errors import DataError

_SALT = {"train": 2, "test": 3}  # distinct from the synthetic generator's streams


def allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Largest-remainder split of ``n`` over classes in proportion to ``counts`` (ties: lower class).

    Integer arithmetic, so the quotas are exact and the result always sums to ``n``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    base, remainder = np.divmod(counts * n, total)
    short = n - int(base.sum())
    order = np.lexsort((np.arange(len(counts)), -remainder))  # largest remainder first
    base[order[:short]] += 1
    return base


def stratified_indices(labels: np.ndarray, n: int, seed: int, split: str, option: str) -> np.ndarray:
    """Sorted indices of an ``n``-image stratified subset of ``labels``; same seed, same subset."""
    total = len(labels)
    if n > total:
        raise DataError(f"{option}={n} is larger than the {split} split ({total} images)")
    counts = np.bincount(labels, minlength=int(labels.max(initial=0)) + 1)
    rng = np.random.default_rng([seed % 2**64, _SALT[split]])
    chosen = [
        rng.choice(np.flatnonzero(labels == k), size=int(take), replace=False)
        for k, take in enumerate(allocate(counts, n))
        if take
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)
