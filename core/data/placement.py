"""Where a run's images live: ``data.in_memory`` resolved, and the stored parts opened accordingly.

``true`` reads every part into memory through ``core.data.cache`` (each file hashed as it is
loaded, as always). ``false`` memory-maps the stored files (``core.data.mapped``). ``auto`` looks at
the stored sizes in ``meta.json`` first (building the store when it is missing) and decides with
``core.data.budget``; within the budget it is exactly ``true``. The decision and its reason come
back as one line of text for the run to print and log.

Synthetic data is generated in memory, so ``auto`` keeps it there; ``false`` writes it once into
``data.cache_dir`` (keyed by its settings and the seed) and maps it, so memory-mapped training can
be tested without a dataset.

Failure modes: a part that cannot be memory-mapped after it was (re)built, e.g. a cache folder that
is not writable, is held in memory with a warning saying so; a damaged store is reported and
rebuilt by ``core.data.cache`` (the mapped open only notices and hands it over).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Callable
from math import prod
from pathlib import Path

import torch
from filelock import FileLock

from core.config import DataConfig
from core.data import cache, mapped
from core.data.budget import decide
from core.data.splits import Decoded

log = logging.getLogger(__name__)

Shapes = dict[str, tuple[int, ...]]


def image_bytes(shapes: dict[str, Shapes]) -> int:
    """Bytes of every stored image array of every part (what ``in memory`` would read)."""
    return sum(prod(shape) for part in shapes.values() for name, shape in part.items() if name.endswith("images"))


def _mapped(cfg: DataConfig, part: str, build: Callable[[], Decoded], built: Decoded | None) -> Decoded:
    """``part`` memory-mapped; rebuilt through the cache when missing or damaged."""
    if built is None:
        found = mapped.open_entry(cache.entry_dir(cfg, part))
        if found is not None:
            return found
        built = cache.cached(cfg, part, build)  # reports the damage, rebuilds and hashes every file
    entry = cache.entry_dir(cfg, part)  # re-keyed: building may have downloaded into the root
    mapped.record_verified(entry)  # cached() has just hashed every file of it (written or loaded)
    found = mapped.open_entry(entry)
    if found is None:
        log.warning("could not memory-map the data store %s; holding this part in memory instead", entry)
        return built
    return found


def open_parts(
    cfg: DataConfig, builds: dict[str, Callable[[], Decoded]], device: torch.device | None
) -> tuple[dict[str, Decoded], str]:
    """Every stored part of ``cfg``'s data (``labelled``, STL-10's ``unlabeled``), in memory or
    memory-mapped as ``data.in_memory`` says, and the placement in words."""
    if cfg.in_memory is True:
        return {p: cache.cached(cfg, p, b) for p, b in builds.items()}, "in memory (data.in_memory: true)"
    built: dict[str, Decoded] = {}
    shapes: dict[str, Shapes] = {}
    for part, build in builds.items():
        found = mapped.stored_shapes(cache.entry_dir(cfg, part))
        if found is None:  # not built yet (or unreadable): build it now, in memory, as ever
            built[part] = cache.cached(cfg, part, build)
            found = {k: tuple(a.shape) for k, a in built[part].arrays.items()}
        shapes[part] = found
    in_memory, why = decide(cfg, image_bytes(shapes), device)
    if in_memory:
        return {p: built[p] if p in built else cache.cached(cfg, p, b) for p, b in builds.items()}, f"in memory ({why})"
    opened = {p: _mapped(cfg, p, b, built.pop(p, None)) for p, b in builds.items()}
    return opened, f"memory-mapped ({why})"


def synthetic_entry(cfg: DataConfig, seed: int) -> Path:
    """Where ``data.in_memory: false`` keeps generated data: keyed by everything that shapes it."""
    key = {"format": cache.FORMAT, "synthetic": cfg.synthetic.model_dump(), "seed": seed, "image_size": cfg.image_size}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cfg.cache_dir.expanduser().resolve() / f"synthetic-labelled-{digest}"


def open_synthetic(cfg: DataConfig, seed: int, generate: Callable[[], Decoded]) -> tuple[Decoded, str]:
    """Generated data: in memory unless ``data.in_memory`` is false, then stored once and mapped."""
    if cfg.in_memory is not False:
        return generate(), "in memory (synthetic data is generated in memory)"
    entry = synthetic_entry(cfg, seed)
    try:
        entry.mkdir(parents=True, exist_ok=True)
        lock: contextlib.AbstractContextManager[object] = FileLock(str(entry / ".build.lock"))
    except OSError:
        lock = contextlib.nullcontext()
    with lock:  # the ranks of a torchrun group: one writes, the others wait and map it
        found = mapped.open_entry(entry)
        if found is None:
            decoded = generate()
            cache.save(entry, decoded)  # hashes every file it writes
            mapped.record_verified(entry)
            found = mapped.open_entry(entry)
            if found is None:
                log.warning("could not store synthetic data in %s; holding it in memory instead", entry)
                return decoded, "in memory (data.in_memory: false, but the store could not be written)"
    return found, "memory-mapped (data.in_memory: false)"
