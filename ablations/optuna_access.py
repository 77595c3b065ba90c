"""The few Optuna internals the engine relies on, reached in one place.

Exactly-once claiming works on the storage underneath a study (read a trial, move it WAITING ->
RUNNING atomically, record heartbeats), which Optuna's public ``Study``/``Trial`` API does not
expose: a study's storage and id, a trial's id, and an ``optuna.Trial`` for a trial the engine
claimed itself live behind underscored attributes. Every such access goes through this module,
so an Optuna upgrade that moves them breaks here, once, and ``tests/test_optuna_access.py`` says
so; that test pins each behaviour the engine relies on against the installed Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (Optuna's cache around the RDB storage)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The storage's id of ``study``."""
    return study._study_id


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (not its number within the study)."""
    return trial._trial_id


def trials_of(study: optuna.Study, states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
    """The study's trials as stored right now (no deep copy: read, do not change them)."""
    return storage_of(study).get_all_trials(study_id_of(study), deepcopy=False, states=states)


def stored_trial(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> FrozenTrial:
    """The stored state of ``trial`` now (its state, params and user attributes)."""
    return storage_of(study).get_trial(trial_id_of(trial))


def live_trial(study: optuna.Study, trial_id: int) -> optuna.Trial:
    """An ``optuna.Trial`` for a trial the engine claimed itself (``study.ask()`` would pick one)."""
    return optuna.Trial(study, trial_id)


def storage_url(storage: BaseStorage) -> str:
    """The database URL of an RDB storage, also when it is wrapped in Optuna's cache."""
    backend = getattr(storage, "_backend", storage)
    return str(backend.url)
