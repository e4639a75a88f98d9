"""Adapter overhead: the latency of base vs unmerged adapter vs merged weights on the same work."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.diagnostics.timers import CpuTimer, Timer, make_timer
from harness.errors import CellError

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
