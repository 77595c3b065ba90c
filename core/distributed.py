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
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
    """Under torchrun each rank takes the GPU of its local rank; CPU stays CPU."""
    if requested.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return requested


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (rank order), keeping the autograd graph."""
    if not info.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

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


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shard(batch_indices: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous slice of the global batch (the global batch must divide evenly)."""
    if not info.enabled:
        return batch_indices
    per_rank = batch_indices.shape[0] // info.world_size
    return batch_indices[info.rank * per_rank : (info.rank + 1) * per_rank]
