"""Optuna pruning inside a trial: the callback that reports to the pruner, and reading its verdict back.

A trial may train in this process or under torchrun in others (``distributed_trial``); both use this
callback, and the engine learns the epoch only from the exception's message, which crosses the
process boundary as text. ``pruned_epoch`` reads it back; the two are kept side by side so the
message and its parser cannot drift apart.
"""

from __future__ import annotations

import re

import optuna

from core.trainer import Callback

_MESSAGE = re.compile(r"pruned at epoch (\d+)")


class PruningCallback(Callback):
    """Reports the per-epoch kNN accuracy to Optuna and stops the trial when the pruner says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        if "knn_top1" in metrics:
            self.trial.report(metrics["knn_top1"], epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (kNN top-1 {metrics['knn_top1']:.2f})")


def pruned_epoch(exc: BaseException) -> int:
    """The epoch a ``TrialPruned`` raised by ``PruningCallback`` names; 0 when it names none."""
    found = _MESSAGE.search(str(exc))
    return int(found.group(1)) if found else 0
