"""Training on several processes at once: torchrun and DistributedDataParallel.

`torchrun --nproc_per_node=N -m gptcourse train ...` starts N copies of the same program, one
per GPU (or N on the CPU), and tells each its place in its environment: RANK (0 .. N-1),
LOCAL_RANK (its GPU on this machine), WORLD_SIZE (N), MASTER_ADDR and MASTER_PORT (where the
copies meet). Each copy, a *replica*, holds the whole model. At every step:

1. every replica draws the same batch (the same seed gives the same generator) and keeps its
   own slice of the rows (`Replicas.own_rows`);
2. each computes the gradient of the loss on its slice, and DistributedDataParallel averages
   the replicas' gradients during the backward pass;
3. each makes the same optimiser step with the same averaged gradient, so the replicas stay
   one model: the one a single process would have trained on the whole batch, up to the order
   in which the floating-point sums are taken.

Only rank 0, the main replica, writes: the progress bar, the log and the checkpoint. The
checkpoint holds the model itself, never the DistributedDataParallel wrapper around it, so its
weight names carry no `module.` prefix and it loads in a plain process, on any number of GPUs.

Without torchrun's environment (or with WORLD_SIZE=1) nothing here is used: training is the
ordinary one-process loop.
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass

import torch
from torch import nn

# What torch's env:// rendezvous reads; torchrun sets all of them (and LOCAL_RANK).
_RENDEZVOUS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_BACKENDS = {"cpu": "gloo", "cuda": "nccl"}


def world_size() -> int:
    """How many processes train together: WORLD_SIZE from the environment, 1 without it."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={value!r} in the environment is not a number of "
                         f"processes; start several processes with torchrun "
                         f"--nproc_per_node=N, or unset WORLD_SIZE") from None
    if size < 1:
        raise ValueError(f"WORLD_SIZE={size} in the environment: need at least 1 process")
    return size


def local_rank() -> int | None:
    """This process's GPU on its machine (LOCAL_RANK) when several processes train together,
    None for a single process."""
    return int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else None


@dataclass(frozen=True)
class Replicas:
    """This process's place among the replicas that train one model together."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch_size(self, batch_size: int) -> None:
        """Every replica gets the same number of rows, so that the average of their gradients
        is the gradient of the whole batch."""
        if batch_size % self.world_size:
            raise ValueError(f"batch_size={batch_size} does not split evenly over "
                             f"{self.world_size} processes; choose a batch_size that is a "
                             f"multiple of {self.world_size}")

    def own_rows(self, batch: torch.Tensor) -> torch.Tensor:
        """This replica's slice of a batch that every replica drew alike: (B, ...) →
        (B / world_size, ...), rows rank·B/W to (rank + 1)·B/W."""
        rows = batch.shape[0] // self.world_size
        return batch[self.rank * rows:(self.rank + 1) * rows]

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model wrapped in DistributedDataParallel, which averages gradients across the
        replicas in the backward pass. One wrapper per model, made on first use: a second
        wrapper would add a second set of gradient hooks to the same parameters."""
        wrapper = _WRAPPERS.get(model)
        if wrapper is None:
            from torch.nn.parallel import DistributedDataParallel

            # Its constructor copies rank 0's weights to every replica, so all start equal.
            device_ids = [self.device] if self.device.type == "cuda" else None
            wrapper = DistributedDataParallel(model, device_ids=device_ids)
            _WRAPPERS[model] = wrapper
        return wrapper

    def mean(self, value: float) -> float:
        """The mean of `value` over the replicas (a batch loss: each replica saw its slice)."""
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.item() / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every replica when `flag` is true on at least one: the replicas decide
        together, so none waits forever for a step that the others skipped."""
        import torch.distributed as dist

        flags = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return bool(flags.item())

    def barrier(self) -> None:
        """Wait here until every replica has arrived."""
        import torch.distributed as dist

        if self.device.type == "cuda":  # nccl needs to know which GPU waits
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()


_WRAPPERS: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


class SharedStop:
    """A StopRequest that the replicas agree on: `requested` is true on every replica as soon
    as one of them was interrupted, so all stop after the same step. Reading it is a
    collective operation, so the training loop reads it at the same points on every replica."""

    def __init__(self, local, replicas: Replicas) -> None:
        self._local, self._replicas = local, replicas

    @property
    def requested(self) -> bool:
        return self._replicas.any(self._local.requested)

    @requested.setter
    def requested(self, value: bool) -> None:
        self._local.requested = value


def join(device: torch.device) -> Replicas | None:
    """This process's Replicas when torchrun (or another launcher setting RANK, WORLD_SIZE,
    MASTER_ADDR and MASTER_PORT) started several processes, None for a single process.

    The first call sets up torch's process group, gloo for a model on the CPU and nccl for one
    on a CUDA GPU (which must be this process's own, cuda:LOCAL_RANK); later calls reuse it.
    """
    size = world_size()
    if size == 1:
        return None
    missing = [name for name in _RENDEZVOUS if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={size} but {', '.join(missing)} missing from the "
                         f"environment; start the processes with torchrun "
                         f"--nproc_per_node={size} (it sets them all)")
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError("this build of torch has no torch.distributed; train in one process "
                         "(without torchrun), or install a torch build that has it")
    backend = _BACKENDS.get(device.type)
    if backend is None:
        raise ValueError(f"training on several processes runs on CPUs (gloo) or CUDA GPUs "
                         f"(nccl), not on {device.type}; pass --device cpu or cuda")
    if device.type == "cuda":
        expected = local_rank()
        if device.index != expected:
            raise ValueError(f"the process with LOCAL_RANK={expected} must train on its own "
                             f"GPU, cuda:{expected}, not on {device}; leave out the device "
                             f"(or pass 'cuda') and each process takes its own")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend)
        atexit.register(_leave)
    elif dist.get_backend() != backend:
        raise ValueError(f"the process group uses {dist.get_backend()}, but a model on "
                         f"{device.type} needs {backend}")
    return Replicas(dist.get_rank(), dist.get_world_size(), device)


def _leave() -> None:
    """At exit: wait until every replica is done with its collectives, then close the group.
    A replica that tore its connections down while another still used them could be killed
    by gloo (seen once in CI: "terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
