"""Per-adapter cost that means what it says: latency at batch 1 and throughput at a full batch, in isolation.

A cell's own timing is measured inside the engine's batches, and with mixed batching several
adapters share one batch: every row of it reports the batch's latency, so "latency per adapter"
then ranks batch membership. The cost profile instead runs each adapter alone on a fixed probe
set (the task's first `PROBE_PROMPTS` prompts, `PROBE_NEW_TOKENS` new tokens at most):
- latency: each probe prompt alone (batch 1), after one warm-up call; p50 and p95 of those calls;
- throughput: one full batch of `batch_size` probe prompts (repeated as needed), examples/s and
  generated tokens/s.
Spans are read with the device's timer (CUDA events on a GPU, see diagnostics.timers). A profile
is stored per (base weights, adapter weights, task, settings, probe, device) and never measured twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.diagnostics.recorder import percentile
from harness.diagnostics.timers import make_timer
from harness.run.cells import Progress
from harness.spec import GenerationSettings, TaskSpec, stable_hash
from harness.store import Store

PROBE_PROMPTS = 4
PROBE_NEW_TOKENS = 16
PROFILE_VERSION = 1


@dataclass(frozen=True)
class CostProfile:
    latency_p50: float  # seconds per example, batch 1
    latency_p95: float
    throughput_examples_per_s: float  # at `batch_size`, this adapter alone
    throughput_tokens_per_s: float | None  # generated tokens/s (None for classification and scoring)
    batch_size: int
    probe_prompts: int
    new_tokens: int
    device: str
    timer: str
    version: int = PROFILE_VERSION


@dataclass(frozen=True)
class ProbeTarget:
    """One row to profile: the adapter's name in the host (None: the base) and its weights hash."""

    adapter: str | None
    adapter_hash: str | None


def probe_key(device: str) -> str:
    """What makes two profiles comparable. The batch size is left out (and kept inside the profile), so a
    re-run with another --batch-size measures nothing again, as it computes no prediction again."""
    return stable_hash({"prompts": PROBE_PROMPTS, "new_tokens": PROBE_NEW_TOKENS, "device": device, "version": PROFILE_VERSION})


def _requests(output_type: str, prompts: Sequence[str], adapter: str | None, task: TaskSpec, tag: str) -> list[Any]:
    """Engine requests for the probe prompts (keys are unique so the engine never merges them)."""
    from harness.run import engine

    made: list[Any] = []
    for index, prompt in enumerate(prompts):
        key = f"cost-probe/{tag}/{index}"
        if output_type == "generate_until":
            made.append(engine.GenRequest(key=key, prompt=prompt, adapter=adapter))
        elif output_type == "multiple_choice":
            made.append(engine.ChoiceRequest(key=key, prompt=prompt, choices=tuple(task.choices), adapter=adapter))
        else:  # classify prompts are stored as a JSON [text, text_pair] pair
            text, pair = json.loads(prompt)
            made.append(engine.ClassifyRequest(key=key, text=text, text_pair=pair, adapter=adapter))
    return made


def _run(host: Any, output_type: str, requests: Sequence[Any], batch_size: int) -> int:
    """Run the requests through the engine; the generated token count (0 when nothing is generated)."""
    from harness.run import engine

    tokens = [0]

    def count(result: Any) -> None:
        tokens[0] += int(getattr(result, "new_tokens", 0))

    if output_type == "generate_until":
        settings = GenerationSettings(max_new_tokens=PROBE_NEW_TOKENS)
        engine.generate_until(host, requests, settings, batch_size, count)
    elif output_type == "multiple_choice":
        engine.multiple_choice(host, requests, batch_size, count)
    else:
        engine.classify(host, requests, batch_size, count)
    return tokens[0]


def measure(host: Any, task: TaskSpec, output_type: str, prompts: Sequence[str], adapter: str | None, batch_size: int) -> CostProfile:
    """The cost profile of one adapter (or the base) on the probe prompts, measured alone."""
    import torch

    probe = list(prompts[:PROBE_PROMPTS])
    timer = make_timer(host.base.device)
    with torch.inference_mode():
        _run(host, output_type, _requests(output_type, probe[:1], adapter, task, "warmup"), 1)  # first use of the adapter
        latencies = []
        for index, prompt in enumerate(probe):
            with timer.measure() as span:
                _run(host, output_type, _requests(output_type, [prompt], adapter, task, f"one-{index}"), 1)
            latencies.append(span.seconds)
        full = [probe[i % len(probe)] for i in range(batch_size)]
        with timer.measure() as span:
            generated = _run(host, output_type, _requests(output_type, full, adapter, task, "full"), batch_size)
        seconds = max(span.seconds, 1e-9)
    return CostProfile(
        latency_p50=percentile(latencies, 50), latency_p95=percentile(latencies, 95),
        throughput_examples_per_s=batch_size / seconds,
        throughput_tokens_per_s=generated / seconds if output_type == "generate_until" else None,
        batch_size=batch_size, probe_prompts=len(probe), new_tokens=PROBE_NEW_TOKENS,
        device=str(host.base.device), timer=timer.kind,
    )  # fmt: skip


def profile_adapters(
    store: Store,
    host: Any,
    task: TaskSpec,
    settings: dict[str, Any],
    prompts: Sequence[str],
    base_hash: str,
    targets: Sequence[ProbeTarget],
    batch_size: int,
    progress: Progress | None = None,
) -> dict[str | None, CostProfile]:
    """Measure and store the profile of every target the store does not hold yet; returns those measured.

    `progress` hears one step per adapter measured: with many adapters this takes minutes before the
    first prediction, and a CI log must not look stuck meanwhile."""
    if not prompts:
        return {}
    key = probe_key(str(host.base.device))
    missing = [t for t in targets if store.cost_profile(base_hash, t.adapter_hash, task.name, settings, key) is None]
    advance = progress(f"{task.name}: cost profiles", len(missing)) if progress and missing else None
    measured: dict[str | None, CostProfile] = {}
    for target in missing:
        profile = measure(host, task, settings["output_type"], prompts, target.adapter, batch_size)
        store.set_cost_profile(base_hash, target.adapter_hash, task.name, settings, key, asdict(profile))
        measured[target.adapter] = profile
        if advance:
            advance(1)
    return measured
