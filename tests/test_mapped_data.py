"""Memory-mapped stores (data.in_memory): cheap opening, checksums checked once, reads without copies,
the auto budget, and the background reader."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import DataConfig
from core.data import MappedImages, budget, cache, load_dataset, mapped
from core.data.prefetch import Prefetcher, prefetch
from core.data.splits import Decoded
from tests.test_data import _fake_stl10, _idx_folder


def write_store(tmp_path: Path, n_train: int = 40, n_test: int = 12, size: int = 8, seed: int = 0) -> DataConfig:
    """A store written with cache.save, as a build leaves it, for an (empty) idx root: the config that opens it."""
    rng = np.random.default_rng(seed)
    root = tmp_path / "root"
    root.mkdir()
    cfg = DataConfig(source="idx", root=root, cache_dir=tmp_path / "cache")
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 3, size, size), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 4).astype(np.int64),
        "test_images": rng.integers(0, 256, (n_test, 3, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 4).astype(np.int64),
    }
    cache.save(cache.entry_dir(cfg, "labelled"), Decoded(arrays, ["a", "b", "c", "d"]))
    return cfg


def _entry(cfg: DataConfig) -> Path:
    return cache.entry_dir(cfg, "labelled")


def _mapped_from(tensor: torch.Tensor, path: Path) -> bool:
    """Whether ``tensor``'s memory is a mapping of the file ``path`` (Linux /proc/self/maps)."""
    ptr = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path.resolve()):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= ptr < end:
                return True
    return False


def _all(images: MappedImages | torch.Tensor) -> torch.Tensor:
    return images.read(torch.arange(len(images))) if isinstance(images, MappedImages) else images


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files whose SHA-256 the mapped open computes."""
    calls: list[str] = []
    real = mapped.sha256_file

    def counting(path: Path) -> str:
        calls.append(path.name)
        return real(path)

    monkeypatch.setattr(mapped, "sha256_file", counting)
    return calls


# ---------------------------------------------------------------- opening a store


def test_a_mapped_store_holds_the_same_images_and_subsets_are_index_arrays(tmp_path):
    cfg = write_store(tmp_path)
    memory = load_dataset(cfg.model_copy(update={"in_memory": True, "subset": 20, "test_subset": 8}), seed=5)
    mapped_ = load_dataset(cfg.model_copy(update={"in_memory": False, "subset": 20, "test_subset": 8}), seed=5)
    assert isinstance(memory.train_images, torch.Tensor) and memory.placement == "in memory (data.in_memory: true)"
    assert mapped_.placement == "memory-mapped (data.in_memory: false)"
    for name in ("train_images", "test_images"):
        view = getattr(mapped_, name)
        assert isinstance(view, MappedImages) and view.index is not None
        # the subset reads through an index array into the whole mapped file: no copy of the split
        assert view.parts[0].shape[0] == (40 if name == "train_images" else 12)
        assert _mapped_from(view.parts[0], _entry(cfg) / f"{name}.npy")
        assert torch.equal(_all(view), getattr(memory, name))
    assert torch.equal(mapped_.train_labels, memory.train_labels) and torch.equal(
        mapped_.test_labels, memory.test_labels
    )
    assert mapped_.pretrain is mapped_.train_images and mapped_.classes == memory.classes == ["a", "b", "c", "d"]


def test_the_checksum_is_checked_once_per_state_of_a_file(tmp_path, hashes):
    cfg = write_store(tmp_path).model_copy(update={"in_memory": False})
    load_dataset(cfg)
    assert sorted(hashes) == ["test_images.npy", "test_labels.npy", "train_images.npy", "train_labels.npy"]
    record = json.loads((_entry(cfg) / mapped.VERIFIED).read_text())
    assert set(record) == {"train_images", "train_labels", "test_images", "test_labels"}
    hashes.clear()
    load_dataset(cfg)
    assert hashes == []  # the next start only compares sizes, headers and the recorded file state
    npy = _entry(cfg) / "train_images.npy"
    st = npy.stat()
    os.utime(npy, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched (or rewritten): check again
    load_dataset(cfg)
    assert hashes == ["train_images.npy"]


def test_a_store_in_memory_is_hashed_at_every_load_and_leaves_no_record(tmp_path, hashes):
    cfg = write_store(tmp_path)
    for _ in range(2):
        assert isinstance(load_dataset(cfg.model_copy(update={"in_memory": True})).train_images, torch.Tensor)
    assert hashes == [] and not (_entry(cfg) / mapped.VERIFIED).exists()  # core.data.cache hashes it, as before


@pytest.mark.parametrize("damage", ["truncated", "same size, other bytes", "other header"])
def test_a_damaged_store_is_reported_and_rebuilt_then_mapped(tmp_path, caplog, damage):
    expected = _idx_folder(tmp_path / "mnist", gz=False)
    cfg = DataConfig(source="idx", root=tmp_path / "mnist", cache_dir=tmp_path / "cache", in_memory=False)
    first = _all(load_dataset(cfg).train_images).clone()  # (a map would see the damage: same inode)
    npy = _entry(cfg) / "train_images.npy"
    good = npy.read_bytes()
    if damage == "truncated":
        npy.write_bytes(good[: len(good) // 2])
    elif damage == "same size, other bytes":
        npy.write_bytes(good[:-10] + bytes(b ^ 0xFF for b in good[-10:]))
    else:
        np.save(npy, np.zeros((7, 1, 6, 5), dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="core.data.cache"):
        second = load_dataset(cfg)
    assert f"data cache file {npy} is unreadable" in caplog.text  # core.data.cache names it once
    assert caplog.text.count("is unreadable") == 1
    assert npy.read_bytes() == good and isinstance(second.train_images, MappedImages)
    assert torch.equal(_all(second.train_images), first)
    assert np.array_equal(_all(second.train_images)[:, 0].numpy(), expected["train_images"])


def test_open_entry_checks_sizes_and_headers_without_reading(tmp_path, hashes):
    cfg = write_store(tmp_path)
    entry = _entry(cfg)
    assert mapped.open_entry(entry) is not None and len(hashes) == 4
    hashes.clear()
    meta = json.loads((entry / "meta.json").read_text())
    meta["arrays"]["test_images"]["shape"][0] += 1  # the header no longer agrees with the sidecar
    (entry / "meta.json").write_text(json.dumps(meta))
    assert mapped.open_entry(entry) is None and hashes == []
    (entry / "meta.json").unlink()
    assert mapped.open_entry(entry) is None and mapped.stored_shapes(entry) is None


def test_stl10_unlabeled_images_join_the_map_without_a_copy(tmp_path, monkeypatch):
    import torchvision.datasets.stl10 as tv_stl10

    monkeypatch.setattr(tv_stl10, "check_integrity", lambda *a, **k: True)
    images = _fake_stl10(tmp_path / "tv")
    cfg = DataConfig(source="stl10", root=tmp_path / "tv", cache_dir=tmp_path / "cache", stl10_unlabeled=True, subset=5)
    memory = load_dataset(cfg.model_copy(update={"in_memory": True}), seed=3)
    mapped_ = load_dataset(cfg.model_copy(update={"in_memory": False}), seed=3)
    assert isinstance(mapped_.pretrain, MappedImages) and len(mapped_.pretrain.parts) == 2
    assert mapped_.pretrain.shape == memory.pretrain.shape == (13, 3, 96, 96)
    assert torch.equal(_all(mapped_.pretrain), memory.pretrain)
    assert np.array_equal(mapped_.pretrain[10:].numpy(), images["unlabeled"])
    assert torch.equal(_all(mapped_.train_images), memory.train_images)


def test_synthetic_data_is_stored_once_and_mapped_when_asked(tmp_path, hashes):
    cfg = DataConfig(source="synthetic", cache_dir=tmp_path / "cache")
    memory = load_dataset(cfg, seed=4)
    assert not (tmp_path / "cache").exists() and memory.placement.startswith("in memory")
    first = load_dataset(cfg.model_copy(update={"in_memory": False}), seed=4)
    assert isinstance(first.train_images, MappedImages) and hashes == []  # saved and hashed by cache.save
    again = load_dataset(cfg.model_copy(update={"in_memory": False}), seed=4)
    other_seed = load_dataset(cfg.model_copy(update={"in_memory": False}), seed=5)
    assert torch.equal(_all(first.train_images), memory.train_images) and torch.equal(
        _all(again.test_images), memory.test_images
    )
    assert not torch.equal(_all(other_seed.train_images), memory.train_images)
    assert len(list((tmp_path / "cache").iterdir())) == 2 and hashes == []


# ---------------------------------------------------------------- auto and its budget


def test_auto_maps_a_store_over_the_budget_and_reads_one_within_it(tmp_path):
    cfg = write_store(tmp_path)  # 40 + 12 images of 3x8x8: 9,984 bytes
    over = load_dataset(cfg.model_copy(update={"memory_budget_gb": 9e-6}))
    within = load_dataset(cfg.model_copy(update={"memory_budget_gb": 1e-5}))
    assert isinstance(over.train_images, MappedImages) and isinstance(within.train_images, torch.Tensor)
    assert over.placement == (
        "memory-mapped (auto: 0.00 GB of images over the 0.0 GB budget, data.memory_budget_gb 9e-06)"
    )
    assert within.placement.startswith("in memory (auto: ") and "within" in within.placement


def test_the_default_budget_is_half_the_available_host_memory_and_a_quarter_of_the_gpu(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    assert budget.host_available_bytes(meminfo) == 20_000_000 * 1024
    monkeypatch.setattr(budget, "host_available_bytes", lambda: 20e9)
    monkeypatch.setattr(budget, "device_total_bytes", lambda device: 80e9)
    cfg = DataConfig()
    assert budget.memory_budget(cfg, None) == (10e9, "half of the host's 20.0 GB available")
    assert budget.memory_budget(cfg, torch.device("cpu")) == (10e9, "half of the host's 20.0 GB available")
    assert budget.memory_budget(cfg, torch.device("cuda", 0)) == (10e9, "half of the host's 20.0 GB available")
    monkeypatch.setattr(budget, "device_total_bytes", lambda device: 16e9)
    assert budget.memory_budget(cfg, torch.device("cuda", 0)) == (4e9, "a quarter of the GPU's 16.0 GB")
    assert budget.memory_budget(cfg.model_copy(update={"memory_budget_gb": 2.5}), torch.device("cuda", 0)) == (
        2.5e9, "data.memory_budget_gb 2.5")
    assert budget.decide(cfg, int(4e9), torch.device("cuda", 0))[0] is True
    assert budget.decide(cfg, int(4e9) + 1, torch.device("cuda", 0)) == (
        False, "auto: 4.00 GB of images over the 4.0 GB budget, a quarter of the GPU's 16.0 GB")
    assert budget.decide(cfg.model_copy(update={"in_memory": False}), 1, None) == (False, "data.in_memory: false")


# ---------------------------------------------------------------- MappedImages


def _parts(n1: int = 10, n2: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n1, 2, 3, 3), dtype=torch.uint8, generator=g),
            torch.randint(0, 256, (n2, 2, 3, 3), dtype=torch.uint8, generator=g))


def test_reads_return_rows_in_the_order_asked_for_across_parts_and_indices():
    a, b = _parts()
    whole = torch.cat([a, b])
    view = MappedImages([a, b])
    rows = torch.tensor([16, 0, 9, 10, 3, 12])
    assert torch.equal(view.read(rows), whole[rows]) and torch.equal(view[rows], whole[rows])
    subset = torch.tensor([1, 4, 10, 11, 15])
    chosen = view.select(subset)
    assert chosen.shape == (5, 2, 3, 3) and torch.equal(chosen.index, subset)
    assert torch.equal(chosen.read(torch.tensor([4, 0, 2])), whole[subset[[4, 0, 2]]])
    assert torch.equal(chosen.select(torch.tensor([3, 1])).read(torch.tensor([0, 1])), whole[[11, 4]])  # composed
    assert torch.equal(chosen[1:4], whole[subset[1:4]]) and torch.equal(chosen[-1], whole[15])
    out = torch.empty((3, 2, 3, 3), dtype=torch.uint8)
    assert view.read(torch.tensor([2, 1, 0]), out=out) is out and torch.equal(out, whole[[2, 1, 0]])
    cat = MappedImages.concat(MappedImages([a]).select(torch.tensor([2, 5])), MappedImages([b]))
    assert torch.equal(cat.read(torch.arange(len(cat))), torch.cat([a[[2, 5]], b]))
    with pytest.raises(IndexError):
        view.read(torch.tensor([17]))
    with pytest.raises(ValueError, match="uint8"):
        MappedImages([a.float()])


def test_one_part_without_index_is_sliced_as_a_view_of_the_map():
    a, _ = _parts()
    view = MappedImages([a])
    assert view[2:5].data_ptr() == a[2:5].data_ptr()  # no copy for evaluation's contiguous batches
    assert view.nbytes == a.numel() and len(view) == 10 and view.dim() == view.ndim == 4


# ---------------------------------------------------------------- the background reader


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prefetch"]


def test_prefetch_yields_the_batches_in_order_and_stops_when_left_early():
    a, b = _parts(40, 13)
    view = MappedImages([a, b])
    whole = torch.cat([a, b])
    jobs = [torch.tensor([5, 1, 50]), slice(10, 20), torch.tensor([52]), slice(48, 53)]
    got = list(prefetch(view, jobs, torch.device("cpu"), depth=2))
    assert [torch.equal(g, whole[j]) for g, j in zip(got, jobs)] == [True] * 4 and len(got) == 4
    assert all(g.data_ptr() != whole.data_ptr() for g in got)  # copies, read in the thread
    batches = prefetch(view, (torch.tensor([i]) for i in range(53)), torch.device("cpu"), depth=3)
    next(batches)
    batches.close()
    assert _prefetch_threads() == []


def test_a_read_error_reaches_the_consumer_at_its_batch():
    a, _ = _parts()
    reader = Prefetcher(
        MappedImages([a]), [torch.tensor([0]), torch.tensor([99]), torch.tensor([1])], torch.device("cpu")
    )
    batches = iter(reader)
    assert torch.equal(next(batches), a[[0]])
    with pytest.raises(IndexError, match="out of range"):
        next(batches)
    assert _prefetch_threads() == []
