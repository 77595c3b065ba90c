"""The SimCLR training loop: one RunConfig in, metrics out through callbacks, resumable from checkpoints.

The hot loop does no per-image Python work and reads the loss from the device only every
``train.log_every`` steps, so on a GPU the host queues work ahead of the device.

Under torchrun (K processes) one run spans K devices: every rank draws the same global batch and
augmentation parameters, augments and encodes its own 1/K of it, and the loss is computed over the
global batch (core.distributed); BatchNorm is global by default (``train.sync_bn``). Only rank 0
calls callbacks, evaluates and writes checkpoints; results are shared with every rank.

Images in memory (``data.in_memory``) move to the training device once; memory-mapped ones stay in
their files, and each step's batch (each rank's part of it) is read ahead by a background thread
(``core.loaders.mapped_epoch``). Both give the same batches and augmentations, hence the same run.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from core import checkpoint, distributed
from core.augment import TwoViews
from core.components import build_loss, check_components
from core.config import PLACEMENT_ONLY, RunConfig, torch_compile_mode
from core.data import ImageSplits, MappedImages, load_dataset
from core.evaluate import Accuracy, evaluate_encoder
from core.loaders import TorchvisionLoader, batched_epoch, mapped_epoch
from core.losses import contrastive_accuracy
from core.models import SimCLRModel
from core.numerics import device_name, resolve_numerics
from core.optim import build_optimizer, build_scheduler

CHECKPOINT_NAME = "checkpoint.pt"
# Fields that may change between a run and its resumption without changing its result.
# (The torchvision loader seeds each image's augmentation by index, so its worker count is neutral too.)
# (Where the images are read from, memory or a memory map, gives the same batches: PLACEMENT_ONLY.)
_RESUME_NEUTRAL = {("train", "progress"), ("train", "log_every"), ("train", "checkpoint"), ("train", "loader_workers"),
                   *(tuple(dotted.split(".")) for dotted in PLACEMENT_ONLY)}


def _with_defaults(saved: Any, defaults: Any) -> Any:
    """``saved`` with every key it lacks (at any depth) taken from ``defaults``."""
    if not (isinstance(saved, dict) and isinstance(defaults, dict)):
        return saved
    return {**saved, **{k: _with_defaults(saved.get(k, v), v) for k, v in defaults.items()}}


def saved_config(run_dir: Path) -> RunConfig | None:
    """The run config the newest undamaged checkpoint in ``run_dir`` was written by (a field newer
    than the checkpoint at its default), or None when there is no usable checkpoint."""
    found = checkpoint.load_latest_good(Path(run_dir) / CHECKPOINT_NAME, warn=lambda msg: None)
    if found is None:
        return None
    saved = _with_defaults(json.loads(found[0]["config"]), json.loads(RunConfig().model_dump_json()))
    try:
        return RunConfig.model_validate(saved)
    except ValueError:  # written by a version whose fields no longer validate
        return None


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run cannot continue."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(
            f"loss is {value} at epoch {epoch + 1}, step {step}: training diverged "
            "(try a lower learning rate, a higher temperature, or fp32 precision)"
        )
        self.epoch, self.step, self.value = epoch, step, value


class StoppedByMain(RuntimeError):
    """Raised on ranks other than 0 when rank 0 stopped the run (a callback raised, e.g. pruning)."""


class Callback:
    """Hooks the trainer calls; override what you need. An exception raised here stops training."""

    def on_run_info(self, info: dict[str, str]) -> None:
        """Called once before ``on_train_start`` with what the run really uses, resolved from the
        config: ``device`` (e.g. cpu, cuda:0), ``device_name`` (the CPU or GPU model), the
        numerics (``numerics``, ``numerics.precision``, ``numerics.channels_last``) and where the
        images are read from (``data_placement``: in memory or memory-mapped, and why)."""

    def on_train_start(self, config: RunConfig, start_epoch: int) -> None:
        """Called once, after data and model are ready (start_epoch > 0 when resuming)."""

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        """Every ``train.log_every`` steps: loss (mean since the last call) and lr."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None:
        """After each epoch: loss, contrastive_acc (% of views whose nearest other view is their
        positive, Table 5), lr, images_per_sec, epoch_time_s and, when computed, knn_top1."""

    def on_train_end(self, metrics: dict[str, float], accuracies: list[Accuracy]) -> None:
        """After the final evaluation: final metrics and every accuracy with its protocol."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    metrics: dict[str, float]
    accuracies: list[Accuracy]
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available on this machine")
    return device


class Trainer:
    """Pretrain a SimCLR model for ``config`` and evaluate it; state lives in ``run_dir``."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path | None = None,
        callbacks: Sequence[Callback] = (),
        splits: ImageSplits | None = None,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.dist = distributed.env_info()
        self.callbacks = list(callbacks) if self.dist.is_main else []  # rank 0 logs for the group
        self.device = distributed.join(self.dist, resolve_device(config.train.device))
        self.numerics = resolve_numerics(config.train.precision, config.train.channels_last, self.device)
        self.splits = splits if splits is not None else load_dataset(config.data, config.train.seed, self.device)
        self._check_batch()
        # a plugin that breaks its contract fails here, naming itself, not mid-epoch
        check_components(config, shape=(self.splits.channels, int(self.splits.pretrain.shape[2])))
        self.torchvision_loader: TorchvisionLoader | None = None
        if config.train.loader == "torchvision":  # images stay in host memory for the workers
            if self.dist.enabled:
                raise ValueError("train.loader 'torchvision' runs in one process; use 'batched' under torchrun")
            self.images = self.splits.pretrain
            self.torchvision_loader = TorchvisionLoader(
                self.images, config.augment, config.train.batch_size, self.device,
                seed=config.train.seed, num_workers=config.train.loader_workers,
            )
        elif isinstance(self.splits.pretrain, MappedImages):  # read batch by batch (mapped_epoch)
            self.images = self.splits.pretrain
        else:
            self.images = self.splits.pretrain.to(self.device)
        self.model = self._build_model()
        self.forward = self._wrap_parallel(self.model)
        mode = torch_compile_mode(config.train.compile)
        if mode is not None:
            self.forward = torch.compile(self.forward, mode=mode)
        self.steps_per_epoch = self.images.shape[0] // config.train.batch_size
        total = config.train.epochs * self.steps_per_epoch
        warmup = round(config.optim.warmup_epochs * self.steps_per_epoch)
        self.optimizer = build_optimizer(self.model, config.optim, config.effective_lr())
        self.scheduler = build_scheduler(self.optimizer, total, warmup)
        seed = config.train.seed
        self.data_gen = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(seed + 2)
        self.views = TwoViews(config.augment)
        self.loss_fn = build_loss(config.loss)
        self.start_epoch = 0
        self.history: list[dict[str, float]] = []
        self._deferred_failure: BaseException | None = None

    # ------------------------------------------------------------------ setup
    @property
    def amp_dtype(self) -> torch.dtype | None:
        return self.numerics.autocast_dtype

    @property
    def channels_last(self) -> bool:
        return self.numerics.channels_last

    def _check_batch(self) -> None:
        n, b = self.splits.pretrain.shape[0], self.config.train.batch_size
        if n < b:
            raise ValueError(
                f"train.batch_size {b} is larger than the pretraining set ({n} images); "
                "lower the batch size or enlarge data.subset"
            )
        if b % self.dist.world_size:
            raise ValueError(
                f"train.batch_size {b} (the global batch) does not split evenly over {self.dist.world_size} processes"
            )

    @property
    def sync_bn(self) -> bool:
        """Global BN: on by default when the run spans several processes."""
        wanted = self.config.train.sync_bn
        return self.dist.enabled and (wanted is None or wanted)

    def _wrap_parallel(self, model: SimCLRModel) -> torch.nn.Module:
        """DistributedDataParallel over the group (the model itself in one process). With global BN
        every rank computes the same running statistics, so buffers need no broadcast; without it,
        rank 0's are broadcast each step, as usual."""
        if not self.dist.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # newer torch renamed broadcast_buffers (and warns about the old name)
        sync = (
            "forward_sync_buffers"
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else "broadcast_buffers"
        )
        return DistributedDataParallel(model, device_ids=ids, **{sync: not self.sync_bn})

    def _build_model(self) -> SimCLRModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.train.seed)
            model = SimCLRModel(self.config.model, in_channels=self.splits.channels)
        if self.sync_bn:
            model = distributed.convert_global_bn(model, self.device.type)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_NAME if self.run_dir is not None else None

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "config": self.config.model_dump_json(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_rng": self.data_gen.get_state(),
            "aug_rng": self.aug_gen.get_state(),
            "history": json.dumps(self.history),
            "numerics": {"precision": self.numerics.precision, "channels_last": self.numerics.channels_last,
                         "text": self.numerics.describe()},
        }

    def save_checkpoint(self, epoch: int) -> None:
        """Atomically write everything needed to continue after ``epoch`` (0-based, completed).
        Rank 0 writes for the group (every rank holds the same state)."""
        if self.checkpoint_path is not None and self.config.train.checkpoint and self.dist.is_main:
            checkpoint.save_atomic(self._state(epoch), self.checkpoint_path)

    def _read_checkpoint(self) -> tuple[dict[str, Any], Path] | None:
        """The newest undamaged checkpoint of the run directory, if any (damaged ones are reported
        and skipped: an older one, or a fresh start, never garbage)."""
        path = self.checkpoint_path
        if path is None:
            return None
        found = checkpoint.load_latest_good(path, warn=lambda msg: print(msg, file=sys.stderr))
        if found is None and (path.exists() or checkpoint.previous_path(path).exists()):
            print(f"warning: {path.parent}: no usable checkpoint; training starts from scratch", file=sys.stderr)
        return found

    def try_resume(self) -> bool:
        """Continue from the run directory's checkpoint if there is a usable one; return whether it
        did. Rank 0 reads it and hands it to every rank (no shared filesystem needed)."""
        found = distributed.broadcast_object(self._read_checkpoint() if self.dist.is_main else None, self.dist)
        if found is None:
            return False
        state, path = found
        self._check_same_config(json.loads(state["config"]), path)
        if self.dist.is_main:
            print(f"resuming from {path} (after epoch {int(state['epoch']) + 1})", file=sys.stderr)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.data_gen.set_state(state["data_rng"])
        self.aug_gen.set_state(state["aug_rng"])
        self.history = json.loads(state["history"])
        self.start_epoch = int(state["epoch"]) + 1
        saved = state.get("numerics")
        now = {"precision": self.numerics.precision, "channels_last": self.numerics.channels_last}
        # the numerics, not their wording: bf16 chosen for AMX on one machine and AVX512_BF16 on another is the same
        if self.dist.is_main and saved is not None and {k: saved[k] for k in now} != now:
            print(f"warning: {path} was written under {saved['text']}; continuing under {self.numerics.describe()}, "
                  "so the result will not equal an uninterrupted run (set train.precision and "
                  "train.channels_last explicitly to keep them across machines)", file=sys.stderr)
        return True

    def _check_same_config(self, saved: dict[str, Any], path: Path) -> None:
        current = json.loads(self.config.model_dump_json())
        # a field newer than the checkpoint, at any depth (augment.crop.size), has its default
        saved = _with_defaults(saved, json.loads(RunConfig().model_dump_json()))
        differing = [
            f"{section}.{key}"
            for section in current
            for key in current[section]
            if (section, key) not in _RESUME_NEUTRAL and saved[section][key] != current[section][key]
        ]
        if differing:
            raise checkpoint.CheckpointError(
                f"{path}: written by a run with a different config ({', '.join(differing)}); "
                "use another run directory or delete the checkpoint"
            )

    # ------------------------------------------------------------------ training
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on the views ``v1``, ``v2``; returns the loss and Table 5's
        "contrastive acc." (fraction of views whose nearest other view is their positive), both
        still on the device, so nothing syncs. Public because ``ablations bench`` and the
        ``benchmarks/`` scripts time it: it is the step training runs, not a copy."""
        x = torch.cat([v1, v2])  # one forward: BatchNorm sees all 2B views, as in the paper's code
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            _, z = self.forward(x)
        z1, z2 = distributed.global_views(*z.float().chunk(2), self.dist)  # identity in one process
        loss = self.loss_fn(z1, z2)
        accuracy = contrastive_accuracy(z1.detach(), z2.detach(), self.config.loss.normalize)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), accuracy

    def view_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An iterator over ``(v1, v2)``, the two augmented views of every batch of ``epoch``, from
        the configured ``train.loader``, ready for ``step``. Public because ``ablations bench`` and
        the ``benchmarks/`` scripts time it with ``step``, as training runs them."""
        if self.torchvision_loader is not None:
            return self.torchvision_loader.epoch(epoch)
        if isinstance(self.images, MappedImages):
            return mapped_epoch(
                self.images, self.views, self.config.train.batch_size, self.data_gen, self.aug_gen, self.device,
                part=distributed.shard_slice(self.config.train.batch_size, self.dist),
            )
        return batched_epoch(
            self.images, self.views, self.config.train.batch_size, self.data_gen, self.aug_gen,
            part=distributed.shard_slice(self.config.train.batch_size, self.dist),
        )

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _run_epoch(self, epoch: int, bar: tqdm) -> dict[str, float]:
        self.model.train()
        log_every = self.config.train.log_every
        since_log = torch.zeros((), device=self.device)
        epoch_sum = torch.zeros((), device=self.device)
        accuracy_sum = torch.zeros((), device=self.device)  # read once per epoch
        n_since = 0
        started = time.perf_counter()
        for i, (v1, v2) in enumerate(self.view_batches(epoch)):
            loss, accuracy = self.step(v1, v2)
            accuracy_sum += accuracy
            since_log += loss
            epoch_sum += loss
            n_since += 1
            global_step = epoch * self.steps_per_epoch + i + 1
            if n_since == log_every or i == self.steps_per_epoch - 1:
                mean = since_log.item() / n_since  # the only host-device sync in the loop
                if not math.isfinite(mean):
                    raise TrainingDiverged(epoch, global_step, mean)
                metrics = {"loss": mean, "lr": self._lr()}
                self._on_step(global_step, metrics)
                bar.set_postfix(epoch=epoch + 1, loss=f"{mean:.4f}", refresh=False)
                bar.update(n_since)
                since_log.zero_()
                n_since = 0
        elapsed = time.perf_counter() - started
        images = self.steps_per_epoch * self.config.train.batch_size
        return {
            "loss": epoch_sum.item() / self.steps_per_epoch,
            "contrastive_acc": 100.0 * accuracy_sum.item() / self.steps_per_epoch,
            "lr": self._lr(),
            "images_per_sec": images / elapsed,
            "epoch_time_s": elapsed,
        }

    def run_info(self) -> dict[str, str]:
        """What this run really uses: resolved device, its model name, numerics, where the images are
        (see Callback.on_run_info)."""
        return {"device": str(self.device), "device_name": device_name(self.device), **self.numerics.as_tags(),
                "data_placement": self.splits.placement}

    def evaluate(self, linear: bool) -> list[Accuracy]:
        """Evaluate the current encoder: kNN, plus linear evaluation when ``linear``."""
        s = self.splits
        generator = torch.Generator().manual_seed(self.config.train.seed + 3)
        return evaluate_encoder(
            self.model.encoder,
            s.train_images,
            s.train_labels,
            s.test_images,
            s.test_labels,
            s.num_classes,
            self.config.eval,
            device=self.device,
            generator=generator,
            linear=linear,
            channels_last=self.channels_last,
            autocast_dtype=self.amp_dtype,
            size=self.config.augment.crop.size,
            crop=self.config.augment.crop,
        )

    def _knn_due(self, epoch: int) -> bool:
        every = self.config.eval.knn_every
        return every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == self.config.train.epochs)

    def _on_step(self, step: int, metrics: dict[str, float]) -> None:
        """Step hooks. Under torchrun a failure waits for the epoch's end, where the group learns
        of it together (stopping rank 0 alone mid-epoch would leave the others waiting for it)."""
        try:
            for cb in self.callbacks:
                cb.on_step(step, metrics)
        except Exception as exc:
            if not self.dist.enabled:
                raise
            self._deferred_failure = self._deferred_failure or exc

    def _call_back(self, hook: str, *args: Any) -> None:
        """Run ``hook`` of every callback (rank 0 only). Under torchrun, rank 0 then tells every rank
        whether to go on, so a callback that stops the run (pruning, an error) stops the group."""
        failure, self._deferred_failure = self._deferred_failure, None
        try:
            if failure is None:
                for cb in self.callbacks:
                    getattr(cb, hook)(*args)
        except BaseException as exc:  # re-raised below, after the group knows
            failure = exc
        if distributed.broadcast_flag(failure is not None, self.dist, self.device) and failure is None:
            raise StoppedByMain("rank 0 stopped the run")
        if failure is not None:
            raise failure

    def _evaluate_on_main(self, linear: bool) -> list[Accuracy]:
        """Evaluate on rank 0 (the encoder is the same on every rank) and share the result."""
        accuracies = self.evaluate(linear=linear) if self.dist.is_main else []
        return distributed.broadcast_object(accuracies, self.dist)

    def fit(self, resume: bool = True) -> TrainResult:
        """Train (continuing from the run directory's checkpoint when ``resume``), then evaluate."""
        if resume:
            self.try_resume()
        info = self.run_info()
        if self.dist.is_main:
            print(f"device {info['device']} ({info['device_name']}), {info['numerics']}", file=sys.stderr)
            print(f"data {self.splits.name}: {info['data_placement']}", file=sys.stderr)
        self._call_back("on_run_info", info)
        self._call_back("on_train_start", self.config, self.start_epoch)
        started = time.perf_counter()
        epochs = self.config.train.epochs
        bar = tqdm(
            total=epochs * self.steps_per_epoch,
            initial=self.start_epoch * self.steps_per_epoch,
            desc="pretrain",
            unit="step",
            disable=not (self.config.train.progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        with bar:
            for epoch in range(self.start_epoch, epochs):
                metrics = self._run_epoch(epoch, bar)
                if self._knn_due(epoch):
                    metrics.update(
                        {a.name: a.value for a in self._evaluate_on_main(linear=False) if a.name == "knn_top1"}
                    )
                bar.set_postfix(
                    epoch=epoch + 1, loss=f"{metrics['loss']:.4f}", img_s=f"{metrics['images_per_sec']:.0f}"
                )
                self.history.append({"epoch": epoch + 1, **metrics})
                self._call_back("on_epoch_end", epoch + 1, metrics)
                self.save_checkpoint(epoch)
        accuracies = self._evaluate_on_main(linear=self.config.eval.linear)
        final = {a.name: a.value for a in accuracies}
        if self.history:
            final["loss"] = self.history[-1]["loss"]
            if "contrastive_acc" in self.history[-1]:
                final["contrastive_acc"] = self.history[-1]["contrastive_acc"]
        final["train_time_s"] = time.perf_counter() - started
        self._call_back("on_train_end", final, accuracies)
        distributed.barrier(self.dist)  # rank 0's checkpoint and logs are complete before anyone leaves
        return TrainResult(final, accuracies, list(self.history), self.checkpoint_path)


def train(
    config: RunConfig,
    run_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = True,
    splits: ImageSplits | None = None,
) -> TrainResult:
    """Convenience wrapper: build a Trainer and fit it."""
    return Trainer(config, run_dir, callbacks, splits).fit(resume=resume)
