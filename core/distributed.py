"""Data-parallel training under torchrun: process group setup and a gather that carries gradients.

One trial across K processes: every rank holds the same model (DDP), augments its own shard of
the global batch, and the contrastive loss is computed over the *global* batch, so every rank
sees all 2B views as negatives, as the paper's large-batch runs do.

Why the loss equals the single-process loss: each rank gathers every rank's projections with
``torch.distributed.nn.functional.all_gather`` (its backward sums the incoming gradients and
hands each rank the slice of its own projections; the plain ``dist.all_gather`` drops
gradients) and evaluates the same global loss L. Rank r's projections therefore receive
K * dL/dz_r, and DDP's gradient averaging divides by K: every parameter gets exactly dL/dtheta.
Computing the full (2B x 2B) similarity matrix on every rank is redundant work, but it is
small next to the encoder (8192^2 x 128 multiply-adds at B = 4096) and keeps every loss of
Table 2, with and without semi-hard mining, unchanged.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); single process when absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(info: DistInfo, device_type: str) -> None:
    """Join the process group torchrun describes: NCCL on GPUs, Gloo on CPU. No-op for 1 process."""
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def device_for(info: DistInfo, requested: torch.device) -> torch.device:
    """Under torchrun each rank takes the GPU of its local rank; a bare ``cuda`` means the current
    GPU, made explicit (``torch.cuda.set_device`` refuses a device without an index); CPU stays CPU."""
    if requested.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    if requested.type == "cuda" and requested.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return requested


def join(info: DistInfo, requested: torch.device) -> torch.device:
    """This process's device (its local GPU under torchrun), made current, and the process group
    joined; returns the device. Idempotent, so a command may join before the trainer does."""
    device = device_for(info, requested)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    init(info, device.type)
    return device


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order), keeping the autograd graph."""
    if not info.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # its successor is private API (torch.distributed._functional_collectives)
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def global_views(z1: torch.Tensor, z2: torch.Tensor, info: DistInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's first and second views, each in global batch order (rank 0's images first)."""
    return gather_with_grad(z1, info), gather_with_grad(z2, info)


def broadcast_flag(value: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's decision, shared (e.g. stop now); the same on every rank."""
    if not info.enabled:
        return value
    flag = torch.tensor([1.0 if value else 0.0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def shutdown() -> None:
    """Leave the process group, if this process joined one (a clean exit under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard_slice(global_batch: int, info: DistInfo) -> slice | None:
    """This rank's contiguous slice of a global batch (None in one process); the batch must divide evenly."""
    if not info.enabled:
        return None
    per_rank = global_batch // info.world_size
    return slice(info.rank * per_rank, (info.rank + 1) * per_rank)


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a checkpoint, so ranks need no shared filesystem)."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class CrossRankBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch normalisation whose training statistics cover the global batch of every rank.

    The paper's "global BN". On CUDA, torch's ``nn.SyncBatchNorm`` does this with fused kernels;
    it refuses CPU tensors, so Gloo (CPU) runs use this module: per-channel sum, sum of squares and
    count are summed over ranks with ``torch.distributed.nn.functional.all_reduce`` (which carries
    gradients), so forward and backward equal BatchNorm over the concatenated batch. Outside
    training, or without a process group, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dtype = x.dtype
        # statistics and normalisation in fp32 under bf16 autocast, as torch's own BatchNorm does
        # (a bf16 sum over a batch's pixels loses the statistics, and lerp_ into the fp32 running
        # buffers refuses bf16); the output goes back to the input's dtype
        x = x.float()
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = (1, c) + (1,) * (x.dim() - 2)
        count = x.new_full((1,), x.numel() / c)
        with warnings.catch_warnings():  # its successor is private API (torch.distributed._functional_collectives)
            warnings.simplefilter("ignore", FutureWarning)
            sums = all_reduce(torch.cat([x.sum(dims), count]))
            n = sums[-1]
            mean = sums[:c] / n
            centred = x - mean.view(shape)
            # two passes: E[x^2] - E[x]^2 in float32 loses the variance when |mean| >> std
            var = all_reduce((centred * centred).sum(dims)) / n
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), m)
                self.running_var.lerp_(var.detach() * n / (n - 1), m)
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(dtype)


def convert_global_bn(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm of ``module`` by a global one: ``nn.SyncBatchNorm`` on CUDA,
    :class:`CrossRankBatchNorm` elsewhere (parameters and running statistics carried over)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CrossRankBatchNorm):
        bn = CrossRankBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        bn.load_state_dict(module.state_dict())
        if module.affine:  # a frozen parameter (the head's output BN without shift) stays frozen
            bn.weight.requires_grad_(module.weight.requires_grad)
            bn.bias.requires_grad_(module.bias.requires_grad)
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        module.add_module(name, convert_global_bn(child, device_type))
    return module
