"""Peak memory of one cell, resettable between cells.

On CUDA: `torch.cuda.reset_peak_memory_stats` when the first measured batch starts and
`torch.cuda.max_memory_allocated` at the end (tensor memory, not the allocator's cache). On the CPU,
`getrusage().ru_maxrss` covers the whole life of the process and cannot be reset, so a cell run after
a bigger one would inherit its peak. Linux keeps a resettable high-water mark, though: writing "5" to
/proc/self/clear_refs resets VmHWM (/proc/self/status) to the current RSS (Linux 4.0+). The kernel
folds the current RSS into that mark before it unmaps memory, so even a spike freed a moment later
counts, and nothing runs while the cell does; it is the default. Where it is unavailable (macOS, a
sandbox that refuses the write) a daemon thread samples the current RSS every 50 ms instead; measured
here, each wake-up costs about 0.2 ms of CPU (the thread must take the GIL from a busy main thread),
so 50 ms keeps it under 0.5 %, and a spike shorter than the interval can be missed. Both peaks are
process-wide: two cells timed at once in one process would see each other's memory (so would
CUDA's counter).
"""

from __future__ import annotations

import os
import platform
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from harness.diagnostics.timers import as_device

if TYPE_CHECKING:
    import torch


MemoryKind = Literal["rss", "cuda"]


class _ProcStatm:
    """Reads the resident set size from /proc/self/statm through a file descriptor kept open.

    One pread is about 2 µs here, against 20 µs for psutil's memory_info (50 µs with a fresh
    Process), which matters to a sampler that reads many times a second.
    """

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __call__(self) -> int:
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        os.close(self._fd)


def _psutil_rss() -> int | None:
    try:
        import psutil  # a dependency of accelerate, so normally present
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def current_rss_bytes() -> int:
    """Resident set size of this process now (procfs, else psutil, else the whole-life high-water mark)."""
    if Path("/proc/self/statm").exists():
        reader = _ProcStatm()
        try:
            return reader()
        finally:
            reader.close()
    rss = _psutil_rss()
    if rss is not None:
        return rss
    import resource

    # Last resort (no procfs, no psutil): a whole-life high-water mark; KiB on Linux, bytes on macOS.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if platform.system() == "Darwin" else maxrss * 1024)


class MemoryMonitor(ABC):
    kind: MemoryKind

    def start(self) -> None:
        """Begin watching (called when the cell starts)."""

    def stop(self) -> None:
        """Stop watching; the peak stays readable."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the peak so far (called when the first measured batch starts)."""

    @abstractmethod
    def peak_bytes(self) -> int: ...


class KernelPeakRss(MemoryMonitor):
    """Linux's own RSS high-water mark (VmHWM), reset through /proc/self/clear_refs: exact and free."""

    kind: MemoryKind = "rss"
    clear_refs = Path("/proc/self/clear_refs")
    status = Path("/proc/self/status")

    def __init__(self) -> None:
        self._frozen: int | None = None

    @classmethod
    def supported(cls) -> bool:
        try:
            cls.clear_refs.write_text("5")  # resetting the peak is harmless: nobody else reads it
            return cls._read_hwm() > 0
        except (OSError, ValueError):
            return False

    @classmethod
    def _read_hwm(cls) -> int:
        for line in cls.status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
        raise ValueError("/proc/self/status has no VmHWM line")

    def reset(self) -> None:
        self.clear_refs.write_text("5")

    def start(self) -> None:
        self._frozen = None
        self.reset()

    def stop(self) -> None:
        self._frozen = self._read_hwm()  # memory used after the cell is not the cell's

    def peak_bytes(self) -> int:
        return self._frozen if self._frozen is not None else self._read_hwm()


class RssSampler(MemoryMonitor):
    """Samples the current RSS from a daemon thread: the fallback where KernelPeakRss is unavailable."""

    kind: MemoryKind = "rss"

    def __init__(self, interval_seconds: float = 0.05, read: Callable[[], int] | None = None) -> None:
        self.interval_seconds = interval_seconds
        self._given_read = read
        self._statm: _ProcStatm | None = None
        self._read: Callable[[], int] = read or current_rss_bytes
        self._peak = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        value = self._read()
        with self._lock:
            self._peak = max(self._peak, value)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            self._sample()

    def start(self) -> None:
        if self._given_read is None and Path("/proc/self/statm").exists():
            self._statm = _ProcStatm()
            self._read = self._statm
        self._sample()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="harness-rss-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        self._sample()
        if self._statm is not None:
            self._read = self._given_read or current_rss_bytes
            self._statm.close()
            self._statm = None

    def reset(self) -> None:
        with self._lock:
            self._peak = 0
        self._sample()

    def peak_bytes(self) -> int:
        if self._thread is not None:
            self._sample()  # include "now": a short cell may end between two samples
        with self._lock:
            return self._peak


class CudaPeakMemory(MemoryMonitor):
    """torch.cuda's own peak counter of allocated tensor memory on one device."""

    kind: MemoryKind = "cuda"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def reset(self) -> None:
        import torch

        torch.cuda.reset_peak_memory_stats(self.device)

    def start(self) -> None:
        self.reset()

    def peak_bytes(self) -> int:
        import torch

        return int(torch.cuda.max_memory_allocated(self.device))


def make_memory_monitor(device: torch.device | str) -> MemoryMonitor:
    """CUDA's peak counter on a GPU; else the kernel's resettable RSS peak, else a sampling thread."""
    dev = as_device(device)
    if dev.type == "cuda":
        return CudaPeakMemory(dev)
    return KernelPeakRss() if KernelPeakRss.supported() else RssSampler()
