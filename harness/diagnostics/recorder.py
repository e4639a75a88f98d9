"""Per-cell timing: latency, throughput, peak memory and MFU of the batches of one cell.

* Warm-up. The first batch of a cell pays for lazy initialisation (kernel selection, allocator
  growth, a freshly swapped adapter's first use); it is excluded from every figure, as is any
  batch marked `warmup=True`. When a cell has nothing but warm-up batches, they are used and the
  summary says `warmup_excluded=False`, so no cell ends up without figures.
* Per-example latency in a batched engine is the time from the start of the row's batch to the
  moment that row's output was complete. An engine that knows when each row stopped (a stopping
  criterion that notes the time) passes `row_seconds`; otherwise a row is complete when its batch
  returns, because that is when the caller can use it (Hugging Face `generate` returns all rows at
  once). p50/p95 are taken over these per-example latencies.
* Timers, peak memory, FLOPs and the peak FLOP/s each have their own module (timers, memory, flops,
  peak_flops); this one combines them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harness.diagnostics.flops import ModelCost
from harness.diagnostics.memory import MemoryKind, MemoryMonitor, make_memory_monitor
from harness.diagnostics.peak_flops import dtype_name
from harness.diagnostics.timers import Span, Timer, as_device, make_timer

if TYPE_CHECKING:
    import torch


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def per_second(amount: float, seconds: float) -> float:
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
        self.device = as_device(device)
        self.dtype = dtype_name(dtype)
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
        mfu = per_second(flops, wall) / self.peak_flops if flops is not None and self.peak_flops else None
        return TimingSummary(
            wall_seconds=wall,
            busy_seconds=busy,
            examples=len(prompt_lengths),
            prompt_tokens=sum(prompt_lengths),
            generated_tokens=sum(new_lengths),
            examples_per_s=per_second(len(prompt_lengths), wall),
            prompt_tokens_per_s=per_second(sum(prompt_lengths), wall),
            generated_tokens_per_s=per_second(sum(new_lengths), wall),
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
