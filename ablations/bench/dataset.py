"""Which images the end-to-end rows train on: ``--data PATH``, else ``$SIMCLR_DATA``, else synthetic.

The path means what it means for every other command (``ablations.data_option``): a .tar.gz of an
ImageFolder tree, an ImageFolder tree, or a torchvision root holding CIFAR-10. Without either, the
rows run on synthetic CIFAR-10-shaped images and the table's data line says why, so a bench runs
in any clone; ``--data synthetic`` asks for those even where ``$SIMCLR_DATA`` is set.
"""

from __future__ import annotations

from pathlib import Path

from ablations.data_option import DATA_ENV, data_overrides
from ablations.yamlfile import ConfigFileError
from core.config import DataConfig

SYNTHETIC = "synthetic"
# what a path of each source holds here: the bench's workload is CIFAR-10
_KINDS = {"tarball": "CIFAR-10 (JPEG)", "imagefolder": "ImageFolder tree", "cifar10": "CIFAR-10 (torchvision)"}


def bench_data(option: Path | None, synthetic_size: int) -> tuple[DataConfig, str]:
    """The end-to-end rows' data and the table's words for it.

    Checked before anything is measured: a path that is not there raises ConfigFileError (exit 2)
    naming where it came from, instead of failing minutes later after the augmentation rows.
    """
    resolved = data_overrides(option, {}, file_source="cifar10", file_sets_root=False)
    if not resolved:
        return _synthetic(synthetic_size, f"no --data PATH or ${DATA_ENV} given")
    root, source = Path(resolved["data.root"]), resolved["data.source"]
    if str(root) == SYNTHETIC:
        return _synthetic(synthetic_size, "asked for")
    if not root.exists():
        origin = "--data" if option is not None else f"${DATA_ENV}"
        raise ConfigFileError(
            f"{origin} {root}: does not exist (expected a .tar.gz of CIFAR-10's ImageFolder tree, "
            "such a tree, or a torchvision root with cifar-10-batches-py/ in it; or 'synthetic')"
        )
    return DataConfig(source=source, root=root), f"{_KINDS[source]} from {root}"


def _synthetic(size: int, why: str) -> tuple[DataConfig, str]:
    cfg = DataConfig(
        source="synthetic",
        synthetic={"num_classes": 10, "train_size": size, "test_size": 20, "image_size": 32},
    )
    return cfg, f"synthetic, CIFAR-10 shape ({size:,} x 3 x 32 x 32; {why})"
