"""A recorder of the aten ops a piece of code runs, for tests that forbid some of them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode


class RecordOps(TorchDispatchMode):
    """Runs every op and records ``str(func)`` of those for which ``matches(func, args, kwargs, out)``."""

    def __init__(self, matches: Callable[[Any, tuple, dict, Any], bool]) -> None:
        super().__init__()
        self.matches = matches
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.matches(func, args, kwargs, out):
            self.seen.append(str(func))
        return out
