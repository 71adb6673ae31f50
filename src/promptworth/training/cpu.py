"""The CPU a run runs on, without torch: its model name, whether it has fast bf16, and the device
text a record carries (``cpu (<model name>, <threads> threads)``) written and read back. The
planning estimate (:mod:`promptworth.study.estimate`) compares a record's CPU with this machine's."""

from __future__ import annotations

import platform
import re
from pathlib import Path

# describe_cpu's text: what a record's ``device`` says of a CPU run
_CPU_DEVICE = re.compile(r"cpu \((?P<name>.*), (?P<threads>\d+) threads\)")


def cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def cpu_model_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu(name: str, threads: int) -> str:
    """A record's ``device`` for a run on a CPU."""
    return f"cpu ({name}, {threads} threads)"


def read_cpu(device: str) -> tuple[str, int] | None:
    """The CPU's name and the run's threads from a record's ``device`` (None: not a CPU run, or
    not :func:`describe_cpu`'s text)."""
    found = _CPU_DEVICE.fullmatch(device.strip()) if isinstance(device, str) else None
    return (found["name"], int(found["threads"])) if found else None
