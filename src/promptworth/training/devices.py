"""Which device a run trains on, without torch: the ``--device`` text, the GPUs that
``CUDA_VISIBLE_DEVICES`` lets a process see, and how a pool spreads its workers over them.

Torch-free, so that a pool's client parses ``--device`` without importing torch; the pool decides
here which GPU each worker sees before the worker starts. The torch side (the device picked, its
precision and autocast) is :mod:`promptworth.training.runtime`.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

from promptworth.errors import PromptworthError

# What ``--device`` takes: auto (the first visible GPU where CUDA is available, else the CPU),
# cpu, cuda (the first visible GPU) or cuda:N (the N-th visible GPU, counted from 0).
AUTO = "auto"
DEVICE_HELP = ("auto (the first GPU CUDA_VISIBLE_DEVICES shows where CUDA is available, else the CPU), cpu, cuda "
               "(the first visible GPU: an error without one) or cuda:N (the N-th visible GPU, from 0)")
_DEVICE = re.compile(r"auto|cpu|cuda(?::(0|[1-9]\d*))?")
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
# An entry of CUDA_VISIBLE_DEVICES: a GPU's index, or its UUID (GPU-..., MIG-...: nvidia-smi -L)
_GPU_ENTRY = re.compile(r"\d+|(?:GPU|MIG)-[0-9A-Za-z/-]+")


def parse_device(text: str) -> str:
    """``--device``'s text, checked (an argparse type): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    value = str(text).strip().lower()
    if not _DEVICE.fullmatch(value):
        raise PromptworthError(f"--device must be {DEVICE_HELP}; got {text!r}")
    return value


def cuda_index(device: str) -> int | None:
    """The GPU index of a :func:`parse_device` text (``cuda`` is 0); None for ``auto`` and ``cpu``."""
    if not device.startswith("cuda"):
        return None
    return int(device.partition(":")[2] or 0)


def visible_entries(environ: Mapping[str, str]) -> list[str] | None:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` shows, as its entries (indices or UUIDs), in order; None
    when it is unset (every GPU of the machine is visible). CUDA reads the list up to its first
    entry that is no GPU (``-1``, SLURM's ``NoDevFiles``): an empty list hides every GPU."""
    value = environ.get(CUDA_VISIBLE_DEVICES)
    if value is None:
        return None
    entries = []
    for entry in (item.strip() for item in value.split(",")):
        if not _GPU_ENTRY.fullmatch(entry):
            break
        entries.append(entry)
    return entries


def visible_gpus(environ: Mapping[str, str], count: Callable[[], int]) -> list[str]:
    """The GPUs a process may use, as ``CUDA_VISIBLE_DEVICES`` entries: that variable's, or where it
    is unset the machine's GPUs by index (``count``: how many the CUDA driver sees)."""
    entries = visible_entries(environ)
    return entries if entries is not None else [str(index) for index in range(count())]


def describe_visible(environ: Mapping[str, str]) -> str:
    """``CUDA_VISIBLE_DEVICES`` as a message names it."""
    value = environ.get(CUDA_VISIBLE_DEVICES)
    return f"{CUDA_VISIBLE_DEVICES} is unset" if value is None else f"{CUDA_VISIBLE_DEVICES}={value!r}"


def worker_gpus(size: int, runs_per_gpu: int, gpus: Sequence[str]) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` of each of a pool's ``size`` workers: ``runs_per_gpu`` of them
    to a GPU, in order (workers 0 to K-1 on the first visible GPU, the next K on the second, ...), so
    that each worker sees one GPU and at most K runs share it. An error when they do not fit."""
    if runs_per_gpu < 1:
        raise PromptworthError(f"--runs-per-gpu must be at least 1, got {runs_per_gpu}")
    if not gpus:
        raise PromptworthError(f"--runs-per-gpu {runs_per_gpu}: no GPU is visible here, so the pool has none to "
                               "spread its workers over (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    needed = -(-size // runs_per_gpu)
    if needed > len(gpus):
        raise PromptworthError(
            f"--size {size} workers at --runs-per-gpu {runs_per_gpu} need {needed} GPUs, but {len(gpus)} "
            f"{'is' if len(gpus) == 1 else 'are'} visible ({', '.join(gpus)}): lower --size or raise --runs-per-gpu")
    return [gpus[index // runs_per_gpu] for index in range(size)]
