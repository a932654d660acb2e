"""Where computation runs: the torch device and the number of CPU threads.

Importing this module does not import torch (the CLI lists :data:`DEVICES` in its help).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import CardiosegError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
THREADS_ENV = "CARDIOSEG_THREADS"  # CPU threads per process or dask task, e.g. a batch job's share


def cpu_cores() -> int:
    """Return the cores this process may run on.

    From the process's CPU affinity where the system has one (a SLURM job or ``taskset`` limits
    it), not the machine's total, so a job on a shared node does not oversubscribe it.
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_setting() -> int | None:
    """Return ``$CARDIOSEG_THREADS`` (torch threads per process or dask task), or None if unset."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CardiosegError(f"{THREADS_ENV} must be a whole number of threads >= 1, got {text!r}")
    return value


def limit_torch_threads() -> None:
    """Apply ``$CARDIOSEG_THREADS`` to torch (and so to ONNX Runtime sessions) when it is set."""
    threads = threads_setting()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def choose_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU; ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    import torch

    name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CardiosegError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CardiosegError("device 'cuda' requested but no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise CardiosegError("device 'mps' requested but Apple MPS is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise CardiosegError(f"unsupported device {name!r}; use auto, cpu, cuda or mps")
    return device


def train_threads(gui: bool = True) -> int:
    """CPU threads for training: half the cores (at most 4) in the GUI, every core elsewhere.

    ``$CARDIOSEG_THREADS``, when set, wins.

    The GUI leaves the rest to the viewer: more threads than free cores make PyTorch's CPU
    kernels many times slower when the machine is busy, so the GUI errs on the low side.
    """
    threads = threads_setting()
    if threads is not None:
        return threads
    cores = cpu_cores()
    return max(1, min(4, cores // 2)) if gui else cores
