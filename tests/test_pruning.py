"""ablations.pruning: the callback's stop message carries the epoch that pruned_epoch reads back."""

from __future__ import annotations

import optuna
import pytest

from ablations.pruning import PruningCallback, pruned_epoch


def _trial_pruned_after(first_value: float) -> optuna.Trial:
    """A real Optuna trial in memory whose median pruner has one finished trial scoring ``first_value``."""
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    done = study.ask()
    for epoch in range(1, 4):
        done.report(first_value, epoch)
    study.tell(done, first_value)
    return study.ask()


def test_a_worse_trial_is_pruned_with_its_epoch_and_the_epoch_reads_back():
    callback = PruningCallback(_trial_pruned_after(90.0))
    callback.on_epoch_end(1, {"loss": 3.0})  # no kNN this epoch: nothing reported, nothing pruned
    with pytest.raises(optuna.TrialPruned) as caught:
        callback.on_epoch_end(2, {"knn_top1": 10.0})
    assert pruned_epoch(caught.value) == 2
    assert "kNN top-1 10.00" in str(caught.value)


def test_a_better_trial_goes_on():
    callback = PruningCallback(_trial_pruned_after(10.0))
    callback.on_epoch_end(2, {"knn_top1": 90.0})


def test_a_message_without_an_epoch_reads_as_epoch_zero():
    assert pruned_epoch(optuna.TrialPruned("stopped")) == 0
