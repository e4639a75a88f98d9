"""How much does timing add to a run? Goal: under 2 %.

The same generation workload (greedy `generate` on fixed batches, a fixed number of new tokens)
runs with and without a TimingRecorder around every batch (RSS sampler thread, per-batch spans,
token bookkeeping and the final summary included). Plain and timed halves alternate in an
A-B-B-A order, so that a linear drift in machine speed (other processes on shared cores) falls
on both alike. Three figures come out:

* end to end, wall: total timed wall time / total plain wall time - 1, with each round's own
  ratio, whose spread is the noise floor of this machine;
* end to end, CPU: the same with the process's CPU time (all threads, the sampler's included),
  which other processes on shared cores disturb far less than wall time;
* direct: the recorder's own cost per batch (measured on empty batches, sampler running) over the
  mean batch time; this one is immune to the machine's noise.

Usage:  python bench/timing_overhead.py [--rounds 3] [--batches 2] [--new-tokens 8] [--threads 1] [--tiny]
Uses the embedded SmolLM2-135M through harness.run.loading when it loads, else a tiny random Llama.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from harness.diagnostics.flops import model_cost  # noqa: E402
from harness.diagnostics.recorder import TimingRecorder  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    model: Any
    batches: list[dict[str, torch.Tensor]]
    new_tokens: int


@dataclass(frozen=True)
class OverheadResult:
    model: str
    rounds: int
    batches_per_half: int
    new_tokens: int
    plain_seconds: float
    timed_seconds: float
    end_to_end_overhead: float  # timed / plain - 1, wall time
    round_overheads: list[float]
    plain_cpu_seconds: float
    timed_cpu_seconds: float
    cpu_overhead: float  # timed / plain - 1, process CPU time
    mean_batch_seconds: float
    recorder_seconds_per_batch: float
    direct_overhead: float  # recorder cost per batch / mean batch time


def _smollm2() -> tuple[str, Any] | None:
    try:
        from harness.run.loading import load_base
        from harness.spec import ModelSpec

        base = load_base(ModelSpec(name="smollm2-135m", device="cpu", dtype="float32"))
    except Exception as exc:  # any failure: fall back to the tiny model, say why
        print(f"SmolLM2 unavailable ({type(exc).__name__}: {exc}); using a tiny random Llama.")
        return None
    return "smollm2-135m", base.model


def _tiny_llama() -> tuple[str, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
    )
    return "tiny-random-llama", LlamaForCausalLM(config).eval()


def build_workload(batches: int, batch_size: int, prompt_tokens: int, new_tokens: int, tiny: bool) -> Workload:
    name, model = (None if tiny else _smollm2()) or _tiny_llama()
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    inputs = [
        {
            "input_ids": torch.randint(3, vocab, (batch_size, prompt_tokens), generator=generator),
            "attention_mask": torch.ones(batch_size, prompt_tokens, dtype=torch.long),
        }
        for _ in range(batches)
    ]
    return Workload(name, model, inputs, new_tokens)


def _generate(work: Workload, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.inference_mode():
        return work.model.generate(
            **batch, max_new_tokens=work.new_tokens, min_new_tokens=work.new_tokens,
            do_sample=False, pad_token_id=0,
        )


@dataclass(frozen=True)
class Took:
    wall: float
    cpu: float

    def __add__(self, other: Took) -> Took:
        return Took(self.wall + other.wall, self.cpu + other.cpu)


def run_plain(work: Workload) -> Took:
    started, cpu = time.perf_counter(), time.process_time()
    for batch in work.batches:
        _generate(work, batch)
    return Took(time.perf_counter() - started, time.process_time() - cpu)


def run_timed(work: Workload, cost: Any) -> Took:
    started, cpu = time.perf_counter(), time.process_time()
    recorder = TimingRecorder("cpu", torch.float32, cost=cost, peak_flops=1e11)
    with recorder:
        for batch in work.batches:
            prompt = batch["input_ids"]
            with recorder.batch([prompt.shape[1]] * prompt.shape[0]) as record:
                out = _generate(work, batch)
            record.finish([out.shape[1] - prompt.shape[1]] * prompt.shape[0])
    recorder.summary()
    return Took(time.perf_counter() - started, time.process_time() - cpu)


def recorder_cost_per_batch(cost: Any, batches: int = 2000) -> float:
    """Seconds the recorder adds per batch: empty batches, sampler running, summary included."""
    started = time.perf_counter()
    recorder = TimingRecorder("cpu", torch.float32, cost=cost, peak_flops=1e11)
    with recorder:
        for _ in range(batches):
            with recorder.batch([32] * 4) as record:
                pass
            record.finish([16] * 4)
    recorder.summary()
    return (time.perf_counter() - started) / batches


def measure(work: Workload, rounds: int) -> OverheadResult:
    cost = model_cost(work.model)
    run_plain(work)  # warm-up: thread pools, allocator, first-call paths
    run_timed(work, cost)
    plain: list[Took] = []
    timed: list[Took] = []
    for index in range(rounds):
        # A-B-B-A: a linear drift costs both halves the same
        p1, t1, t2, p2 = run_plain(work), run_timed(work, cost), run_timed(work, cost), run_plain(work)
        plain.append(p1 + p2)
        timed.append(t1 + t2)
        print(
            f"round {index + 1}/{rounds}: wall plain {plain[-1].wall:.3f} s timed {timed[-1].wall:.3f} s"
            f" ({timed[-1].wall / plain[-1].wall - 1:+.2%}); cpu plain {plain[-1].cpu:.3f} s"
            f" timed {timed[-1].cpu:.3f} s ({timed[-1].cpu / plain[-1].cpu - 1:+.2%})",
            flush=True,
        )
    plain_wall, timed_wall = sum(t.wall for t in plain), sum(t.wall for t in timed)
    plain_cpu, timed_cpu = sum(t.cpu for t in plain), sum(t.cpu for t in timed)
    mean_batch = plain_wall / (2 * rounds * len(work.batches))
    per_batch = recorder_cost_per_batch(cost)
    return OverheadResult(
        model=work.name,
        rounds=rounds,
        batches_per_half=len(work.batches),
        new_tokens=work.new_tokens,
        plain_seconds=plain_wall,
        timed_seconds=timed_wall,
        end_to_end_overhead=timed_wall / plain_wall - 1.0,
        round_overheads=[t.wall / p.wall - 1.0 for t, p in zip(timed, plain)],
        plain_cpu_seconds=plain_cpu,
        timed_cpu_seconds=timed_cpu,
        cpu_overhead=timed_cpu / plain_cpu - 1.0,
        mean_batch_seconds=mean_batch,
        recorder_seconds_per_batch=per_batch,
        direct_overhead=per_batch / mean_batch,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2, help="batches per half round")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=8)
    # On shared, busy cores two spinning OpenMP threads ran generate 6x slower than one (measured
    # here at load 12 on 2 cores); one thread gives steadier numbers. 0 keeps torch's default.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--tiny", action="store_true", help="skip SmolLM2, use a tiny random Llama")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = build_workload(args.batches, args.batch_size, args.prompt_tokens, args.new_tokens, args.tiny)
    print(f"model {work.name}, torch threads {torch.get_num_threads()}", flush=True)
    result = measure(work, args.rounds)
    spread = statistics.pstdev(result.round_overheads) if len(result.round_overheads) > 1 else 0.0
    print(
        f"wall: plain {result.plain_seconds:.3f} s, timed {result.timed_seconds:.3f} s, overhead"
        f" {result.end_to_end_overhead:+.2%} (per-round sd {spread:.2%}: machine noise)"
    )
    print(
        f"cpu:  plain {result.plain_cpu_seconds:.3f} s, timed {result.timed_cpu_seconds:.3f} s, overhead"
        f" {result.cpu_overhead:+.2%}"
    )
    print(
        f"recorder cost {result.recorder_seconds_per_batch * 1e6:.1f} us per batch of "
        f"{result.mean_batch_seconds * 1e3:.1f} ms: direct overhead {result.direct_overhead:.4%}"
    )
    # The direct figure decides: the end-to-end ones cannot resolve 2 % when the noise is larger.
    print("goal < 2 % (direct):", "met" if result.direct_overhead < 0.02 else "NOT met")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1))


if __name__ == "__main__":
    main()
