"""How the command line and its worker processes log: one function, so a spawned worker matches its parent."""

from __future__ import annotations

import logging


def configure_logging(prefix: str = "") -> None:
    """Our progress lines at INFO; other libraries' (matplotlib, alembic, ...) only from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s {prefix}%(message)s", datefmt="%H:%M:%S")
    logging.getLogger("ablations").setLevel(logging.INFO)
