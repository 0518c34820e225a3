"""PyTorch's own distributed engine, as ``torchrun`` launches it.

``torchrun --nproc_per_node=N -m cnnlab train ...`` (and the multi-node form with ``--nnodes``,
``--rdzv-backend c10d``, ``--rdzv-endpoint``) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in every process; ``setup`` reads them and joins the process
group (gloo on the CPU, NCCL on CUDA). Without them the run is one process and nothing here talks
to anyone. The model is wrapped in ``DistributedDataParallel`` (gradients averaged over ranks
during backward), the data split by ``DistributedSampler``; only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "teardown"]


@dataclass
class Context:
    """Where this process stands: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, *values: float) -> list[float]:
        """The sums over all ranks of ``values`` (float64; as they are in one process)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, *flags: bool) -> list[bool]:
        """For each flag, whether it is true on any rank (every rank gets the same answers)."""
        if not self.distributed:
            return [bool(f) for f in flags]
        tensor = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=self._collective_device())
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [bool(v) for v in tensor.tolist()]

    def gather(self, value: Any) -> list[Any]:
        """``value`` of every rank, in rank order (each rank gets the list)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _collective_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def setup(device: str = "auto") -> Context:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1 in the environment)
    and pick this process's device: ``cuda:LOCAL_RANK`` with NCCL when CUDA is there and
    ``device`` is not "cpu", else the CPU with gloo."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device here")
    world = _env_int("WORLD_SIZE") or 1
    rank = _env_int("RANK") or 0
    local = _env_int("LOCAL_RANK") or 0
    if world <= 1:
        return Context(0, 1, 0, torch.device("cuda" if want_cuda else "cpu"))
    if want_cuda:
        if local >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices here")
        torch.cuda.set_device(local)
        ctx = Context(rank, world, local, torch.device("cuda", local))
        if not dist.is_initialized():
            dist.init_process_group("nccl", device_id=ctx.device)
    else:
        ctx = Context(rank, world, local, torch.device("cpu"))
        if not dist.is_initialized():
            dist.init_process_group("gloo")
    return ctx


def teardown(ctx: Context) -> None:
    """Leave the process group (if this run joined one)."""
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()

