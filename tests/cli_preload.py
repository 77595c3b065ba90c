"""What the fork server of ``tests.cli_process`` imports once: the modules every CLI command reaches.

Only imports: nothing here may start a Python thread, since each CLI run is forked from this
process. (pyarrow, which MLflow imports, starts jemalloc's background thread; jemalloc's own fork
handlers take care of it.)
"""

import threading

import alembic.command  # noqa: F401  (MLflow's schema migrations, run when a store is created)
import matplotlib.pyplot  # noqa: F401
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
import optuna  # noqa: F401
import seaborn  # noqa: F401
import torch  # noqa: F401
import torchvision  # noqa: F401

import ablations.cli  # noqa: F401
import ablations.commands.delete  # noqa: F401
import ablations.commands.floor  # noqa: F401
import ablations.commands.study  # noqa: F401
import ablations.commands.train  # noqa: F401
import ablations.engine  # noqa: F401
import core.loaders  # noqa: F401
import core.trainer  # noqa: F401
import reports.curves  # noqa: F401
import reports.looks  # noqa: F401
import reports.render  # noqa: F401

if threading.active_count() != 1:
    raise RuntimeError(f"importing the CLI started threads {threading.enumerate()}: forking it would be unsafe")
