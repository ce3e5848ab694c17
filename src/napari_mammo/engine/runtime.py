"""Torch run-time helpers: device choice, distributed (torchrun) set-up, seeding, stopping."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

DEVICES = ("auto", "cpu", "cuda", "mps")
"""The devices a user can ask for; 'auto' picks the best available (see `pick_device`)."""


def pick_device(name: str = "auto") -> str:
    """'auto' picks cuda, then mps, then cpu; an unavailable device is a clear error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but it is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or mps")
    return name


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Distributed:
    """Where this process stands in a torchrun job (rank 0 of 1 when run alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and reports progress."""
        return self.rank == 0


def init_distributed(device: str) -> Distributed:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def close_distributed() -> None:
    """Leave the process group if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def keep_triton_out() -> None:
    """Make torch treat triton as absent in this process (it crashes after a Mesa GL context exists).

    torch's optimizer imports torch._dynamo, which imports triton; in napari's process that
    import segfaults once the viewer has made an OpenGL context (reproduced with torch 2.14.1 under Mesa).
    """
    import sys

    sys.modules.setdefault("triton", None)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since it started its program.

    Linux's `ru_maxrss` carries over the parent's peak into a spawned child (fork, then
    exec), so a benchmark in a fresh process would report its parent's memory; the kernel's
    VmHWM belongs to the new program alone.
    """
    import resource
    import sys

    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere
