"""The subcommands of ``python -m ablations``: one module each (or a family, like run/plan/report),
each with ``register(subparsers)`` adding its parsers and setting ``func`` to its handler.

``COMMANDS`` is the order they appear in ``--help``.
"""

from __future__ import annotations

from ablations.commands import bench, data, delete, floor, recipes, study, train

COMMANDS = (study, floor, delete, train, bench, data, recipes)

__all__ = ["COMMANDS"]
