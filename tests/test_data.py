"""Tests for core.data: every source on tiny data written to tmp_path, the cache, subsets, errors."""

from __future__ import annotations

import gzip
import io
import logging
import math
import pickle
import re
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import DataConfig, SyntheticConfig
from core.data import DataError, ImageSplits, load_dataset
from core.data.subset import allocate, stratified_indices
from core.data.synthetic import class_angles

SHARED = Path(__file__).resolve().parents[1].parent / "shared/data"
CLASSES = ["cat", "dog", "emu"]  # already sorted: label = position
TRAIN_COUNTS = {"cat": 4, "dog": 3, "emu": 2}
TEST_COUNTS = {"cat": 2, "dog": 1, "emu": 2}


# ---------------------------------------------------------------- helpers


def _image(label: int, i: int, h: int = 8, w: int = 8) -> torch.Tensor:
    """A distinct, exactly reproducible image per (label, i)."""
    g = torch.Generator().manual_seed(1000 * label + i)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def _encode(img: torch.Tensor, fmt: str = "PNG") -> bytes:
    """Encode a (3,H,W) uint8 tensor with PIL (torchvision 0.29's encoders are deprecated)."""
    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _write_tree(root: Path, test_dir: str = "test", odd: tuple[str, int, int] | None = None) -> dict:
    """An imagefolder tree of PNGs (plus one JPEG per split and junk to ignore); returns expected images."""
    expected: dict[str, list[torch.Tensor]] = {"train": [], "test": []}
    for split, counts in (("train", TRAIN_COUNTS), (test_dir, TEST_COUNTS)):
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(counts[cls]):
                img = _image(label, i)
                (folder / f"{i:03d}.png").write_bytes(_encode(img))
                expected["train" if split == "train" else "test"].append(img)
        (root / split / "cat" / ".hidden.png").write_bytes(b"not an image")
        (root / split / "dog" / "notes.txt").write_text("ignored")
    if odd is not None:  # one image of another size, sorting last in its class
        h, w = odd[1], odd[2]
        (root / "train" / odd[0] / "zzz.png").write_bytes(_encode(_image(9, 9, h, w)))
    return expected


def _write_tar(tree: Path, archive: Path, nested: bool) -> None:
    """The tree at the archive top or under top/, plus debris the loader must ignore."""
    mode = "w:gz" if archive.name.endswith("gz") else "w"
    with tarfile.open(archive, mode) as tf:
        for child in sorted(tree.iterdir()):
            tf.add(child, arcname=f"top/{child.name}" if nested else child.name)
        for name, data in (("preview.png", _encode(_image(8, 8))), ("__MACOSX/top/train/cat/._0.png", b"junk")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _cfg(tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(cache_dir=tmp_path / "cache", **kw)


def _same(a: ImageSplits, b: ImageSplits) -> bool:
    return (
        a.classes == b.classes
        and torch.equal(a.train_images, b.train_images)
        and torch.equal(a.train_labels, b.train_labels)
        and torch.equal(a.test_images, b.test_images)
        and torch.equal(a.test_labels, b.test_labels)
    )


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def _idx_folder(root: Path, gz: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    data = {
        "train_images": rng.integers(0, 256, (7, 5, 6), dtype=np.uint8),
        "train_labels": np.array([0, 1, 2, 3, 1, 0, 2], dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 5, 6), dtype=np.uint8),
        "test_labels": np.array([3, 0, 1], dtype=np.uint8),
    }
    root.mkdir()
    ext = ".gz" if gz else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        _write_idx(root / f"{prefix}-images-idx3-ubyte{ext}", data[f"{split}_images"], 0x00000803)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte{ext}", data[f"{split}_labels"], 0x00000801)
    return data


# ---------------------------------------------------------------- imagefolder and tarball


def test_imagefolder_shapes_labels_and_pixels(tmp_path: Path) -> None:
    expected = _write_tree(tmp_path / "imgs")
    s = load_dataset(_cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs"))
    assert s.name == "imagefolder:imgs"
    assert s.classes == CLASSES and s.num_classes == 3 and s.channels == 3 and s.image_size == 8
    assert s.train_images.shape == (9, 3, 8, 8) and s.test_images.shape == (5, 3, 8, 8)
    assert s.train_images.dtype == torch.uint8 and s.train_labels.dtype == torch.int64
    assert s.train_labels.tolist() == [0] * 4 + [1] * 3 + [2] * 2
    assert s.test_labels.tolist() == [0] * 2 + [1] + [2] * 2
    assert torch.equal(s.train_images, torch.stack(expected["train"]))
    assert torch.equal(s.test_images, torch.stack(expected["test"]))
    assert s.pretrain is s.train_images


def test_imagefolder_reads_jpeg_and_uses_val_without_test(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root, test_dir="val")
    img = torch.zeros(3, 8, 8, dtype=torch.uint8)
    img[0], img[1], img[2] = 200, 100, 30  # flat colour survives JPEG almost exactly
    (root / "val" / "emu" / "photo.JPG").write_bytes(_encode(img, "JPEG"))
    s = load_dataset(_cfg(tmp_path, source="imagefolder", root=root))
    assert s.test_images.shape == (6, 3, 8, 8) and s.test_labels.tolist()[-1] == 2
    assert (s.test_images[-1].int() - img.int()).abs().max() <= 3  # lossy, but the same picture


@pytest.mark.parametrize("archive_name", ["imgs.tar.gz", "imgs.tar"])
@pytest.mark.parametrize("nested", [False, True], ids=["top", "nested"])
def test_tarball_decodes_like_imagefolder(tmp_path: Path, archive_name: str, nested: bool) -> None:
    _write_tree(tmp_path / "imgs")
    (tmp_path / "imgs" / "train" / "dog" / "x.jpeg").write_bytes(_encode(_image(7, 7), "JPEG"))
    _write_tar(tmp_path / "imgs", tmp_path / archive_name, nested)
    folder = load_dataset(_cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs"))
    tar = load_dataset(_cfg(tmp_path, source="tarball", root=tmp_path / archive_name))
    assert tar.name == "tarball:imgs"
    assert _same(folder, tar)


def test_imagefolder_without_test_split(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root)
    for f in (root / "test").rglob("*"):
        if f.is_file():
            f.unlink()
    with pytest.raises(DataError, match="expected train/ and test/ \\(or val/\\)") as err:
        load_dataset(_cfg(tmp_path, source="imagefolder", root=root))
    assert str(root) in str(err.value)


def test_test_classes_must_match_train(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root)
    (root / "test" / "emu").rename(root / "test" / "gnu")
    with pytest.raises(DataError, match=r"only in train: \['emu'\], only in test: \['gnu'\]"):
        load_dataset(_cfg(tmp_path, source="imagefolder", root=root))


def test_corrupt_image_is_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "imgs"
    expected = _write_tree(root)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    with caplog.at_level(logging.WARNING, logger="core.data.store"):
        s = load_dataset(_cfg(tmp_path, source="imagefolder", root=root))
    assert f"{root / 'train' / 'dog' / 'broken.jpg'}: cannot decode image" in caplog.text
    assert s.train_labels.tolist() == [0] * 4 + [1] * 3 + [2] * 2  # left out, labels still aligned
    assert torch.equal(s.train_images, torch.stack(expected["train"]))


def test_bmp_decodes_through_fallback(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root)
    img = _image(3, 3)
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / "test" / "dog" / "b.bmp")
    s = load_dataset(_cfg(tmp_path, source="imagefolder", root=root))
    assert torch.equal(s.test_images[3], img)


def test_varying_sizes_need_image_size(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root, odd=("dog", 12, 16))
    with pytest.raises(DataError, match=r"images differ in size.*data\.image_size") as err:
        load_dataset(_cfg(tmp_path, source="imagefolder", root=root))
    assert "zzz.png is 12x16" in str(err.value)
    s = load_dataset(_cfg(tmp_path, source="imagefolder", root=root, image_size=8))
    assert s.train_images.shape == (10, 3, 8, 8) and s.image_size == 8


def test_image_size_resizes_shorter_side_then_center_crops(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    img = torch.zeros(3, 16, 32, dtype=torch.uint8)  # H=16, W=32: red edge | green middle | blue edge
    img[0, :, :6] = 255
    img[1, :, 6:26] = 200
    img[2, :, 26:] = 255
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            (root / split / cls / "x.png").write_bytes(_encode(img))
    s = load_dataset(_cfg(tmp_path, source="imagefolder", root=root, image_size=8))
    assert s.train_images.shape == (2, 3, 8, 8)
    centre = s.train_images[0].int()  # 16x32 -> 8x16, keep the centre 8 columns: green only
    assert (centre[1] - 200).abs().max() <= 2 and centre[0].max() <= 2 and centre[2].max() <= 2


# ---------------------------------------------------------------- idx


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
def test_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    data = _idx_folder(tmp_path / "mnist", gz)
    s = load_dataset(_cfg(tmp_path, source="idx", root=tmp_path / "mnist"))
    assert s.train_images.shape == (7, 1, 5, 6) and s.test_images.shape == (3, 1, 5, 6)
    assert np.array_equal(s.train_images[:, 0].numpy(), data["train_images"])
    assert np.array_equal(s.test_images[:, 0].numpy(), data["test_images"])
    assert s.train_labels.tolist() == data["train_labels"].tolist() and s.train_labels.dtype == torch.int64
    assert s.classes == ["0", "1", "2", "3"] and s.channels == 1


def test_idx_bad_magic(tmp_path: Path) -> None:
    _idx_folder(tmp_path / "mnist", gz=True)
    bad = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    _write_idx(bad, np.zeros((7, 5, 6), np.uint8), 0x00000801)
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path, source="idx", root=tmp_path / "mnist"))
    assert str(err.value) == f"{bad}: bad IDX magic 0x00000801 (expected 0x00000803 for images)"


def test_idx_truncated_and_mismatched(tmp_path: Path) -> None:
    _idx_folder(tmp_path / "mnist", gz=False)
    images = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        load_dataset(_cfg(tmp_path, source="idx", root=tmp_path / "mnist"))
    assert str(images) in str(err.value)
    _write_idx(images, np.zeros((4, 5, 6), np.uint8), 0x00000803)
    with pytest.raises(DataError, match="4 images but t10k-labels-idx1-ubyte has 3 labels"):
        load_dataset(_cfg(tmp_path, source="idx", root=tmp_path / "mnist"))


# ---------------------------------------------------------------- torchvision sources


def _fake_cifar10(root: Path) -> tuple[np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (6 * 4, 3072), dtype=np.uint8)
    labels = [int(x) for x in rng.integers(0, 10, 6 * 4)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows[4 * i : 4 * i + 4], "labels": labels[4 * i : 4 * i + 4]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    return rows, labels


def test_fake_cifar10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # our fake files have other md5s
    rows, labels = _fake_cifar10(tmp_path / "tv")
    s = load_dataset(_cfg(tmp_path, source="cifar10", root=tmp_path / "tv"))
    assert s.name == "cifar10" and s.classes == [f"c{k}" for k in range(10)]
    assert s.train_images.shape == (20, 3, 32, 32) and s.test_images.shape == (4, 3, 32, 32)
    assert np.array_equal(s.train_images.reshape(20, -1).numpy(), rows[:20])  # CHW order, as stored
    assert s.train_labels.tolist() == labels[:20] and s.test_labels.tolist() == labels[20:]


def _fake_stl10(root: Path) -> dict[str, np.ndarray]:
    """stl10_binary/ with 10 train, 4 test and 3 unlabeled images (stored column-major, as STL-10 is)."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = {
        split: rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        for split, n in (("train", 10), ("test", 4), ("unlabeled", 3))
    }
    for split, array in images.items():
        array.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
    (np.arange(10, dtype=np.uint8) % 10 + 1).tofile(folder / "train_y.bin")  # 1-based on disk
    np.array([1, 2, 3, 4], dtype=np.uint8).tofile(folder / "test_y.bin")
    (folder / "class_names.txt").write_text("\n".join(f"s{k}" for k in range(10)) + "\n")
    return images


def test_fake_stl10_with_unlabeled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.stl10 as tv_stl10

    monkeypatch.setattr(tv_stl10, "check_integrity", lambda *a, **k: True)
    images = _fake_stl10(tmp_path / "tv")
    cfg = _cfg(tmp_path, source="stl10", root=tmp_path / "tv")
    s = load_dataset(cfg)
    assert s.classes == [f"s{k}" for k in range(10)] and s.pretrain is s.train_images
    assert np.array_equal(s.train_images.numpy(), images["train"]) and s.test_labels.tolist() == [0, 1, 2, 3]
    u = load_dataset(cfg.model_copy(update={"stl10_unlabeled": True, "subset": 5}), seed=3)
    assert u.train_images.shape == (5, 3, 96, 96) and u.pretrain.shape == (13, 3, 96, 96)
    assert np.array_equal(u.pretrain[10:].numpy(), images["unlabeled"])
    assert u.train_labels.tolist() == sorted(set(u.train_labels.tolist()))  # one per class, distinct
    r = load_dataset(cfg.model_copy(update={"stl10_unlabeled": True, "image_size": 32}))
    assert r.pretrain.shape == (13, 3, 32, 32) and r.test_images.shape == (4, 3, 32, 32)


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("imagefolder", "does not exist; expected train/ and test/ (or val/)"),
        ("tarball", "does not exist (expected a .tar.gz"),
        ("idx", "does not exist (expected a folder of MNIST-layout IDX files)"),
        (
            "cifar10",
            "no CIFAR-10 found (expected cifar-10-batches-py/ under this torchvision root; "
            "set data.download: true to fetch it)",
        ),
        ("stl10", "no STL-10 found (expected stl10_binary/"),
    ],
)
def test_missing_data_names_the_path(tmp_path: Path, source: str, expected: str) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path, source=source, root=root))
    assert str(err.value).startswith(f"{root}: ") and expected in str(err.value)
    assert isinstance(err.value, ValueError)


def test_not_a_tar_archive(tmp_path: Path) -> None:
    junk = tmp_path / "f.tar.gz"
    junk.write_bytes(b"this is not an archive" * 100)
    with pytest.raises(DataError, match="not a readable tar archive") as err:
        load_dataset(_cfg(tmp_path, source="tarball", root=junk))
    assert str(junk) in str(err.value)
    _write_tree(tmp_path / "imgs")
    _write_tar(tmp_path / "imgs", tmp_path / "good.tar.gz", nested=False)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes((tmp_path / "good.tar.gz").read_bytes()[:300])
    with pytest.raises(DataError, match=re.escape(f"{cut}: not a readable tar archive")):
        load_dataset(_cfg(tmp_path, source="tarball", root=cut))


def test_idx_missing_file_names_it(tmp_path: Path) -> None:
    _idx_folder(tmp_path / "mnist", gz=True)
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte or t10k-labels-idx1-ubyte\.gz"):
        load_dataset(_cfg(tmp_path, source="idx", root=tmp_path / "mnist"))


# ---------------------------------------------------------------- cache


def test_cache_hit_does_not_decode_again(tmp_path: Path, decode_calls: list[int]) -> None:
    _write_tree(tmp_path / "imgs")
    cfg = _cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs")
    first = load_dataset(cfg)
    assert len(decode_calls) == 14
    second = load_dataset(cfg)
    assert len(decode_calls) == 14 and _same(first, second)
    entry = next((tmp_path / "cache").iterdir())
    assert sorted(p.name for p in entry.iterdir()) == [
        "meta.json",
        "test_images.npy",
        "test_labels.npy",
        "train_images.npy",
        "train_labels.npy",
    ]  # no temp files left behind
    load_dataset(cfg.model_copy(update={"image_size": 8}))  # image_size is part of the key
    assert len(decode_calls) == 28


def test_torn_cache_file_is_detected_and_rebuilt(
    tmp_path: Path, decode_calls: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    _write_tree(tmp_path / "imgs")
    cfg = _cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs")
    first = load_dataset(cfg)
    entry = next((tmp_path / "cache").iterdir())
    npy = entry / "train_images.npy"
    npy.write_bytes(npy.read_bytes()[:200])  # torn write
    with caplog.at_level(logging.WARNING, logger="core.data.cache"):
        second = load_dataset(cfg)
    assert "unreadable" in caplog.text and str(entry) in caplog.text
    assert len(decode_calls) == 28 and _same(first, second)
    assert len(decode_calls) == 28 and _same(first, load_dataset(cfg))  # repaired: a hit again
    (entry / "meta.json").unlink()  # killed before the sidecar: entry ignored, rebuilt
    assert _same(first, load_dataset(cfg)) and len(decode_calls) == 42


def test_cache_sidecar_mismatch_is_rebuilt(tmp_path: Path) -> None:
    _idx_folder(tmp_path / "mnist", gz=False)
    cfg = _cfg(tmp_path, source="idx", root=tmp_path / "mnist")
    first = load_dataset(cfg)
    entry = next((tmp_path / "cache").iterdir())
    np.save(entry / "test_labels.npy", np.zeros(3, dtype=np.int32))  # readable, but wrong dtype
    assert _same(first, load_dataset(cfg))
    assert np.load(entry / "test_labels.npy").dtype == np.int64


def test_cache_follows_changes_to_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _write_tree(root)
    cfg = _cfg(tmp_path, source="imagefolder", root=root)
    assert load_dataset(cfg).train_images.shape[0] == 9
    time.sleep(0.05)  # let the class folder mtime tick over
    (root / "train" / "emu" / "new.png").write_bytes(_encode(_image(2, 50)))
    assert load_dataset(cfg).train_images.shape[0] == 10


def test_synthetic_is_not_cached(tmp_path: Path) -> None:
    load_dataset(_cfg(tmp_path, source="synthetic"))
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- subsets


def test_allocate_largest_remainder() -> None:
    assert allocate(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0: tie -> lower class
    assert allocate(np.array([7, 7, 7]), 10).tolist() == [4, 3, 3]
    assert allocate(np.array([1, 98, 1]), 10).tolist() == [0, 10, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(0, 50, rng.integers(1, 12))
        counts[0] += 1
        n = int(rng.integers(0, counts.sum() + 1))
        got = allocate(counts, n)
        quotas = counts * n / counts.sum()
        assert got.sum() == n and np.all(got <= counts) and np.all(np.abs(got - quotas) < 1)


def test_subset_stratified_exact_deterministic_seeded(tmp_path: Path) -> None:
    syn = SyntheticConfig(num_classes=4, train_size=400, test_size=100)
    cfg = _cfg(tmp_path, source="synthetic", synthetic=syn, subset=50, test_subset=30)
    a, b, c = load_dataset(cfg, seed=1), load_dataset(cfg, seed=1), load_dataset(cfg, seed=2)
    assert a.train_labels.bincount().tolist() == [13, 13, 12, 12]
    assert a.test_labels.bincount().tolist() == [8, 8, 7, 7]
    assert a.pretrain is a.train_images
    assert _same(a, b)
    full = load_dataset(cfg.model_copy(update={"subset": None, "test_subset": None}), seed=1)
    idx = stratified_indices(full.train_labels.numpy(), 50, 1, "train", "data.subset")
    assert np.all(np.diff(idx) > 0)  # stable (ascending) order, no repeats
    assert torch.equal(a.train_images, full.train_images[torch.from_numpy(idx)])
    idx2 = stratified_indices(full.train_labels.numpy(), 50, 2, "train", "data.subset")
    assert not np.array_equal(idx, idx2)  # another seed, another subset
    assert c.train_labels.bincount().tolist() == [13, 13, 12, 12]


def test_subset_larger_than_split(tmp_path: Path) -> None:
    _write_tree(tmp_path / "imgs")
    with pytest.raises(DataError, match=r"data.test_subset=6 is larger than the test split \(5 images\)"):
        load_dataset(_cfg(tmp_path, source="imagefolder", root=tmp_path / "imgs", test_subset=6))


# ---------------------------------------------------------------- synthetic


def _dominant_angle(images: torch.Tensor) -> np.ndarray:
    """Orientation (radians in [0, pi)) of each image's strongest spatial frequency."""
    gray = images.float().mean(1)
    spec = torch.fft.fft2(gray - gray.mean((1, 2), keepdim=True)).abs()
    size = gray.shape[-1]
    freqs = torch.fft.fftfreq(size)
    flat = spec.reshape(len(spec), -1).argmax(1)
    fy, fx = freqs[flat // size].numpy(), freqs[flat % size].numpy()
    return np.mod(np.arctan2(fy, fx), np.pi)


def test_synthetic_deterministic_and_class_in_orientation(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, source="synthetic", synthetic=SyntheticConfig(num_classes=4, train_size=64, test_size=32))
    a, b, c = load_dataset(cfg, seed=0), load_dataset(cfg, seed=0), load_dataset(cfg, seed=1)
    assert _same(a, b) and not torch.equal(a.train_images, c.train_images)
    assert a.name == "synthetic" and a.num_classes == 4 and a.train_images.shape == (64, 3, 32, 32)
    assert a.train_labels.bincount().tolist() == [16] * 4
    assert not torch.equal(a.train_images[:32], a.test_images)  # independent draws
    angles = _dominant_angle(a.train_images)
    target = class_angles(4)[a.train_labels.numpy()]
    err = np.abs(np.angle(np.exp(2j * (angles - target)))) / 2  # orientation difference mod pi
    assert err.max() < math.radians(10)


def test_synthetic_colour_does_not_predict_class(tmp_path: Path) -> None:
    syn = SyntheticConfig(num_classes=4, train_size=800, test_size=800)
    s = load_dataset(_cfg(tmp_path, source="synthetic", synthetic=syn))
    colour = [images.float().mean((2, 3)) for images in (s.train_images, s.test_images)]
    centroids = torch.stack([colour[0][s.train_labels == k].mean(0) for k in range(4)])
    predicted = torch.cdist(colour[1], centroids).argmin(1)
    assert (predicted == s.test_labels).float().mean() < 0.4  # chance is 0.25


def test_synthetic_grayscale_and_resize(tmp_path: Path) -> None:
    syn = SyntheticConfig(channels=1, image_size=16, train_size=8, test_size=4)
    s = load_dataset(_cfg(tmp_path, source="synthetic", synthetic=syn))
    assert s.train_images.shape == (8, 1, 16, 16) and s.channels == 1
    s = load_dataset(_cfg(tmp_path, source="synthetic", synthetic=syn, image_size=8))
    assert s.train_images.shape == (8, 1, 8, 8) and s.test_images.shape == (4, 1, 8, 8)


# ---------------------------------------------------------------- real data (slow)


@pytest.mark.slow
def test_real_cifar10_tarball_and_fashion_mnist(tmp_path: Path) -> None:
    tarball, fashion = SHARED / "cifar10-jpeg.tar.gz", SHARED / "fashion-mnist"
    if not tarball.is_file() or not (fashion / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real data not found under {SHARED} (needs cifar10-jpeg.tar.gz and fashion-mnist/)")
    start = time.perf_counter()
    cifar = load_dataset(_cfg(tmp_path, source="tarball", root=tarball))
    print(f"CIFAR-10 tarball decode + cache write: {time.perf_counter() - start:.1f} s")
    assert cifar.train_images.shape == (50000, 3, 32, 32) and cifar.test_images.shape == (10000, 3, 32, 32)
    assert cifar.num_classes == 10 and cifar.classes[0] == "airplane"
    assert cifar.train_labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    again = load_dataset(_cfg(tmp_path, source="tarball", root=tarball))
    print(f"CIFAR-10 cache hit: {time.perf_counter() - start:.2f} s")
    assert torch.equal(again.test_images, cifar.test_images)
    fm = load_dataset(_cfg(tmp_path, source="idx", root=fashion))
    assert fm.train_images.shape == (60000, 1, 28, 28) and fm.test_images.shape == (10000, 1, 28, 28)
    assert fm.num_classes == 10 and fm.train_labels.bincount().tolist() == [6000] * 10
