"""What a run runs on: the device and precision, threads and the allocator, seeds, memory, the
process's age, the package versions and the git commit (for the record)."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from promptworth import __version__, paths
from promptworth.errors import PromptworthError
from promptworth.training import devices
# re-exported: the run, the benchmarks and the record read them here
from promptworth.training.cpu import cpu_has_fast_bf16, cpu_model_name, describe_cpu


def pick_device(requested: str = devices.AUTO) -> torch.device:
    """The device of ``--device`` (:func:`promptworth.training.devices.parse_device`'s text): auto:
    the first visible GPU where CUDA is available, else the CPU; cuda or cuda:N: that GPU, or one
    error saying why it is not there (no CUDA build of torch, no GPU visible, too few)."""
    requested = devices.parse_device(requested)
    if requested == "cpu" or (requested == devices.AUTO and not torch.cuda.is_available()):
        return torch.device("cpu")
    index = devices.cuda_index(requested) or 0
    if not torch.cuda.is_available():
        why = (f"this torch ({torch.__version__}) is built without CUDA: install a CUDA build of torch"
               if torch.version.cuda is None else
               f"torch sees no GPU ({devices.describe_visible(os.environ)}; is the NVIDIA driver loaded? nvidia-smi)")
        raise PromptworthError(f"--device {requested}: CUDA is not available: {why}")
    count = torch.cuda.device_count()
    if index >= count:
        raise PromptworthError(f"--device {requested}: {count} GPU{'s' if count != 1 else ''} visible (cuda:0 to "
                               f"cuda:{count - 1}; {devices.describe_visible(os.environ)})")
    return torch.device("cuda", index)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a run computes in on ``device``: auto is bf16 where the hardware has it fast
    (a GPU with native bf16, Ampere or later; a CPU with avx512_bf16 or AMX), else fp32; fp16 (with
    loss scaling: :mod:`promptworth.training.engine`) is for CUDA only, and bf16 on a GPU needs native
    bf16. ``bf16`` on a CPU without fast bf16 is refused: emulated there, it runs 3-4x slower than fp32
    and its numbers are not a bf16 CPU's, so a study whose protocol is bf16 cannot be resumed on it."""
    if device.type == "cuda":
        native_bf16 = torch.cuda.get_device_capability(device)[0] >= 8  # Ampere (8.0) and later
        if precision == "auto":
            return "bf16" if native_bf16 else "fp32"
        if precision == "bf16" and not native_bf16:
            raise PromptworthError(f"precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has no native "
                                   "bf16 (it came with Ampere): use precision fp16 or fp32")
        return precision
    if precision == "fp16":
        raise PromptworthError("precision fp16 is for CUDA GPUs (a CPU has no fast fp16, and fp16 needs loss "
                               "scaling): on a CPU use bf16 or fp32")
    if precision == "bf16" and not cpu_has_fast_bf16():
        raise PromptworthError("precision bf16 needs a CPU with fast bf16 (the avx512_bf16 or amx_bf16 flag), and "
                               "this one has neither: there it would be emulated, 3-4x slower than fp32, with other "
                               "numbers; use precision auto (fp32 here) or fp32, or run on a CPU with fast bf16")
    if precision != "auto":
        return precision
    return "bf16" if cpu_has_fast_bf16() else "fp32"


# the dtype each mixed precision casts to inside autocast (fp32: none, no autocast)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision in AUTOCAST_DTYPES:
        return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])
    return contextlib.nullcontext()


def describe_device(device: torch.device) -> str:
    """A record's ``device``: ``cuda (<the GPU's name>)``, or the CPU's :func:`describe_cpu`."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return describe_cpu(cpu_model_name(), torch.get_num_threads())


def reset_gpu_peak(device: torch.device) -> None:
    """Start the GPU's peak memory count afresh (nothing on a CPU), as :func:`reset_peak_rss` does."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def gpu_peak(device: torch.device) -> dict[str, float]:
    """The record's ``timing.gpu_peak_gb`` on a GPU: the most memory torch's tensors held on it
    since :func:`reset_gpu_peak` (``torch.cuda.max_memory_allocated``; the CUDA context and the
    caching allocator's reserve come on top); nothing on a CPU."""
    if device.type != "cuda":
        return {}
    return {"gpu_peak_gb": round(torch.cuda.max_memory_allocated(device) / 1024**3, 3)}


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    Every step frees and reallocates the same big buffers (gradients, the dense embedding
    gradient); by default glibc hands them back with munmap and the next step page-faults them in
    again (~100k faults and ~0.2-0.3 s of system time per SmolLM2 step on 2 cores). Returns
    whether the setting took (False off glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def reset_peak_rss() -> None:
    """Start the peak memory count afresh (Linux), so that a run in a long-lived worker reports
    its own peak, not that of an earlier run of the same process."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")


def peak_rss_gb() -> float:
    """Peak resident memory since the last :func:`reset_peak_rss` (else since the start)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2  # kB
    except (OSError, ValueError, IndexError):
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    return kb / 1024**2 if sys.platform != "darwin" else kb / 1024**3


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.project_root(), capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str]:
    import datasets
    import transformers

    return {
        "promptworth": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "datasets": datasets.__version__, "python": platform.python_version(),
    }


def process_age_s() -> float:
    """Seconds since this process started (its interpreter start and imports included).

    From the kernel's own clock since boot (/proc/uptime against the process's start tick in
    /proc/self/stat): the wall clock minus psutil's create_time is off by up to seconds on a
    virtual machine whose boot time drifts.
    """
    try:
        uptime = float(Path("/proc/uptime").read_text(encoding="ascii").split()[0])
        stat = Path("/proc/self/stat").read_text(encoding="ascii")
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the name
        return max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 0.0)
    except (OSError, ValueError, IndexError):
        import psutil

        return time.time() - psutil.Process().create_time()


def process_start() -> float:
    """When this process started (POSIX time)."""
    return time.time() - process_age_s()
