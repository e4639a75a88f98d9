"""One cell's timing when several cells (base + adapters) were served by one stream of mixed batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.diagnostics.flops import ModelCost
from harness.diagnostics.recorder import TimingSummary, per_second, percentile


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
        "examples_per_s": per_second(len(latencies), wall),
        "prompt_tokens_per_s": per_second(sum(prompt_lengths), wall),
        "generated_tokens_per_s": per_second(sum(new_lengths), wall),
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
