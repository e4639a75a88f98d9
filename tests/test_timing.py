"""Tests for the timing modules of harness/diagnostics (timers, memory, flops, peak_flops, recorder, overhead).

The CUDA path runs for real where a GPU is present. Where none is, the `cuda` fixture replaces
exactly these, and nothing else: torch.cuda.is_available (-> True), torch.cuda.Event (a host-clock
event, since the CPU build's Event cannot be instantiated), torch.cuda.reset_peak_memory_stats and
torch.cuda.max_memory_allocated (the CPU build lacks the counters), torch.cuda.get_device_name.
On a real GPU the same fixture only wraps the real functions to count calls.
"""

from __future__ import annotations

import json
import mmap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from harness.diagnostics import memory, peak_flops
from harness.diagnostics.flops import ModelCost, attention_flops, estimate_flops, model_cost
from harness.diagnostics.memory import CudaPeakMemory, KernelPeakRss, RssSampler, make_memory_monitor
from harness.diagnostics.overhead import Workload, adapter_overhead, peft_forward_overhead
from harness.diagnostics.peak_flops import benchmark_matmul, measure_peak_flops, peak_flops_key
from harness.diagnostics.recorder import TimingRecorder, percentile
from harness.diagnostics.timers import CpuTimer, CudaTimer, Timer, make_timer
from harness.errors import CellError, HarnessError

REAL_CUDA = torch.cuda.is_available()


# ---------------------------------------------------------------- test doubles


class ManualTimer(Timer):
    """A timer on a clock the test moves by hand, so that every figure can be checked exactly."""

    kind = "manual"

    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def mark(self) -> float:
        return self.now

    def elapsed(self, start: float, end: float) -> float:
        return end - start


class FixedMemory(memory.MemoryMonitor):
    kind: memory.MemoryKind = "rss"

    def __init__(self) -> None:
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def peak_bytes(self) -> int:
        return 1234


@dataclass
class CudaLog:
    """What the CUDA path did: events made, records, synchronisations, memory calls."""

    events: list[Any] = field(default_factory=list)
    records: int = 0
    synchronizes: int = 0
    resets: int = 0
    peak_reads: int = 0
    fake_peak_bytes: int = 7 * 2**20


@pytest.fixture
def cuda(monkeypatch: pytest.MonkeyPatch) -> Iterator[CudaLog]:
    log = CudaLog()
    base_event: type = torch.cuda.Event if REAL_CUDA else object

    class LoggedEvent(base_event):  # type: ignore[misc, valid-type]
        def __init__(self, enable_timing: bool = False, **kwargs: Any) -> None:
            if REAL_CUDA:
                super().__init__()
            assert enable_timing, "timing events must be created with enable_timing=True"
            self.host_time: float | None = None
            self.done = False
            log.events.append(self)

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            if REAL_CUDA:
                return base_event.__new__(cls, enable_timing=True)
            return object.__new__(cls)

        def record(self, stream: Any = None) -> None:
            log.records += 1
            self.host_time = time.perf_counter()
            if REAL_CUDA:
                super().record(stream)

        def synchronize(self) -> None:
            log.synchronizes += 1
            self.done = True
            if REAL_CUDA:
                super().synchronize()

        def elapsed_time(self, end: Any) -> float:
            if REAL_CUDA:
                return super().elapsed_time(end)
            # The real call fails unless the end event has completed; so does the stand-in.
            assert end.done, "elapsed_time read before the end event was synchronised"
            return (end.host_time - self.host_time) * 1000.0

    def reset_peak(device: Any = None) -> None:
        log.resets += 1
        if REAL_CUDA:
            real_reset(device)

    def max_allocated(device: Any = None) -> int:
        log.peak_reads += 1
        return real_max(device) if REAL_CUDA else log.fake_peak_bytes

    real_reset, real_max = torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated
    monkeypatch.setattr(torch.cuda, "Event", LoggedEvent)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", max_allocated)
    if not REAL_CUDA:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU 80GB")
    yield log


# ---------------------------------------------------------------- timers


def test_cpu_timer_measures_elapsed_time() -> None:
    timer = make_timer("cpu")
    assert isinstance(timer, CpuTimer)
    with timer.measure() as span:
        time.sleep(0.02)
    assert 0.02 <= span.seconds < 5.0


def test_span_read_inside_its_block_is_an_error() -> None:
    with CpuTimer().measure() as span, pytest.raises(RuntimeError, match="before its measure"):
        _ = span.seconds


def test_cuda_device_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(HarnessError, match="CUDA is not available"):
        make_timer("cuda")


def test_cuda_timer_records_events_and_synchronises_on_read(cuda: CudaLog) -> None:
    timer = make_timer(torch.device("cuda"))
    assert isinstance(timer, CudaTimer)
    with timer.measure() as span:
        time.sleep(0.02)
    assert len(cuda.events) == 2 and cuda.records == 2
    assert cuda.synchronizes == 0  # nothing waits until a duration is read
    seconds = span.seconds
    assert cuda.synchronizes == 1
    assert 0.015 <= seconds < 5.0


def test_cuda_recorder_excludes_warmup_from_peak_memory_and_reads_once(cuda: CudaLog) -> None:
    recorder = TimingRecorder("cuda", torch.float16)
    assert isinstance(recorder.memory, CudaPeakMemory)
    with recorder:
        assert cuda.resets == 1  # at start
        for index in range(3):
            with recorder.batch([4, 6]) as record:
                time.sleep(0.005)
            record.finish([3, 5])
            # the peak is reset when the first measured batch (index 1) starts, not later
            assert cuda.resets == (1 if index == 0 else 2)
    assert cuda.synchronizes == 0  # no per-batch synchronisation
    summary = recorder.summary()
    assert cuda.synchronizes > 0
    assert summary.memory_kind == "cuda" and summary.device == "cuda"
    assert summary.dtype == "float16"
    assert summary.warmup_batches == 1 and summary.examples == 4
    assert summary.peak_memory_bytes == (torch.cuda.max_memory_allocated() if REAL_CUDA else cuda.fake_peak_bytes)
    assert summary.wall_seconds >= 2 * 0.005


def test_peak_flops_key_names_the_gpu(cuda: CudaLog) -> None:
    key = peak_flops_key("cuda", torch.bfloat16, 8192)
    assert torch.cuda.get_device_name(torch.device("cuda")) in key
    assert "bfloat16" in key and f"torch {torch.__version__}" in key


# ---------------------------------------------------------------- memory


def test_rss_sampler_reset_forgets_earlier_peak() -> None:
    readings = iter([100, 500, 200, 300, 250])
    sampler = RssSampler(read=lambda: next(readings))
    sampler._sample()  # 100
    sampler._sample()  # 500: a warm-up spike
    sampler.reset()  # reads 200
    sampler._sample()  # 300
    assert sampler.peak_bytes() == 300  # reads 250 too, still 300


def test_current_rss_agrees_with_psutil() -> None:
    import psutil  # installed with accelerate

    ours, theirs = memory.current_rss_bytes(), psutil.Process().memory_info().rss
    assert abs(ours - theirs) < 0.1 * theirs


def resident_block(size: int) -> mmap.mmap:
    """`size` bytes the kernel must back: an anonymous mapping with a byte written on every page.

    A tensor or numpy buffer may come from an allocator's pool or from pages already resident, and
    then not raise the RSS at all; fresh anonymous pages written one by one always do. `close()`
    unmaps them at once.
    """
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    return block


def test_rss_sampler_sees_a_real_allocation() -> None:
    written = threading.Event()
    samples = threading.Semaphore(0)

    def counted_read() -> int:
        # Count only reads that began once the whole block was written: samples taken while it was
        # being written (every 5 ms, and writing 64 MiB page by page takes longer) see part of it.
        complete = written.is_set()
        value = memory.current_rss_bytes()
        if complete:
            samples.release()
        return value

    sampler = RssSampler(interval_seconds=0.005, read=counted_read)
    sampler.start()
    baseline = memory.current_rss_bytes()
    block = resident_block(64 * 2**20)
    written.set()
    # Hold the block until the thread has sampled it whole, however loaded the machine.
    assert samples.acquire(timeout=60), "the sampling thread took no sample within a minute"
    block.close()
    sampler.stop()
    assert sampler.peak_bytes() >= baseline + 48 * 2**20


def test_cpu_memory_monitor_catches_a_short_spike_and_forgets_warmup() -> None:
    monitor = make_memory_monitor("cpu")
    if not KernelPeakRss.supported():  # no resettable kernel peak here: the sampling thread stands in
        assert isinstance(monitor, RssSampler)
        return
    assert isinstance(monitor, KernelPeakRss)
    monitor.start()
    resident_block(128 * 2**20).close()  # a 128 MiB warm-up spike, unmapped at once
    monitor.reset()
    baseline = memory.current_rss_bytes()
    # 64 MiB of fresh pages, unmapped at once: no sampler could promise to see it; the kernel's peak does.
    resident_block(64 * 2**20).close()
    monitor.stop()
    peak = monitor.peak_bytes()
    assert baseline + 48 * 2**20 <= peak < baseline + 160 * 2**20
    after = resident_block(64 * 2**20)  # after stop: not the cell's memory
    assert monitor.peak_bytes() == peak
    after.close()


# ---------------------------------------------------------------- FLOPs


def test_estimate_flops_counts_adapter_work_only_when_unmerged() -> None:
    assert estimate_flops(1000, 10, prompt_tokens=30, new_tokens=20) == 2 * 1010 * 50
    assert estimate_flops(1000, 10, 30, 20, adapter_merged=True) == 2 * 1000 * 50
    assert estimate_flops(1000, 0, 30, 20, attention=7.0) == 2 * 1000 * 50 + 7.0


def test_attention_flops_sums_causal_positions() -> None:
    # one sequence of 3 tokens attends to 1 + 2 + 3 = 6 positions; another of 2 to 3
    assert attention_flops([2, 1], [1, 1], num_layers=2, hidden_size=8) == 4 * 2 * 8 * (6 + 3)
    cost = ModelCost(params=100, adapter_params=5, num_layers=2, hidden_size=8)
    assert cost.flops([2, 1], [1, 1]) == 2 * 105 * 5 + 4 * 2 * 8 * 9


# ---------------------------------------------------------------- peak FLOP/s


def test_benchmark_matmul_is_positive_and_finite() -> None:
    # on the GPU when there is one (its timer is then CUDA events), else on the CPU
    flops = benchmark_matmul("cuda" if REAL_CUDA else "cpu", torch.float32, 128, budget_seconds=0.05)
    assert 1e6 < flops < 1e15


def test_peak_flops_measured_once_then_cached(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    first = measure_peak_flops("cpu", torch.float32, size=128, budget_seconds=0.05)
    stored = json.loads((tmp_path / "peak_flops.json").read_text())
    key = peak_flops_key("cpu", torch.float32, 128)
    assert stored[key]["flops_per_second"] == first

    def must_not_run(*args: Any, **kwargs: Any) -> float:
        raise AssertionError("the cached peak should have been used")

    monkeypatch.setattr(peak_flops, "benchmark_matmul", must_not_run)
    assert measure_peak_flops("cpu", "float32", size=128) == first


def test_corrupt_peak_flops_cache_is_measured_again(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    (tmp_path / "peak_flops.json").write_text("{not json")
    assert measure_peak_flops("cpu", torch.float32, size=64, budget_seconds=0.02) > 0
    assert json.loads((tmp_path / "peak_flops.json").read_text())


# ---------------------------------------------------------------- recorder


def _recorder(timer: ManualTimer, **kwargs: Any) -> TimingRecorder:
    return TimingRecorder("cpu", torch.float32, timer=timer, memory=FixedMemory(), **kwargs)


def _run_batch(recorder: TimingRecorder, timer: ManualTimer, seconds: float, prompts: list[int], new: list[int], **kw: Any) -> None:
    with recorder.batch(prompts, **kw) as record:
        timer.advance(seconds)
    record.finish(new)


def test_recorder_summary_excludes_the_first_batch() -> None:
    timer = ManualTimer()
    cost = ModelCost(params=1000)
    recorder = _recorder(timer, cost=cost, peak_flops=1e6)
    with recorder:
        _run_batch(recorder, timer, 9.0, [5, 5], [100, 100])  # warm-up: slow, must not count
        _run_batch(recorder, timer, 2.0, [10, 20], [4, 2])
        timer.advance(1.0)  # host work between batches counts toward wall time, not busy time
        _run_batch(recorder, timer, 1.0, [30], [6])
    s = recorder.summary()
    assert s.warmup_excluded and s.warmup_batches == 1
    assert (s.wall_seconds, s.busy_seconds) == (4.0, 3.0)
    assert (s.examples, s.prompt_tokens, s.generated_tokens) == (3, 60, 12)
    assert s.examples_per_s == pytest.approx(0.75)
    assert s.prompt_tokens_per_s == pytest.approx(15.0)
    assert s.generated_tokens_per_s == pytest.approx(3.0)
    assert s.seconds_per_output_token == pytest.approx(3.0 / (4 + 6))  # steps: max per batch
    assert s.latency_p50 == pytest.approx(2.0)  # latencies 2, 2, 1
    assert s.latency_p95 == pytest.approx(2.0)
    assert s.flops == pytest.approx(2 * 1000 * 72)
    assert s.mfu == pytest.approx(2 * 1000 * 72 / 4.0 / 1e6)
    assert s.peak_memory_bytes == 1234 and s.memory_kind == "rss"
    assert recorder.memory.resets == 1  # type: ignore[attr-defined]
    assert s.to_dict()["device"] == "cpu"


def test_recorder_uses_row_finish_times_when_the_engine_knows_them() -> None:
    timer = ManualTimer()
    recorder = _recorder(timer, warmup_batches=0)
    with recorder, recorder.batch([3, 3, 3, 3]) as record:
        timer.advance(4.0)
    record.finish([1, 2, 3, 4], row_seconds=[1.0, 2.0, 3.0, 4.0])
    s = recorder.summary()
    assert s.latency_p50 == pytest.approx(2.5)
    assert s.latency_p95 == pytest.approx(3.85)
    assert s.flops is None and s.mfu is None


def test_explicit_warmup_batches_are_excluded_wherever_they_fall() -> None:
    timer = ManualTimer()
    recorder = _recorder(timer, warmup_batches=0)
    with recorder:
        _run_batch(recorder, timer, 1.0, [2], [1])
        _run_batch(recorder, timer, 5.0, [2], [1], warmup=True)
        _run_batch(recorder, timer, 1.0, [2], [1])
    s = recorder.summary()
    assert (s.examples, s.wall_seconds, s.warmup_batches) == (2, 2.0, 1)


def test_a_cell_of_only_warmup_batches_still_has_figures() -> None:
    timer = ManualTimer()
    recorder = _recorder(timer)
    with recorder:
        _run_batch(recorder, timer, 2.0, [4, 4], [0, 0])
    s = recorder.summary()
    assert not s.warmup_excluded
    assert (s.examples, s.wall_seconds) == (2, 2.0)
    assert s.seconds_per_output_token is None and s.generated_tokens_per_s == 0.0


def test_recorder_rejects_mismatched_row_counts_and_empty_cells() -> None:
    timer = ManualTimer()
    recorder = _recorder(timer)
    with recorder:
        with pytest.raises(ValueError, match="no batches"):
            recorder.summary()
        with recorder.batch([1, 2]) as record:
            pass
        with pytest.raises(ValueError, match="batch of 2 rows"):
            record.finish([1])


def test_recorder_on_the_cpu_measures_real_time_and_memory() -> None:
    recorder = TimingRecorder("cpu", "float32")
    with recorder:
        for _ in range(2):
            with recorder.batch([8]) as record:
                time.sleep(0.01)
            record.finish([2])
    s = recorder.summary()
    assert s.wall_seconds >= 0.01 and s.peak_memory_bytes > 0 and s.memory_kind == "rss"


def test_percentile_matches_linear_interpolation() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


# ---------------------------------------------------------------- adapter overhead


def test_adapter_overhead_ratios_from_alternating_rounds() -> None:
    timer = ManualTimer()
    calls: list[str] = []

    def work(name: str, seconds: float) -> Workload:
        def run() -> None:
            calls.append(name)
            timer.advance(seconds)

        return Workload(run=run, enter=lambda: calls.append(f"enter {name}"), leave=lambda: calls.append(f"leave {name}"))

    report = adapter_overhead(work("base", 1.0), work("lora", 2.0), work("merged", 1.5), repeats=2, rounds=3, timer=timer)
    assert (report.base_seconds, report.unmerged_seconds, report.merged_seconds) == (1.0, 2.0, 1.5)
    assert (report.unmerged_ratio, report.merged_ratio, report.repeats) == (2.0, 1.5, 6)
    firsts = [c.split()[1] for c in calls if c.startswith("enter")][::3]
    assert firsts == ["base", "lora", "merged"]  # the order rotates every round
    assert calls.count("lora") == 3 * (2 + 1)  # timed repeats plus one warm-up per round


@pytest.fixture(scope="module")
def tiny_lora() -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    base = LlamaForCausalLM(config).eval()
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(base, lora).eval()


def test_model_cost_splits_base_and_adapter(tiny_lora: Any) -> None:
    cost = model_cost(tiny_lora)
    lora_numel = sum(p.numel() for n, p in tiny_lora.named_parameters() if ".lora_" in n)
    unique_total = sum(p.numel() for p in {id(p): p for p in tiny_lora.parameters()}.values())
    # the embedding is tied to the output head, a matmul, so it counts once
    assert cost.params == unique_total - lora_numel
    # per layer: q_proj A 4x32 + B 32x4, v_proj (2 kv heads of 8) A 4x32 + B 16x4
    assert cost.adapter_params == lora_numel == 2 * ((4 * 32 + 32 * 4) + (4 * 32 + 16 * 4))
    assert (cost.num_layers, cost.hidden_size) == (2, 32)


def test_peft_forward_overhead_leaves_the_model_as_it_found_it(tiny_lora: Any) -> None:
    inputs = {"input_ids": torch.randint(0, 96, (2, 12))}
    before = {n: p.detach().clone() for n, p in tiny_lora.named_parameters()}
    with torch.inference_mode():
        logits_before = tiny_lora(**inputs).logits
    report = peft_forward_overhead(tiny_lora, inputs, repeats=2, rounds=1, warmup=1)
    assert report.base_seconds > 0 and report.unmerged_ratio > 0 and report.merged_ratio > 0
    assert report.repeats == 2
    assert all(torch.equal(before[n], p) for n, p in tiny_lora.named_parameters())
    with torch.inference_mode():
        assert torch.equal(tiny_lora(**inputs).logits, logits_before)  # adapter enabled, unmerged


def test_peft_forward_overhead_refuses_a_merged_adapter(tiny_lora: Any) -> None:
    saved = {n: p.detach().clone() for n, p in tiny_lora.named_parameters()}
    tiny_lora.base_model.merge_adapter()
    try:
        with pytest.raises(HarnessError, match="already merged"):
            peft_forward_overhead(tiny_lora, {"input_ids": torch.zeros(1, 4, dtype=torch.long)})
    finally:
        tiny_lora.base_model.unmerge_adapter()
        with torch.no_grad():  # unmerge is not bit-exact; later tests share this model
            for name, param in tiny_lora.named_parameters():
                param.copy_(saved[name])


def test_peft_forward_overhead_refuses_a_quantised_base(tiny_lora: Any) -> None:
    q_proj = tiny_lora.base_model.model.model.layers[0].self_attn.q_proj.get_base_layer()
    original = q_proj.weight
    # packed 4-bit weights are stored as uint8, as bitsandbytes' Params4bit does
    q_proj.weight = torch.nn.Parameter(torch.zeros(original.numel() // 2, 1, dtype=torch.uint8), requires_grad=False)
    try:
        with pytest.raises(CellError, match="quantised"):
            peft_forward_overhead(tiny_lora, {"input_ids": torch.zeros(1, 4, dtype=torch.long)})
    finally:
        q_proj.weight = original
