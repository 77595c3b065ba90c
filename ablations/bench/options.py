"""``BenchOptions``: every choice of one bench run, as one typed, frozen object.

The command builds it from its parsed arguments (``ablations.commands.bench``) and ``run_bench``
reads it, so an option is one field here and one argument there rather than a parameter threaded
through every call. Sizes left ``None`` depend on the device; ``sizes_for`` fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

if TYPE_CHECKING:  # the command line builds options without importing torch (a 2 s import)
    import torch

CIFAR_TRAIN_IMAGES = 50_000
T = TypeVar("T")


class Sizes(NamedTuple):
    """The run's sizes once the device is known (no ``None`` left)."""

    batch_size: int  # end-to-end batch
    steps: int  # timed end-to-end steps per pipeline
    aug_seconds: float  # seconds per augmentation pipeline, over all its rounds
    per_image_count: int  # images of each per-image torchvision timing
    numerics_batch: int
    numerics_steps: int  # timed steps per round of the numerics comparison


@dataclass(frozen=True)
class BenchOptions:
    """What one ``python -m ablations bench`` measures, on what, and for how long."""

    device: str = "auto"  # auto (cuda if available), cpu, cuda, cuda:1, ...
    quick: bool = False  # CPU-sized: fewer iterations; on CPU a smaller batch and fewer steps
    batch_size: int | None = None  # end-to-end batch (default 512; 128 quick on CPU)
    steps: int | None = None  # timed end-to-end steps (default 50; 10 quick; 2 quick on CPU)
    workers: int = 2  # DataLoader workers of the torchvision pipeline
    data: Path | None = None  # --data as given: None reads $SIMCLR_DATA, else synthetic (bench.dataset)
    encoder: str = "resnet18"  # the end-to-end model
    compile: bool | str = False  # train.compile: False, True or a torch.compile mode
    profile: bool = False  # also profile one step of (a)
    synthetic_size: int = CIFAR_TRAIN_IMAGES  # images of the synthetic stand-in for CIFAR-10
    aug_batch_size: int = 512
    aug_seconds: float | None = None  # default 5; 2 quick
    per_image_count: int | None = None  # default 512; 128 quick
    image_sizes: tuple[int, ...] = (32, 96)  # augmentation image sizes
    numerics_encoder: str | None = "resnet_small"  # None skips the numerics comparison
    numerics_width: int = 16
    numerics_batch: int | None = None  # default 256 on CPU, 512 on CUDA
    numerics_steps: int | None = None  # default 3 on CPU, 20 on CUDA
    numerics_rounds: int = 5
    command: str = ""  # the command line as typed, kept in the JSON

    def sizes_for(self, device: torch.device) -> Sizes:
        """The sizes given, and for those left ``None`` the defaults on ``device``."""
        cpu = device.type == "cpu"
        cpu_quick = self.quick and cpu
        return Sizes(
            batch_size=_given(self.batch_size, 128 if cpu_quick else 512),
            steps=_given(self.steps, 2 if cpu_quick else (10 if self.quick else 50)),
            aug_seconds=_given(self.aug_seconds, 2.0 if self.quick else 5.0),
            per_image_count=_given(self.per_image_count, 128 if self.quick else 512),
            numerics_batch=_given(self.numerics_batch, 256 if cpu else 512),
            numerics_steps=_given(self.numerics_steps, 3 if cpu else 20),
        )


def _given(value: T | None, default: T) -> T:
    return default if value is None else value
