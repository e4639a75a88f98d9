"""Timing you can trust: timers, per-cell latency and throughput, peak memory, FLOPs, MFU, adapter overhead.

Design choices, each for a reason:

* Timers. On CUDA, kernels run asynchronously, so a host clock read after a launch measures the
  launch, not the work. `CudaTimer` records `torch.cuda.Event(enable_timing=True)` marks on the
  current stream and synchronises on the *end* event only when a duration is read; reading is
  deferred, so a cell that reads its spans once at the end adds no synchronisation per batch.
  On the CPU, `time.perf_counter` is monotonic and has sub-microsecond resolution.
* Warm-up. The first batch of a cell pays for lazy initialisation (kernel selection, allocator
  growth, a freshly swapped adapter's first use); it is excluded from every figure, as is any
  batch marked `warmup=True`. When a cell has nothing but warm-up batches, they are used and the
  summary says `warmup_excluded=False`, so no cell ends up without figures.
* Per-example latency in a batched engine is the time from the start of the row's batch to the
  moment that row's output was complete. An engine that knows when each row stopped (a stopping
  criterion that notes the time) passes `row_seconds`; otherwise a row is complete when its batch
  returns, because that is when the caller can use it (Hugging Face `generate` returns all rows at
  once). p50/p95 are taken over these per-example latencies.
* Peak memory. On CUDA: `torch.cuda.reset_peak_memory_stats` when the first measured batch starts
  and `torch.cuda.max_memory_allocated` at the end (tensor memory, not the allocator's cache). On the
  CPU, `getrusage().ru_maxrss` covers the whole life of the process and cannot be reset, so a cell
  run after a bigger one would inherit its peak. Linux keeps a resettable high-water mark, though:
  writing "5" to /proc/self/clear_refs resets VmHWM (/proc/self/status) to the current RSS (Linux
  4.0+). The kernel folds the current RSS into that mark before it unmaps memory, so even a spike
  freed a moment later counts, and nothing runs while the cell does; it is the default. Where it is unavailable (macOS, a sandbox that refuses the write)
  a daemon thread samples the current RSS every 50 ms instead; measured here, each wake-up costs
  about 0.2 ms of CPU (the thread must take the GIL from a busy main thread), so 50 ms keeps it
  under 0.5 %, and a spike shorter than the interval can be missed. Both peaks are process-wide:
  two cells timed at once in one process would see each other's memory (so would CUDA's counter).
* FLOPs. 2 FLOPs per parameter per token for the forward pass (Kaplan et al. 2020), counting the
  parameters that take part in matrix products (embedding look-ups are free; a tied output head is
  counted once), plus 2 per adapter parameter per token while a LoRA adapter is unmerged (x·A then
  ·B), plus the attention scores and the weighted sum, 4·d per attended position per layer with
  causal attention and a KV cache. Every prompt and generated token is counted once.
* MFU = achieved FLOP/s over the peak FLOP/s measured on this machine with a short matmul
  micro-benchmark at the model's dtype, cached per machine, device, dtype, torch version and
  thread count, since a datasheet peak is rarely reachable and CPUs have none.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import CellError, HarnessError

if TYPE_CHECKING:
    import torch

MemoryKind = Literal["rss", "cuda"]

# --------------------------------------------------------------------------------------------
# Timers
# --------------------------------------------------------------------------------------------


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


def _as_device(device: torch.device | str) -> torch.device:
    import torch

    return device if isinstance(device, torch.device) else torch.device(device)


def make_timer(device: torch.device | str) -> Timer:
    """The right timer for a device: CUDA events on a GPU, perf_counter elsewhere."""
    import torch

    dev = _as_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"Device '{dev}' was asked for but CUDA is not available; pass --device cpu.")
        return CudaTimer()
    if dev.type == "mps":
        return CpuTimer(sync=torch.mps.synchronize)
    return CpuTimer()


# --------------------------------------------------------------------------------------------
# Peak memory
# --------------------------------------------------------------------------------------------


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
    dev = _as_device(device)
    if dev.type == "cuda":
        return CudaPeakMemory(dev)
    return KernelPeakRss() if KernelPeakRss.supported() else RssSampler()


# --------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------


def estimate_flops(
    num_params: int,
    adapter_params: int,
    prompt_tokens: int,
    new_tokens: int,
    *,
    adapter_merged: bool = False,
    attention: float = 0.0,
) -> float:
    """Forward FLOPs for a cell: 2·N per token, +2·adapter params per token while unmerged, + attention.

    `attention` is the attention term from `attention_flops` (0 to leave it out).
    """
    tokens = prompt_tokens + new_tokens
    per_token = 2 * num_params + (0 if adapter_merged else 2 * adapter_params)
    return float(per_token * tokens) + attention


def attention_flops(
    prompt_lengths: Sequence[int], new_lengths: Sequence[int], num_layers: int, hidden_size: int
) -> float:
    """QKᵀ and the weighted sum of V: 4·d FLOPs per attended position per layer, causal with a KV cache.

    Token i of a sequence (1-based) attends to i positions, so a sequence of T tokens costs
    4·L·d·T(T+1)/2. Grouped-query attention shares K/V heads but not this work, so d is the model width.
    """
    total = 0
    for prompt, new in zip(prompt_lengths, new_lengths, strict=True):
        length = prompt + new
        total += length * (length + 1) // 2
    return 4.0 * num_layers * hidden_size * total


@dataclass(frozen=True)
class ModelCost:
    """What a model costs per token: matmul parameters of the base, of the adapter, and its attention shape."""

    params: int
    adapter_params: int = 0
    adapter_merged: bool = False
    num_layers: int = 0  # 0 leaves the attention term out
    hidden_size: int = 0

    def flops(self, prompt_lengths: Sequence[int], new_lengths: Sequence[int]) -> float:
        attention = attention_flops(prompt_lengths, new_lengths, self.num_layers, self.hidden_size)
        return estimate_flops(
            self.params,
            self.adapter_params,
            sum(prompt_lengths),
            sum(new_lengths),
            adapter_merged=self.adapter_merged,
            attention=attention,
        )


def _active_adapter_param_ids(model: torch.nn.Module) -> dict[int, int]:
    """id -> numel of the parameters of the active adapters of every peft tuner layer."""
    import torch

    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # no peft: no adapters
        return {}
    found: dict[int, int] = {}
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for layer_name in module.adapter_layer_names:
            container = getattr(module, layer_name, None)
            if container is None:
                continue
            for adapter in module.active_adapters:
                if adapter not in container:
                    continue
                item = container[adapter]
                params = [item] if isinstance(item, torch.nn.Parameter) else list(item.parameters())
                found.update({id(p): p.numel() for p in params})
    return found


def model_cost(model: torch.nn.Module, *, adapter_merged: bool = False) -> ModelCost:
    """Count a (peft) model's matmul parameters, split into base and active adapter, and read its shape.

    Embedding look-ups cost no FLOPs, so an embedding weight counts only when a linear layer uses
    it too (a tied output head); shared tensors count once.
    """
    import torch

    adapter = _active_adapter_param_ids(model)
    embedding_ids: set[int] = set()
    used_elsewhere: set[int] = set()
    for module in model.modules():
        own = [id(p) for p in module.parameters(recurse=False)]
        (embedding_ids if isinstance(module, torch.nn.Embedding) else used_elsewhere).update(own)
    base = 0
    seen: set[int] = set()
    for p in model.parameters():
        key = id(p)
        if key in seen or key in adapter:
            continue
        seen.add(key)
        if key in embedding_ids and key not in used_elsewhere:
            continue
        base += p.numel()
    config = getattr(model, "config", None)
    return ModelCost(
        params=base,
        adapter_params=sum(adapter.values()),
        adapter_merged=adapter_merged,
        num_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
    )


# --------------------------------------------------------------------------------------------
# Peak FLOP/s: a matmul micro-benchmark, cached per machine and device
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """HARNESS_CACHE, else ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _device_label(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def _dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def peak_flops_key(device: torch.device | str, dtype: torch.dtype | str, size: int) -> str:
    """Cache key: the numbers differ across machines, devices, dtypes, torch versions and thread counts."""
    import torch

    dev = _as_device(device)
    parts = [
        socket.gethostname(),
        f"{dev.type}:{_device_label(dev)}",
        _dtype_name(dtype),
        f"torch {torch.__version__}",
        f"threads {torch.get_num_threads()}",
        f"n {size}",
    ]
    return " | ".join(parts)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or corrupt: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: Mapping[str, Any]) -> None:
    # Write-then-rename so that parallel workers never read half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".peak_flops.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def benchmark_matmul(
    device: torch.device | str,
    dtype: torch.dtype | str,
    size: int,
    *,
    budget_seconds: float = 0.5,
    max_repeats: int = 10,
    timer: Timer | None = None,
) -> float:
    """Best-of FLOP/s of an n×n by n×n matmul (2n³ FLOPs), repeated until the budget or max_repeats."""
    import torch

    dev = _as_device(device)
    torch_dtype = getattr(torch, _dtype_name(dtype)) if isinstance(dtype, str) else dtype
    timer = timer or make_timer(dev)
    a = torch.randn(size, size, device=dev).to(torch_dtype)
    b = torch.randn(size, size, device=dev).to(torch_dtype)
    out = torch.empty(size, size, device=dev, dtype=torch_dtype)
    torch.matmul(a, b, out=out)  # warm-up: kernel selection, thread pool start
    best = math.inf
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(max_repeats):
            with timer.measure() as span:
                torch.matmul(a, b, out=out)
            best = min(best, span.seconds)
            if time.perf_counter() - started > budget_seconds:
                break
    return 2.0 * size**3 / best


def measure_peak_flops(
    device: torch.device | str,
    dtype: torch.dtype | str,
    size: int | None = None,
    *,
    use_cache: bool = True,
    budget_seconds: float = 0.5,
) -> float:
    """Peak matmul FLOP/s of this machine and device at `dtype`, measured once and cached.

    Cached in `cache_dir()/peak_flops.json`, keyed by hostname, CPU model or GPU name, dtype, torch
    version and thread count. Default size: 1024 on the CPU (well under a second), 8192 on a GPU.
    """
    dev = _as_device(device)
    n = size or (8192 if dev.type == "cuda" else 1024)
    path = cache_dir() / "peak_flops.json"
    key = peak_flops_key(dev, dtype, n)
    if use_cache:
        cached = _read_cache(path).get(key)
        if isinstance(cached, dict) and isinstance(cached.get("flops_per_second"), (int, float)):
            return float(cached["flops_per_second"])
    flops = benchmark_matmul(dev, dtype, n, budget_seconds=budget_seconds)
    if use_cache:
        data = _read_cache(path)  # re-read: another worker may have added keys meanwhile
        data[key] = {"flops_per_second": flops, "measured_at": datetime.now(timezone.utc).isoformat()}
        _write_cache(path, data)
    return flops


# --------------------------------------------------------------------------------------------
# Per-cell recording
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _per_second(amount: float, seconds: float) -> float:
    # A cell that took no measurable time (a clock that did not move) has no rate, not an infinite one.
    return amount / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class TimingSummary:
    """Timing of one cell, warm-up excluded. Rates use wall_seconds; None where a figure is undefined."""

    wall_seconds: float  # first measured batch start -> last measured batch end, warm-up spans removed
    busy_seconds: float  # sum of measured batch spans (model time, no host work between batches)
    examples: int
    prompt_tokens: int
    generated_tokens: int
    examples_per_s: float
    prompt_tokens_per_s: float
    generated_tokens_per_s: float
    # busy time per decoding step (a batch takes max(new tokens) steps), prefill amortised in
    seconds_per_output_token: float | None
    latency_p50: float  # per-example latency, see the module docstring
    latency_p95: float
    peak_memory_bytes: int
    memory_kind: MemoryKind
    flops: float | None
    mfu: float | None
    peak_flops: float | None
    device: str
    dtype: str
    warmup_batches: int
    warmup_excluded: bool  # False when the cell had only warm-up batches and they were used

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BatchRecord:
    """One batch as the engine saw it; the engine fills `new_tokens` (and `row_seconds`) via finish()."""

    span: Span
    prompt_tokens: list[int]
    warmup: bool
    new_tokens: list[int] = field(default_factory=list)
    row_seconds: list[float] | None = None

    def finish(self, new_tokens: Sequence[int], row_seconds: Sequence[float] | None = None) -> None:
        """Generated tokens per row and, when known, seconds from batch start to each row finishing."""
        if len(new_tokens) != len(self.prompt_tokens):
            raise ValueError(f"{len(new_tokens)} new-token counts for a batch of {len(self.prompt_tokens)} rows")
        if row_seconds is not None and len(row_seconds) != len(self.prompt_tokens):
            raise ValueError(f"{len(row_seconds)} row times for a batch of {len(self.prompt_tokens)} rows")
        self.new_tokens = list(new_tokens)
        self.row_seconds = None if row_seconds is None else list(row_seconds)

    @property
    def rows(self) -> int:
        return len(self.prompt_tokens)

    def row_tokens(self) -> list[int]:
        return self.new_tokens or [0] * self.rows

    def latencies(self) -> list[float]:
        return self.row_seconds if self.row_seconds is not None else [self.span.seconds] * self.rows


class TimingRecorder:
    """Times the batches of one cell; `summary()` turns them into a TimingSummary.

        recorder = TimingRecorder(device, dtype, cost=model_cost(model), peak_flops=measure_peak_flops(device, dtype))
        with recorder:
            for batch in batches:
                with recorder.batch(prompt_tokens=[len(ids) for ids in batch]) as record:
                    outputs = model.generate(...)
                record.finish(new_tokens=[...])
        summary = recorder.summary()

    The first `warmup_batches` batches are warm-up unless a batch says otherwise with `warmup=`.
    """

    def __init__(
        self,
        device: torch.device | str,
        dtype: torch.dtype | str,
        *,
        cost: ModelCost | None = None,
        peak_flops: float | None = None,
        warmup_batches: int = 1,
        timer: Timer | None = None,
        memory: MemoryMonitor | None = None,
    ) -> None:
        self.device = _as_device(device)
        self.dtype = _dtype_name(dtype)
        self.cost = cost
        self.peak_flops = peak_flops
        self.warmup_batches = warmup_batches
        self.timer = timer or make_timer(self.device)
        self.memory = memory or make_memory_monitor(self.device)
        self.batches: list[BatchRecord] = []
        self._measuring = False  # a measured (non-warm-up) batch has started

    def __enter__(self) -> TimingRecorder:
        self.memory.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.memory.stop()

    def _is_warmup(self, warmup: bool | None) -> bool:
        return warmup if warmup is not None else len(self.batches) < self.warmup_batches

    @contextmanager
    def batch(self, prompt_tokens: Sequence[int], *, warmup: bool | None = None) -> Iterator[BatchRecord]:
        """Time one batch; `prompt_tokens` holds each row's prompt length."""
        is_warmup = self._is_warmup(warmup)
        if not is_warmup and not self._measuring:
            self.memory.reset()  # peak memory, like every other figure, excludes warm-up
            self._measuring = True
        with self.timer.measure() as span:
            record = BatchRecord(span=span, prompt_tokens=list(prompt_tokens), warmup=is_warmup)
            yield record
        self.batches.append(record)

    def _wall_seconds(self, used: list[BatchRecord], *, skip_warmups: bool) -> float:
        """From the first used batch's start to the last one's end, minus warm-up batches in between."""
        used_ids = {id(b) for b in used}
        positions = [i for i, b in enumerate(self.batches) if id(b) in used_ids]
        whole = self.timer.elapsed(used[0].span.start, used[-1].span.end)
        if not skip_warmups:
            return whole
        between = self.batches[positions[0] : positions[-1] + 1]
        return whole - sum(b.span.seconds for b in between if b.warmup)

    def summary(self) -> TimingSummary:
        if not self.batches:
            raise ValueError("no batches were recorded, so there is no timing to summarise")
        measured = [b for b in self.batches if not b.warmup]
        excluded = bool(measured)
        used = measured or self.batches
        wall = self._wall_seconds(used, skip_warmups=excluded)
        busy = sum(b.span.seconds for b in used)
        prompt_lengths = [n for b in used for n in b.prompt_tokens]
        new_lengths = [n for b in used for n in b.row_tokens()]
        steps = sum(max(b.row_tokens(), default=0) for b in used)
        latencies = [s for b in used for s in b.latencies()]
        flops = self.cost.flops(prompt_lengths, new_lengths) if self.cost else None
        mfu = _per_second(flops, wall) / self.peak_flops if flops is not None and self.peak_flops else None
        return TimingSummary(
            wall_seconds=wall,
            busy_seconds=busy,
            examples=len(prompt_lengths),
            prompt_tokens=sum(prompt_lengths),
            generated_tokens=sum(new_lengths),
            examples_per_s=_per_second(len(prompt_lengths), wall),
            prompt_tokens_per_s=_per_second(sum(prompt_lengths), wall),
            generated_tokens_per_s=_per_second(sum(new_lengths), wall),
            seconds_per_output_token=busy / steps if steps else None,
            latency_p50=percentile(latencies, 50),
            latency_p95=percentile(latencies, 95),
            peak_memory_bytes=self.memory.peak_bytes(),
            memory_kind=self.memory.kind,
            flops=flops,
            mfu=mfu,
            peak_flops=self.peak_flops,
            device=str(self.device),
            dtype=self.dtype,
            warmup_batches=len(self.batches) - len(measured),
            warmup_excluded=excluded,
        )


# --------------------------------------------------------------------------------------------
# Adapter overhead: base vs unmerged adapter vs merged weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A timed call and the untimed steps that put the model in the state it needs."""

    run: Callable[[], object]
    enter: Callable[[], None] | None = None
    leave: Callable[[], None] | None = None


@dataclass(frozen=True)
class OverheadReport:
    """Median latency of each variant and the ratios to the bare base (1.0 = no overhead)."""

    base_seconds: float
    unmerged_seconds: float
    merged_seconds: float
    unmerged_ratio: float  # unmerged / base
    merged_ratio: float  # merged / base
    repeats: int  # timed calls per variant

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_workload(item: Workload | Callable[[], object]) -> Workload:
    return item if isinstance(item, Workload) else Workload(run=item)


def _time_round(workload: Workload, timer: Timer, repeats: int, warmup: int) -> list[float]:
    if workload.enter:
        workload.enter()
    try:
        for _ in range(warmup):
            workload.run()
        spans = []
        for _ in range(repeats):
            with timer.measure() as span:
                workload.run()
            spans.append(span)
        return [s.seconds for s in spans]  # read after the loop: one synchronisation on CUDA
    finally:
        if workload.leave:
            workload.leave()


def adapter_overhead(
    run_base: Workload | Callable[[], object],
    run_unmerged: Workload | Callable[[], object],
    run_merged: Workload | Callable[[], object],
    repeats: int = 5,
    *,
    rounds: int = 3,
    warmup: int = 1,
    timer: Timer | None = None,
) -> OverheadReport:
    """Latency of three variants of the same work, as medians and ratios to the base.

    The variants run in alternating rounds, in a rotated order each round, so that drift (thermal,
    a neighbour's load) falls on all three alike; each round starts with untimed warm-up calls.
    """
    if repeats < 1 or rounds < 1:
        raise ValueError("adapter_overhead needs repeats >= 1 and rounds >= 1")
    timer = timer or CpuTimer()
    variants = [_as_workload(w) for w in (run_base, run_unmerged, run_merged)]
    times: list[list[float]] = [[], [], []]
    for round_index in range(rounds):
        for offset in range(3):
            which = (round_index + offset) % 3
            times[which].extend(_time_round(variants[which], timer, repeats, warmup))
    base, unmerged, merged = (statistics.median(t) for t in times)
    return OverheadReport(
        base_seconds=base,
        unmerged_seconds=unmerged,
        merged_seconds=merged,
        unmerged_ratio=unmerged / base,
        merged_ratio=merged / base,
        repeats=repeats * rounds,
    )


class _MergedState:
    """Merges a PeftModel's active adapters and restores the base weights bit for bit afterwards.

    peft's unmerge subtracts the delta it added, which is exact only in exact arithmetic; the
    original tensors of every tuner layer's base layer are kept and copied back instead.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self._saved: list[tuple[Any, Any]] = []

    def base_params(self) -> list[Any]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        return [
            param
            for module in self.model.modules()
            if isinstance(module, BaseTunerLayer)
            for param in module.get_base_layer().parameters(recurse=False)
        ]

    def check(self) -> None:
        # Packed 4-bit weights (QLoRA) merge only through a lossy re-quantisation.
        if any(not param.dtype.is_floating_point for param in self.base_params()):
            raise CellError(
                "Merged-weight timing needs floating-point base weights and this base is quantised (QLoRA); "
                "load the base unquantised to compare merged and unmerged latency."
            )

    def enter(self) -> None:
        self._saved = [(param, param.detach().clone()) for param in self.base_params()]
        self.model.base_model.merge_adapter()

    def leave(self) -> None:
        import torch

        self.model.base_model.unmerge_adapter()
        with torch.no_grad():
            for param, original in self._saved:
                param.data = original  # the saved tensor itself: no rounding, no extra copy
        self._saved = []


def peft_forward_overhead(
    model: Any,
    inputs: Mapping[str, Any],
    repeats: int = 5,
    *,
    rounds: int = 3,
    warmup: int = 1,
) -> OverheadReport:
    """Forward-pass latency of a PeftModel: bare base (adapter disabled), unmerged adapter, merged weights.

    The model is left as it was found: unmerged, adapter enabled, base weights bit-identical.
    """
    import torch

    if any(getattr(m, "merged", False) for m in model.modules() if hasattr(m, "merged_adapters")):
        raise CellError("The adapter is already merged into the base weights; unmerge it before timing its overhead.")
    merged = _MergedState(model)
    merged.check()
    timer = make_timer(next(model.parameters()).device)

    def forward() -> object:
        with torch.inference_mode():
            return model(**inputs)

    def base_forward() -> object:
        with model.disable_adapter():
            return forward()

    return adapter_overhead(
        Workload(run=base_forward),
        Workload(run=forward),
        Workload(run=forward, enter=merged.enter, leave=merged.leave),
        repeats,
        rounds=rounds,
        warmup=warmup,
        timer=timer,
    )


# --------------------------------------------------------------------------------------------
# Cells that share a stream of batches
# --------------------------------------------------------------------------------------------


def cell_share(
    stream: TimingSummary,
    *,
    prompt_lengths: Sequence[int],
    new_lengths: Sequence[int],
    latencies: Sequence[float],
    cost: ModelCost | None,
    share: float,
) -> dict[str, Any]:
    """One cell's timing when several cells (base + adapters) shared mixed batches.

    `share` is the cell's fraction of the stream's work; the caller splits by tokens processed
    (prompt + generated), since a mixed batch costs every row about the same per token. Latency
    percentiles come from the cell's own rows; peak memory is the stream's (one process).
    The stream's own figures are kept under "stream".
    """
    wall = stream.wall_seconds * share
    flops = cost.flops(prompt_lengths, new_lengths) if cost is not None else None
    peak = stream.peak_flops
    return {
        "wall_seconds": wall,
        "examples": len(latencies),
        "prompt_tokens": sum(prompt_lengths),
        "generated_tokens": sum(new_lengths),
        "examples_per_s": _per_second(len(latencies), wall),
        "prompt_tokens_per_s": _per_second(sum(prompt_lengths), wall),
        "generated_tokens_per_s": _per_second(sum(new_lengths), wall),
        "seconds_per_output_token": stream.seconds_per_output_token,
        "latency_p50": percentile(latencies, 50) if latencies else None,
        "latency_p95": percentile(latencies, 95) if latencies else None,
        "peak_memory_bytes": stream.peak_memory_bytes,
        "memory_kind": stream.memory_kind,
        "flops": flops,
        "mfu": (flops / wall / peak) if flops and wall > 0 and peak else None,
        "peak_flops": peak,
        "device": stream.device,
        "dtype": stream.dtype,
        "share_of_stream": share,
        "stream": stream.to_dict(),
    }
