"""Tests for core.data.store: the chunked on-disk store of an imagefolder/tarball tree.

Every test builds a real store from real (tiny, synthetic) image files of mixed sizes and modes:
RGB, grayscale and CMYK JPEGs, a PNG named .JPEG, and broken files (truncated, garbage, empty).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import DataConfig
from core.data import DataError, load_dataset, store, store_rows
from core.data.cache import entry_dir, load
from core.data.class_list import builtin_lists, parse_class_file, selected_classes
from core.data.decode import decode_image_bytes, resize_center_crop
from core.data.store import build_store
from core.data.store_files import ProgressLog

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["n01", "n02", "n03"]
TRAIN_PER_CLASS, TEST_PER_CLASS = 6, 2
SIZE = 16
ROW = 3 * SIZE * SIZE
FILES = ["train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy", "meta.json"]


# ---------------------------------------------------------------- helpers


def _photo(seed: int, h: int, w: int) -> np.ndarray:
    """A smooth colour picture with some noise: distinct per seed, and a realistic JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * rng.uniform(1, 5) + y * rng.uniform(0, 3)) % 256 for _ in range(3)], -1)
    return np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, kind: str) -> bytes:
    """RGB, L (grayscale) or CMYK JPEG at quality 90, or a PNG (which the tree names .JPEG)."""
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    if kind == "png":
        img.save(buf, format="PNG")
    else:
        img.convert(kind).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _write_tree(root: Path, bad: bool = False) -> None:
    """train/ and val/ of CLASSES, every file a .JPEG of another size and mode; ``bad`` adds broken
    files, each sorting last in its class: a truncated JPEG (train/n01), garbage and an empty
    file (train/n02), and a JPEG cut inside its header (val/n03)."""
    kinds = ["RGB", "L", "CMYK", "png"]
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", TEST_PER_CLASS)):
        for label, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                seed = 100 * label + 10 * (split == "val") + i
                h, w = 18 + (seed * 7) % 23, 18 + (seed * 11) % 29
                (folder / f"img{i:02d}.JPEG").write_bytes(_encode(_photo(seed, h, w), kinds[(label + i) % 4]))
    if bad:
        whole = _encode(_photo(999, 64, 80), "RGB")
        (root / "train/n01/zz_truncated.JPEG").write_bytes(whole[: len(whole) * 2 // 3])
        (root / "train/n02/zz_garbage.JPEG").write_bytes(np.random.default_rng(1).bytes(3000))
        (root / "train/n02/zz_empty.JPEG").write_bytes(b"")
        (root / "val/n03/zz_cut.JPEG").write_bytes(whole[:120])


SKIPPED = ["train/n02/zz_empty.JPEG", "train/n02/zz_garbage.JPEG", "val/n03/zz_cut.JPEG"]
TRUNCATED = ["train/n01/zz_truncated.JPEG"]


def _cfg(tmp_path: Path, root: Path, cache: str = "cache", **kw) -> DataConfig:
    source = "tarball" if root.name.endswith(".tar.gz") else "imagefolder"
    return DataConfig(source=source, root=root, image_size=SIZE, cache_dir=tmp_path / cache, **kw)


def _tar(tree: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tree, arcname="imagenet")  # under one top folder, as such archives usually are
    return archive


def _expected(root: Path, split_dir: str, classes: list[str] = CLASSES) -> tuple[list[np.ndarray], list[int]]:
    """The existing decode (decode_image_bytes + resize_center_crop) of every good file, in store order."""
    images, labels = [], []
    for label, cls in enumerate(classes):
        for path in sorted((root / split_dir / cls).iterdir()):
            if path.name.startswith("zz_"):
                continue
            images.append(resize_center_crop(decode_image_bytes(path.read_bytes(), str(path)), SIZE).numpy())
            labels.append(label)
    return images, labels


def _files(entry: Path) -> dict[str, bytes]:
    return {name: (entry / name).read_bytes() for name in FILES}


def _check_checksums(entry: Path) -> None:
    """meta.json's whole-file and per-chunk SHA-256s match the files; the chunks tile the rows."""
    meta = json.loads((entry / "meta.json").read_text())
    for name, spec in meta["arrays"].items():
        data = (entry / f"{name}.npy").read_bytes()
        assert hashlib.sha256(data).hexdigest() == spec["sha256"] and len(data) == spec["bytes"]
        array = np.load(entry / f"{name}.npy", mmap_mode="r")
        row_bytes = array.itemsize * int(np.prod(array.shape[1:]))
        offset = array.offset
        rows = 0
        for chunk in spec["chunks"]:
            a, b = chunk["rows"]
            assert a == rows and b > a
            assert chunk["bytes"] == [offset + a * row_bytes, offset + b * row_bytes]
            assert hashlib.sha256(data[chunk["bytes"][0] : chunk["bytes"][1]]).hexdigest() == chunk["sha256"]
            rows = b
        assert rows == spec["shape"][0] == array.shape[0]


# ---------------------------------------------------------------- the build


def test_store_layout_labels_pixels_and_checksums(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    cfg = _cfg(tmp_path, root)
    entry = build_store(cfg, workers=1, chunk_bytes=ROW * 5)
    assert entry == entry_dir(cfg, "labelled")
    assert sorted(p.name for p in entry.iterdir()) == sorted(FILES)  # no progress log, lock or partial left
    for split, split_dir, per_class in (("train", "train", TRAIN_PER_CLASS), ("test", "val", TEST_PER_CLASS)):
        images = np.load(entry / f"{split}_images.npy", mmap_mode="r")  # part B's reader opens it this way
        labels = np.load(entry / f"{split}_labels.npy")
        assert isinstance(images, np.memmap) and images.dtype == np.uint8
        assert images.shape == (3 * per_class, 3, SIZE, SIZE) and labels.dtype == np.int64
        want_images, want_labels = _expected(root, split_dir)
        assert labels.tolist() == want_labels == [0] * per_class + [1] * per_class + [2] * per_class
        for row, want in enumerate(want_images):  # RGB, grayscale, CMYK and PNG-as-JPEG alike
            assert np.array_equal(images[row], want), row
    meta = json.loads((entry / "meta.json").read_text())
    assert meta["classes"] == CLASSES and meta["skipped"] == [] and meta["truncated"] == []
    assert len(meta["arrays"]["train_images"]["chunks"]) == 4  # 18 rows, 5 per chunk
    _check_checksums(entry)
    decoded = load(entry)  # today's cache reader takes it as it is
    assert decoded is not None and decoded.classes == CLASSES
    splits = load_dataset(cfg)  # and training reads it through load_dataset, without decoding again
    assert np.array_equal(splits.train_images.numpy(), decoded.arrays["train_images"])


def test_bad_files_are_skipped_listed_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    with caplog.at_level(logging.WARNING, logger="core.data.store"):
        entry = build_store(_cfg(tmp_path, root), workers=1, chunk_bytes=ROW * 4)
    skipped_warnings = [r.getMessage() for r in caplog.records if "could not be decoded" in r.getMessage()]
    assert len(skipped_warnings) == 1  # one warning naming every skipped file, with its reason
    for rel in SKIPPED:
        assert re.search(re.escape(str(root / rel)) + r": \w", skipped_warnings[0])
    assert str(root / TRUNCATED[0]) in caplog.text and "cut short" in caplog.text
    meta = json.loads((entry / "meta.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == [str(root / rel) for rel in SKIPPED]
    assert [s["path"] for s in meta["truncated"]] == [str(root / rel) for rel in TRUNCATED]
    assert "empty file" in meta["skipped"][0]["reason"]
    # the truncated JPEG is in (decoded as far as it goes, last of n01); the others are out
    train, test = np.load(entry / "train_images.npy"), np.load(entry / "test_images.npy")
    train_labels, test_labels = np.load(entry / "train_labels.npy"), np.load(entry / "test_labels.npy")
    assert train.shape[0] == 3 * TRAIN_PER_CLASS + 1 and test.shape[0] == 3 * TEST_PER_CLASS
    assert train_labels.tolist() == [0] * 7 + [1] * 6 + [2] * 6 and test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    want, _ = _expected(root, "train")
    good_rows = [r for r in range(19) if r != 6]  # row 6: the truncated file
    assert all(np.array_equal(train[r], w) for r, w in zip(good_rows, want, strict=True))
    assert all(np.array_equal(test[r], w) for r, w in enumerate(_expected(root, "val")[0]))
    assert train[6, :, -1].mean() > 100  # the missing bottom of the truncated JPEG is grey, not black
    _check_checksums(entry)  # rows moved up over the skipped files: chunk checksums still hold


def test_two_workers_give_the_same_bytes_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    one = build_store(_cfg(tmp_path, root, "one"), workers=1, chunk_bytes=ROW * 3)
    pids = tmp_path / "pids"
    real = store_rows.decode_lenient

    def noting_pid(data: bytes, name: str):  # forked workers inherit this patch and say who they are
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(data, name)

    monkeypatch.setattr(store_rows, "decode_lenient", noting_pid)
    two = build_store(_cfg(tmp_path, root, "two"), workers=2, chunk_bytes=ROW * 3)
    assert _files(one) == _files(two)
    workers = set(pids.read_text().split())
    assert workers and str(os.getpid()) not in workers  # decoded in worker processes, not here


def test_tarball_store_equals_the_folder_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    archive = _tar(root, tmp_path / "imagenet.tar.gz")
    folder = build_store(_cfg(tmp_path, root, "folder"), workers=1, chunk_bytes=ROW * 3)
    tar1 = build_store(_cfg(tmp_path, archive, "tar1"), workers=1, chunk_bytes=ROW * 3)  # small: read once
    monkeypatch.setattr(store, "PARALLEL_MIN_BYTES", 0)  # as if large: listed, then streamed to the workers
    streamed1 = build_store(_cfg(tmp_path, archive, "streamed1"), workers=1, chunk_bytes=ROW * 3)
    streamed2 = build_store(_cfg(tmp_path, archive, "streamed2"), workers=2, chunk_bytes=ROW * 3)
    assert _files(tar1) == _files(streamed1) == _files(streamed2)
    for name in FILES[:4]:
        assert (folder / name).read_bytes() == (tar1 / name).read_bytes(), name
    meta = json.loads((tar1 / "meta.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == [f"{archive}:imagenet/{rel}" for rel in SKIPPED]


@pytest.mark.parametrize("kind", ["imagefolder", "tarball", "streamed tarball"])
def test_interrupted_build_resumes_without_decoding_finished_chunks(
    tmp_path: Path,
    kind: str,
    decode_calls: list[int],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    src = root if kind == "imagefolder" else _tar(root, tmp_path / "imagenet.tar.gz")
    if kind == "streamed tarball":
        monkeypatch.setattr(store, "PARALLEL_MIN_BYTES", 0)  # as if large: listed, then streamed
    cfg, chunk = _cfg(tmp_path, src), ROW * 4  # train: 21 files in 6 chunks of 4 rows; test: 7 in 2

    class Interrupted(Exception):
        pass

    real_append = ProgressLog.append
    finished: list[int] = []

    def append_then_fail(self: ProgressLog, rec) -> None:  # the build dies right after its 3rd chunk
        real_append(self, rec)
        finished.append(rec.index)
        if len(finished) == 3:
            raise Interrupted

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ProgressLog, "append", append_then_fail)
        with pytest.raises(Interrupted):
            build_store(cfg, workers=1, chunk_bytes=chunk)
    entry = entry_dir(cfg, "labelled")
    assert not (entry / "meta.json").exists()
    done = [json.loads(line) for line in (entry / "progress.jsonl").read_text().splitlines()[1:]]
    assert len(done) == 3
    # damage one finished chunk, as a crash before the page cache reached the disk would
    staging = entry / "train_images.npy.partial"
    first = done[0]
    assert first["split"] == "train"
    offset = np.load(staging, mmap_mode="r").offset
    with staging.open("r+b") as f:
        f.seek(offset + first["index"] * 4 * ROW + 10)
        f.write(b"\x00\x01\x02")
    decode_calls.clear()
    with caplog.at_level(logging.WARNING, logger="core.data.store"):
        resumed = build_store(cfg, workers=1, chunk_bytes=chunk)
    assert "does not match its checksum; decoding it again" in caplog.text
    assert [(d["split"], d["index"]) for d in done] == [("train", 0), ("train", 1), ("train", 2)]
    # decoded again: all but the two intact chunks (8 rows); the empty file never reaches the decoder
    assert len(decode_calls) == 21 + 7 - 8 - 1
    clean = build_store(_cfg(tmp_path, src, "clean"), workers=1, chunk_bytes=chunk)
    assert _files(resumed) == _files(clean)  # byte for byte, meta.json included


def test_build_killed_with_sigkill_resumes_to_identical_bytes(tmp_path: Path, decode_calls: list[int]) -> None:
    """A real build with 2 worker processes, SIGKILLed after 2 chunks, then run again."""
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from core.config import DataConfig
        from core.data.store import build_store
        from core.data.store_files import ProgressLog
        real, count = ProgressLog.append, []
        def append(self, rec):
            real(self, rec)
            count.append(1)
            if len(count) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        ProgressLog.append = append
        cfg = DataConfig(source="imagefolder", root=Path({str(root)!r}), image_size={SIZE},
                         cache_dir=Path({str(tmp_path / "cache")!r}))
        build_store(cfg, workers=2, chunk_bytes={ROW * 4})
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    cfg = _cfg(tmp_path, root)
    entry = entry_dir(cfg, "labelled")
    lines = (entry / "progress.jsonl").read_text().splitlines()
    assert len(lines) == 3 and not (entry / "meta.json").exists()
    done = {(d["split"], d["index"]) for d in map(json.loads, lines[1:])}
    resumed = build_store(cfg, workers=1, chunk_bytes=ROW * 4)  # in this process, so decodes are counted
    # every file of the chunks not done reaches the decoder, but the empty one (train row 13, chunk 3)
    pending = [
        (split, row) for split, n in (("train", 21), ("test", 7)) for row in range(n) if (split, row // 4) not in done
    ]
    assert len(decode_calls) == len(pending) - (("train", 13) in pending) < 28
    clean = build_store(_cfg(tmp_path, root, "clean"), workers=2, chunk_bytes=ROW * 4)
    assert _files(resumed) == _files(clean)


def test_images_of_other_sizes_need_image_size_and_leave_no_entry(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    cfg = _cfg(tmp_path, root).model_copy(update={"image_size": None})
    with pytest.raises(DataError, match=r"images differ in size .*set data\.image_size"):
        build_store(cfg, workers=1)
    assert list((tmp_path / "cache").iterdir()) == []  # the same settings would fail again: nothing kept


def test_npy_header_padded_for_fewer_rows_still_loads(tmp_path: Path) -> None:
    from core.data.store_files import npy_header

    long = npy_header((1_281_167, 3, 224, 224))
    short = npy_header((5, 3, 2, 2), length=len(long))
    assert len(short) == len(long) and len(long) % 64 == 0
    path = tmp_path / "a.npy"
    data = np.arange(60, dtype=np.uint8)
    path.write_bytes(short + data.tobytes())
    assert np.array_equal(np.load(path), data.reshape(5, 3, 2, 2))
    with pytest.raises(ValueError):
        npy_header((1_281_167, 3, 224, 224), length=32)


# ---------------------------------------------------------------- data.classes


def test_classes_list_selects_folders_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    s = load_dataset(_cfg(tmp_path, root, classes=["n03", "n01"]))
    assert s.classes == ["n01", "n03"]  # sorted, whatever the list's order: labels as in ImageFolder
    assert s.train_labels.tolist() == [0] * TRAIN_PER_CLASS + [1] * TRAIN_PER_CLASS
    want, _ = _expected(root, "train", ["n01", "n03"])
    assert np.array_equal(s.train_images.numpy(), np.stack(want))
    assert s.test_images.shape[0] == 2 * TEST_PER_CLASS


def test_classes_file_is_the_same_entry_as_its_list(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    listed = tmp_path / "classes.txt"
    listed.write_text("# two of the three\nn03   # the last one\n\n  n01\nn03\n")
    assert parse_class_file(listed.read_text()) == ["n03", "n01", "n03"]
    by_file, by_list = _cfg(tmp_path, root, classes=str(listed)), _cfg(tmp_path, root, classes=["n01", "n03"])
    assert entry_dir(by_file, "labelled") == entry_dir(by_list, "labelled")
    assert entry_dir(by_list, "labelled") != entry_dir(_cfg(tmp_path, root), "labelled")
    assert entry_dir(by_list, "labelled") != entry_dir(_cfg(tmp_path, root, classes=["n01"]), "labelled")
    assert load_dataset(by_file).classes == ["n01", "n03"]


def test_builtin_imagenet100_list(tmp_path: Path) -> None:
    assert "imagenet100" in builtin_lists()
    names = selected_classes("imagenet100")
    assert names is not None and len(names) == 100 and names == sorted(set(names))
    assert all(re.fullmatch(r"n\d{8}", n) for n in names)
    assert {"n02869837", "n01749939", "n02090622"} <= set(names) and names[0] == "n01558993"
    shipped = REPO / "core/data/classes/imagenet100.txt"
    assert sorted(parse_class_file(shipped.read_text())) == names
    assert "core.data" in (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]


def test_imagenet100_selects_its_classes_from_a_tree(tmp_path: Path) -> None:
    names = selected_classes("imagenet100")
    assert names is not None
    root = tmp_path / "tree"
    for split in ("train", "val"):
        for i, wnid in enumerate([*names, "n09999999"]):  # and one class not in ImageNet-100
            (root / split / wnid).mkdir(parents=True)
            (root / split / wnid / "a.JPEG").write_bytes(_encode(_photo(i, 8, 8), "RGB"))
    s = load_dataset(_cfg(tmp_path, root, classes="imagenet100").model_copy(update={"image_size": None}))
    assert s.classes == names and s.train_labels.tolist() == list(range(100)) and s.test_images.shape[0] == 100


def test_unknown_class_names_them_and_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    with pytest.raises(DataError) as err:
        load_dataset(_cfg(tmp_path, root, classes=["n01", "n99", "zebra"]))
    message = str(err.value)
    assert message.startswith(f"{root}: ") and "n99, zebra" in message and "n01," not in message
    assert list((tmp_path / "cache").iterdir()) == []


def test_classes_setting_errors(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root)
    with pytest.raises(DataError, match=r"data\.classes .*nowhere\.txt: does not exist .*imagenet100"):
        load_dataset(_cfg(tmp_path, root, classes=str(tmp_path / "nowhere.txt")))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(DataError, match="holds no class names"):
        load_dataset(_cfg(tmp_path, root, classes=str(empty)))
    with pytest.raises(DataError, match="data.classes selects class folders of an imagefolder or tarball tree"):
        load_dataset(DataConfig(source="synthetic", classes=["a"], cache_dir=tmp_path / "cache"))
    with pytest.raises(ValueError, match="non-empty list"):
        DataConfig(source="imagefolder", root=root, classes=[])


# ---------------------------------------------------------------- the command


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SIMCLR_DATA", None)
    return subprocess.run([sys.executable, "-m", "ablations", "data", "build", *args],
                          check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_data_build_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    _write_tree(root, bad=True)
    args = ("--data", str(root), "--set", f"data.image_size={SIZE}", "--set", "data.cache_dir=cache",
            "--set", "data.classes=[n02, n01]", "--workers", "2", "--no-progress", "--per-class")
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = entry_dir(_cfg(tmp_path, root, classes=["n01", "n02"]), "labelled")
    out = proc.stdout.splitlines()
    assert out[0] == f"store: {entry}"
    size = sum(p.stat().st_size for p in entry.iterdir())
    assert out[1].startswith(
        f"size on disk: {size / 1000:.2f} KB (train 13 and test 4 images of 3x{SIZE}x{SIZE} uint8)"
    )
    assert out[2] == "classes: 2; images per class: train 6 to 7 (mean 6.5), test 2"
    assert out[3].startswith("skipped: 2 file(s) that could not be decoded; 1 truncated file(s) decoded in part")
    assert out[4:6] == ["  n01: train 7, test 2", "  n02: train 6, test 2"]
    assert str(root / "train/n02/zz_garbage.JPEG") in proc.stderr  # the warning names it
    again = _cli(*args, cwd=tmp_path)  # already built: the same report, nothing decoded
    assert again.returncode == 0 and again.stdout.splitlines()[:6] == out[:6] and "zz_garbage" not in again.stderr


def test_cli_data_build_missing_path_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = _cli("--data", str(tmp_path / "nowhere"), "--set", "data.cache_dir=cache", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(
        f"error: --data {tmp_path / 'nowhere'}: does not exist"
    )
    assert not (tmp_path / "cache").exists()
