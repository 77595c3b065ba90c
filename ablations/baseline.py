"""A study's floor: its base encoder untrained (``core.baseline``), once per seed, cached in MLflow.

The floor depends only on which images, the encoder, the evaluation and the seed, so it is keyed by
those fields (``floor_key``), not by the study: every study of one scale and data (the six paper
studies at ``--scale cpu``) shares one. Each seed's floor is an MLflow run tagged
``ablations.role=baseline`` with its key; any finished run of that key, in any experiment, is reused,
so it is computed once per scale and data. The study's parent run lists its keys
(``ablations.baseline_keys``), which is how a report finds them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

from ablations.plan import NEUTRAL_DATA, NEUTRAL_TRAIN, Plan
from core import registry
from core.config import RunConfig, identity_exclusions
from reports.floor import KEY_TAG, KEYS_TAG, ROLE, finished_floor_run

log = logging.getLogger(__name__)

HEAD_FIELDS = {"head", "head_dim", "head_hidden_dim", "head_hidden_bn", "head_layers", "head_bn_out"}
"""The projection head: drawn after the encoder's weights and never evaluated, so not the floor's."""


def floor_key(config: RunConfig) -> str:
    """What decides ``config``'s floor: the data (which images, not where), the encoder, the crop
    size evaluation sees, the evaluation, the numerics and the seed."""
    exclude = identity_exclusions(config, {"train": NEUTRAL_TRAIN, "data": NEUTRAL_DATA, "model": HEAD_FIELDS})
    dumped = config.model_dump(mode="json", exclude=exclude)
    fields = {"data": dumped["data"], "model": dumped["model"], "eval": dumped["eval"],
              "crop_size": config.augment.crop.size, "seed": config.train.seed,
              "numerics": [config.train.precision, config.train.channels_last]}
    if not registry.is_builtin("encoder", config.model.encoder):  # only the encoder's code decides the floor
        fields["encoder_origin"] = registry.resolve("encoder", config.model.encoder).origin()
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def floor_configs(plan: Plan) -> list[RunConfig]:
    """The study's base config at each seed its trials use (one per seed, in order)."""
    seeds = sorted({t.point.seed for t in plan.trials}) or [plan.study.base.train.seed]
    base = plan.study.base
    return [base.model_copy(update={"train": base.train.model_copy(update={"seed": s})}) for s in seeds]


def ensure_floor(plan: Plan, client: Any, exp_id: str, parent_run: str | None) -> list[str]:
    """Compute every seed's floor the store lacks (logged as a baseline run in ``exp_id``); tag the
    study's parent run with the keys. Returns the keys."""
    from ablations.tracking import PARENT_TAG, log_config
    from core.baseline import PROTOCOL, untrained_accuracies

    keys = []
    for config in floor_configs(plan):
        key = floor_key(config)
        keys.append(key)
        if finished_floor_run(client, key) is not None:
            continue
        started = time.time()
        log.info("floor (untrained encoder), seed %d: evaluating", config.train.seed)
        run = client.create_run(exp_id, run_name=f"floor: untrained encoder, seed {config.train.seed}",
                                tags={PARENT_TAG: ROLE, KEY_TAG: key, "seed": str(config.train.seed),
                                      "protocol": PROTOCOL})
        try:
            log_config(client, run.info.run_id, config)
            accuracies = untrained_accuracies(config)
        except BaseException:
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        for a in accuracies:
            client.log_metric(run.info.run_id, a.name, a.value)
        client.set_terminated(run.info.run_id, "FINISHED")
        log.info("floor, seed %d: %s (%.0f s)", config.train.seed,
                 ", ".join(f"{a.name} {a.value:.2f}" for a in accuracies), time.time() - started)
    if parent_run is not None:
        client.set_tag(parent_run, KEYS_TAG, ",".join(keys))
    return keys
