"""What the engine relies on in Optuna, pinned against the installed version through
ablations.optuna_access: an upgrade that changes any of it fails here, with the reason, before a
study double-claims a trial."""

from __future__ import annotations

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from ablations.optuna_access import (
    live_trial,
    storage_of,
    storage_url,
    stored_trial,
    study_id_of,
    trial_id_of,
    trials_of,
)


@pytest.fixture()
def study(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    opt = optuna.create_study(study_name="pinned", storage=RDBStorage(url))
    for point in range(3):
        opt.enqueue_trial({"point": point}, user_attrs={"key": f"k{point}"})
    return opt, url


def test_a_study_exposes_its_storage_ids_and_enqueued_trials(study):
    opt, url = study
    assert storage_url(storage_of(opt)) == url  # through Optuna's cache around the RDB storage
    assert isinstance(study_id_of(opt), int)
    waiting = trials_of(opt, states=(TrialState.WAITING,))
    assert [t.user_attrs["key"] for t in waiting] == ["k0", "k1", "k2"]
    assert all(isinstance(trial_id_of(t), int) for t in waiting)


def test_the_state_change_that_claims_a_trial_succeeds_once(study):
    opt, _ = study
    storage = storage_of(opt)
    first = trials_of(opt, states=(TrialState.WAITING,))[0]
    storage.record_heartbeat(trial_id_of(first))
    assert storage.set_trial_state_values(trial_id_of(first), state=TrialState.RUNNING) is True
    assert storage.set_trial_state_values(trial_id_of(first), state=TrialState.RUNNING) is False  # already taken
    assert stored_trial(opt, first).state == TrialState.RUNNING
    assert len(trials_of(opt, states=(TrialState.RUNNING,))) == 1


def test_a_claimed_trial_becomes_a_live_trial_that_suggests_its_fixed_point_and_tells(study):
    opt, _ = study
    storage = storage_of(opt)
    second = trials_of(opt, states=(TrialState.WAITING,))[1]
    storage.set_trial_state_values(trial_id_of(second), state=TrialState.RUNNING)
    trial = live_trial(opt, trial_id_of(second))
    assert trial.number == second.number and trial_id_of(trial) == trial_id_of(second)
    assert trial.suggest_categorical("point", [0, 1, 2]) == 1  # an enqueued trial's fixed params win
    opt.tell(trial, 0.5)
    assert stored_trial(opt, trial).state == TrialState.COMPLETE
    with pytest.raises(UpdateFinishedTrialError):  # a finished trial cannot be claimed again
        storage.set_trial_state_values(trial_id_of(second), state=TrialState.RUNNING)
