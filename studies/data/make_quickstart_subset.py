"""Rebuild ``cifar10-quickstart.tar.gz``, the CIFAR-10 subset the quickstart study ships with.

    python studies/data/make_quickstart_subset.py CIFAR10_JPEG_TARBALL [OUT]

Takes the 4,000 training and 2,000 test images that ``data.subset: 4000`` and
``data.test_subset: 2000`` with seed 0 draw from the full CIFAR-10 (JPEG) tarball (the same
stratified, seeded draw as ``core.data.subset``: 400 and 200 per class) and writes them, byte for
byte, into a new tarball with the same ``train/<class>/`` and ``test/<class>/`` layout. The archive is
deterministic (sorted members, zero timestamps), so rebuilding it gives the same file.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path

import numpy as np

from core.data.folders import _read_members, plan_tree
from core.data.subset import stratified_indices

TRAIN, TEST, SEED = 4000, 2000, 0


def chosen_members(source: Path) -> dict[str, bytes]:
    """The quickstart's images of ``source``, keyed by their path in the archive."""
    blobs = _read_members(source)
    plan = plan_tree(blobs, str(source))
    picked: dict[str, bytes] = {}
    for entries, n, split in ((plan.train, TRAIN, "train"), (plan.test, TEST, "test")):
        labels = np.array([label for _, label in entries])
        for i in stratified_indices(labels, n, SEED, split, f"{split} subset"):
            path = entries[i][0]
            picked[path] = blobs[path]
    return picked


def write_tarball(members: dict[str, bytes], out: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(members[name]), 0, 0o644
            tf.addfile(info, io.BytesIO(members[name]))
    with open(out, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1]) if len(argv) == 2 else Path(__file__).with_name("cifar10-quickstart.tar.gz")
    members = chosen_members(Path(argv[0]))
    write_tarball(members, out)
    print(f"{out}: {len(members)} images, {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
