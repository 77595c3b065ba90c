"""The floor of a run config: the same evaluation of an encoder that never learned.

A result means little without it. At a small scale a random encoder's features already separate
CIFAR-10 far above chance (a linear probe on random convolutional features does), so "40% linear
top-1" may be 11 points of learning or 30. The floor here is the run's own architecture with its
seeded random initial weights (the trainer's, bit for bit), BatchNorm statistics accumulated over
the training images (one pass, in train mode, no gradient: without it BatchNorm would normalise
with its initial mean 0 and variance 1, a floor no trained model starts from), then exactly the
run's kNN and linear evaluation. Nothing is optimised.
"""

from __future__ import annotations

import torch
from torch import nn

from core.augment.center import center_view
from core.config import RunConfig
from core.data import ImageSplits, MappedImages
from core.evaluate import Accuracy
from core.trainer import Trainer

PROTOCOL = (
    "the encoder at its seeded initial weights, BatchNorm statistics of the training images (one pass, "
    "no gradient), no learning, then the run's own kNN and linear evaluation"
)
"""How a floor is computed, in one sentence, for reports and MLflow."""


def set_batchnorm_statistics(encoder: nn.Module, images: torch.Tensor | MappedImages, batch_size: int,
                             device: torch.device, size: int | None = None) -> int:
    """Replace every BatchNorm's running mean and variance with their average over ``images``
    (uint8 (N, C, H, W), in memory or memory-mapped, seen at ``size`` as evaluation sees them);
    returns how many layers."""
    layers = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an exponential one
        m.train()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                if len(batch) < 2:
                    continue  # a batch of one has no variance
                x = center_view(torch.as_tensor(batch).to(device, torch.float32).div_(255), size)
                encoder(x)
    finally:
        for m, (momentum, training) in zip(layers, saved):
            m.momentum = momentum
            m.train(training)
    return len(layers)


def untrained_accuracies(config: RunConfig, splits: ImageSplits | None = None) -> list[Accuracy]:
    """``config``'s evaluation of its untrained encoder (see the module docstring)."""
    quiet = config.model_copy(update={"train": config.train.model_copy(update={"checkpoint": False,
                                                                                 "progress": False})})
    trainer = Trainer(quiet, run_dir=None, splits=splits)
    set_batchnorm_statistics(trainer.model.encoder, trainer.splits.train_images, config.eval.batch_size,
                             trainer.device, config.augment.crop.size)
    return trainer.evaluate(linear=config.eval.linear)
