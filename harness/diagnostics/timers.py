"""Timers that measure the device's work, not the host's launch of it.

On CUDA, kernels run asynchronously, so a host clock read after a launch measures the launch, not
the work. `CudaTimer` records `torch.cuda.Event(enable_timing=True)` marks on the current stream and
synchronises on the *end* event only when a duration is read; reading is deferred, so a cell that
reads its spans once at the end adds no synchronisation per batch. On the CPU, `time.perf_counter`
is monotonic and has sub-microsecond resolution.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


class Span:
    """One measured interval. Reading `seconds` may wait for the device to finish the work."""

    def __init__(self, timer: Timer) -> None:
        self._timer = timer
        self.start: Any = None
        self.end: Any = None

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("a Span's seconds were read before its measure() block ended")
        return self._timer.elapsed(self.start, self.end)


class Timer(ABC):
    """Marks points in time on one device; durations are read between any two marks."""

    kind: str

    @abstractmethod
    def mark(self) -> Any:
        """A point in time, recorded after all work queued so far on the device."""

    @abstractmethod
    def elapsed(self, start: Any, end: Any) -> float:
        """Seconds between two marks of this timer."""

    @contextmanager
    def measure(self) -> Iterator[Span]:
        span = Span(self)
        span.start = self.mark()
        try:
            yield span
        finally:
            span.end = self.mark()


class CpuTimer(Timer):
    """time.perf_counter; `sync` waits for an asynchronous device first (torch.mps.synchronize)."""

    kind = "cpu"

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync

    def mark(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def elapsed(self, start: float, end: float) -> float:
        return end - start


class CudaTimer(Timer):
    """CUDA events on the current stream; synchronises on the end event when a duration is read."""

    kind = "cuda"

    def mark(self) -> Any:
        import torch

        event = torch.cuda.Event(enable_timing=True)
        # No stream given: the current stream of the current device, where the model's kernels go
        # (an engine on another GPU than cuda:0 calls torch.cuda.set_device first).
        event.record()
        return event

    def elapsed(self, start: Any, end: Any) -> float:
        end.synchronize()  # elapsed_time is only defined once both events have completed
        return float(start.elapsed_time(end)) / 1000.0  # CUDA reports milliseconds


def as_device(device: torch.device | str) -> torch.device:
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


def make_timer(device: torch.device | str) -> Timer:
    """The right timer for a device: CUDA events on a GPU, perf_counter elsewhere."""
    import torch

    dev = as_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"Device '{dev}' was asked for but CUDA is not available; pass --device cpu.")
        return CudaTimer()
    if dev.type == "mps":
        return CpuTimer(sync=torch.mps.synchronize)
    return CpuTimer()
