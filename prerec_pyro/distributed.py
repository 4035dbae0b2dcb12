"""Data-parallel training across the processes ``torchrun`` starts (PyTorch ``DistributedDataParallel``; gloo on a CPU,
NCCL on GPUs), shared by every trainer built on ``prerec_pyro.training``.

Every rank draws the same global batch (one seeded sampler and one seeded negatives generator) and keeps the rows of
the users it owns (global user row mod world size), so a user's windows and its offset live on one rank only; DDP
averages the dense gradients, and a rank's share of the loss is scaled so that the average is the one-process
gradient of the whole batch (docs/DESIGN.md, "Data-parallel training"). Rank 0 validates, broadcasts the score and
writes checkpoints.

A rank of a multi-process run ends with ``Distributed.exit``, without the interpreter's shutdown: gloo's worker
threads outlive ``destroy_process_group`` (a DDP wrapper keeps the group alive), and one that releases a finished
collective's tensors while the interpreter shuts down asks for the GIL, is ended by Python inside a destructor, and
aborts the process (docs/DESIGN.md, "Data-parallel training").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place among ``world_size`` training processes (one process: rank 0 of 1, and every method is
    a no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")

    @classmethod
    def from_env(cls, device: str) -> tuple["Distributed", str]:
        """The process group ``torchrun`` describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (joined here:
        NCCL for ``cuda``, gloo for ``cpu``) and this rank's device (``cuda:<LOCAL_RANK>``); one process and
        ``device`` unchanged when ``WORLD_SIZE`` is unset or 1."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} unset: start distributed runs with "
                             "torchrun --nproc_per_node N scripts/...")
        rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        cuda = torch.device(device).type == "cuda"
        if cuda:
            device = f"cuda:{local}"
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        logger.info("rank %d of %d on %s", rank, world, device)
        return cls(rank, world, local), device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, user_rows: np.ndarray) -> np.ndarray:
        """Whether this rank owns each of the global ``user_rows`` (their windows, their offset eps_u)."""
        return np.asarray(user_rows) % self.world_size == self.rank

    def shard(self, user_rows: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """This rank's rows of a global batch whose rows belong to users ``user_rows`` [R], and its shares of the
        batch's rows and of its distinct users (they sum to 1 over the ranks). A rank that owns none of the rows
        keeps the first with shares 0, so that it still runs the step (and its collectives)."""
        user_rows = np.asarray(user_rows)
        mine = self.owns(user_rows)  # [R]
        if not mine.any():
            return np.zeros(1, dtype=np.int64), (0.0, 0.0)
        shares = (float(mine.mean()), len(np.unique(user_rows[mine])) / len(np.unique(user_rows)))
        return np.flatnonzero(mine), shares

    def backward(self, share: Tensor, local: Sequence[Tensor] = ()) -> None:
        """Back-propagate this rank's ``share`` of the loss so that every parameter gets the gradient of the whole
        batch's loss: DistributedDataParallel averages the wrapped parameters' gradients over the ranks, hence the
        share times the world size, and the ``local`` parameters it leaves out (rank-local tables) get theirs divided
        by it again."""
        (share * self.world_size).backward()
        if self.enabled:
            for param in local:
                if param.grad is not None:
                    param.grad.mul_(1.0 / self.world_size)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (filling caches on disk), the other ranks after it."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object) on every rank."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, tensor: Tensor) -> Tensor:
        """The sum of ``tensor`` over the ranks, on every rank (in place)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather_owned(self, table: Tensor) -> Tensor:
        """Each row of a [n_users, ...] ``table`` taken from the rank that owns it, on every rank (in place): the
        rows a rank does not own are stale copies, never read by it."""
        if self.enabled:
            owned = torch.as_tensor(self.owns(np.arange(len(table))), device=table.device)  # [N]
            table.mul_(owned.view(-1, *[1] * (table.dim() - 1)).to(table.dtype))
            self.sum(table)
        return table

    def wrap(self, module: nn.Module, ignore: tuple[str, ...] = ()) -> nn.Module:
        """``module`` under ``DistributedDataParallel`` (gradients averaged over the ranks during backward, the
        parameters broadcast from rank 0 now), leaving out the parameters named in ``ignore`` (rank-local tables);
        ``module`` itself for one process. Inputs are already on the rank's device (no ``device_ids``), and buffers
        (the item texts, the popularity tables) are the same on every rank by construction, so they are not
        broadcast at each step."""
        if not self.enabled:
            return module
        if ignore:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, list(ignore))
        return DistributedDataParallel(module, device_ids=None, forward_sync_buffers=False)

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def exit(self, code: int = 0) -> None:
        """End this rank now, after ``close``, with the streams and logs flushed but without the interpreter's
        shutdown, which can abort a rank whose gloo threads are still releasing tensors (module docstring); a no-op
        in one process. Call it last, once everything the rank writes is written and closed."""
        if not self.enabled:
            return
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class LossModule(nn.Module):
    """Networks and a loss over them as one module whose forward is the loss: the unit DistributedDataParallel
    wraps (its gradient hooks are armed by that forward)."""

    def __init__(self, loss: Callable[..., Tensor], **modules: nn.Module):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self._loss = (loss,)  # a bound method of a trainer: kept out of the module tree

    def forward(self, *args) -> Tensor:
        return self._loss[0](*args)


SINGLE = Distributed()
