"""Mixed-adapter cost: one decode step and a whole generation, base / PEFT single / PEFT mixed / batched.

SmolLM2-135M fp32 with the zoo's eight resume_json LoRA adapters (ranks 1-64, rsLoRA included), on
resume_json prompts, 1 thread. Variants are interleaved (A B C D A B C D ...) and medians taken, so
load from other processes hits each alike; every figure is a ratio to the base in the same run.

    .venv/bin/python bench/multi_lora_step.py            # 32 rows, 64 new tokens, 7 rounds
    .venv/bin/python bench/multi_lora_step.py --quick    # 9 rows, 16 new tokens, 3 rounds

Rows:
* decode step: one token per row on a KV cache of the prompts' length (the cache is cropped back
  after each step so every repeat sees the same length);
* prefill: the whole mixed batch's first forward, batched as segments and as concatenated factors
  (what `multi_lora.SEGMENT_MIN_TOKENS` decides between);
* end to end: `engine.generate_until` over the rows (rows leave as they finish), same greedy text
  checked between PEFT mixed and batched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("HARNESS_DATA_DIR", str((PROJECT.parent / "shared" / "data").resolve()))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

ZOO = PROJECT / "adapters_zoo" / "smollm2-135m" / "resume_json"
ADAPTERS = ("lora_r1", "lora_r2", "lora_r4", "lora_r8", "lora_r16", "lora_r32", "lora_r64", "lora_r16_rslora")
STOP = "###"


def prompts(count: int) -> list[str]:
    from harness.data import load_examples
    from harness.prompts import render
    from harness.registry import task_registry

    task = task_registry().get("resume_json")
    return [render(task, example) for example in load_examples(task, limit=count)]


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each variant, run A B C ... A B C ... `rounds` times (after one warm-up)."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def step_variants(host, texts: list[str], mixed: list[str | None]) -> tuple[dict[str, Callable[[], object]], int]:
    """One decode step per variant on one prefilled cache (a step's cost does not depend on the cached
    numbers, so the variants share it); returns the variants and the cache length."""
    import torch

    from harness.run.kv_cache import growing_cache
    from harness.run.forward import encode, positions

    enc = encode(host.base, texts)
    pos = positions(enc["attention_mask"])
    length = enc["input_ids"].shape[1]
    cache = growing_cache(host.base.model.config, reserve=8)
    host.base.model(**enc, position_ids=pos, past_key_values=cache, use_cache=True, logits_to_keep=1)
    token = torch.zeros(len(texts), 1, dtype=torch.long)
    mask = torch.cat([enc["attention_mask"], enc["attention_mask"].new_ones(len(texts), 1)], dim=1)
    routes = {"base": ("peft", [None] * len(texts)), "PEFT single": ("peft", [ADAPTERS[3]] * len(texts)),
              "PEFT mixed": ("peft", mixed), "batched mixed": ("batched", mixed)}
    variants = {}
    for label, (mode, rows) in routes.items():
        host.multi_lora = mode
        route = host.route(rows)

        def step(route=route) -> object:
            out = route(input_ids=token, attention_mask=mask, position_ids=pos[:, -1:] + 1, past_key_values=cache, use_cache=True)
            cache.crop(-1)  # forget the token just added: every repeat sees the same length
            return out

        variants[label] = step
    host.multi_lora = "batched"
    return variants, length


def prefill_variants(host, texts: list[str], mixed: list[str | None]) -> dict[str, Callable[[], object]]:
    from harness.run import multi_lora
    from harness.run.forward import encode, positions

    enc = encode(host.base, texts)
    pos = positions(enc["attention_mask"])
    route = host.route(mixed)

    def run(segment_min: int) -> Callable[[], object]:
        def prefill() -> object:
            multi_lora.SEGMENT_MIN_TOKENS = segment_min
            try:
                return route(**enc, position_ids=pos, use_cache=False, logits_to_keep=1)
            finally:
                multi_lora.SEGMENT_MIN_TOKENS = default

        return prefill

    default = multi_lora.SEGMENT_MIN_TOKENS
    return {"prefill segments": run(2), "prefill concat": run(1 << 30)}


def generation_variants(host, texts: list[str], mixed: list[str | None], max_new_tokens: int,
                        texts_out: dict[str, dict[str, str]]) -> dict[str, Callable[[], object]]:
    from harness.run import engine
    from harness.spec import GenerationSettings

    settings = GenerationSettings(max_new_tokens=max_new_tokens, stop=(STOP,))

    def run(label: str, mode: str, rows: list[str | None]) -> Callable[[], object]:
        def generate() -> object:
            host.multi_lora = mode
            out: dict[str, str] = {}
            requests = [engine.GenRequest(f"{i}", t, a) for i, (t, a) in enumerate(zip(texts, rows))]
            engine.generate_until(host, requests, settings, len(texts), lambda r: out.__setitem__(r.key, r.text))
            texts_out[label] = out
            host.multi_lora = "batched"
            return out

        return generate

    return {"e2e base": run("base", "peft", [None] * len(texts)), "e2e PEFT mixed": run("peft", "peft", mixed),
            "e2e batched mixed": run("batched", "batched", mixed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="9 rows (one per adapter and the base), 16 new tokens, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.max_new_tokens, args.rounds = 9, 16, 3

    import torch

    from harness.run.adapter_host import AdapterHost
    from harness.run.loading import load_base
    from harness.spec import AdapterSpec, ModelSpec

    torch.set_num_threads(1)
    host = AdapterHost(load_base(ModelSpec(name="smollm2-135m", dtype="float32")))
    for name in ADAPTERS:
        host.add(AdapterSpec(path=ZOO / name, name=name))
    texts = prompts(args.rows)
    # every adapter and the base, round robin over the rows
    mixed = [([None, *ADAPTERS])[i % (len(ADAPTERS) + 1)] for i in range(len(texts))]
    mixed = sorted(mixed, key=lambda a: a or "")  # as the engine orders a batch
    print(f"SmolLM2-135M fp32, {len(texts)} rows ({len(ADAPTERS)} adapters + base), {args.max_new_tokens} new tokens, "
          f"1 thread, medians of {args.rounds} interleaved rounds (decode step: {args.rounds * 3})", flush=True)
    with torch.inference_mode():
        steps, length = step_variants(host, texts, mixed)
        step = interleaved(steps, args.rounds * 3)
        print(f"\ndecode step, KV {length} (base {1000 * step['base']:.1f} ms):")
        for label in ("PEFT single", "PEFT mixed", "batched mixed"):
            print(f"  {label}: {step[label] / step['base']:.2f}x the base step", flush=True)
        prefill = interleaved(prefill_variants(host, texts, mixed), args.rounds)
        print(f"\nprefill of the mixed batch: segments {1000 * prefill['prefill segments']:.0f} ms, concatenated "
              f"{1000 * prefill['prefill concat']:.0f} ms (concat/segments {prefill['prefill concat'] / prefill['prefill segments']:.2f})",
              flush=True)
        outputs: dict[str, dict[str, str]] = {}
        e2e = interleaved(generation_variants(host, texts, mixed, args.max_new_tokens, outputs), args.rounds)
    print("\n| | decode step | end to end |")
    print("| --- | --- | --- |")
    print("| base only | 1.00 | 1.00 |")
    print(f"| PEFT, one adapter | {step['PEFT single'] / step['base']:.2f} | - |")
    print(f"| PEFT mixed, {len(ADAPTERS)} adapters | {step['PEFT mixed'] / step['base']:.2f} | {e2e['e2e PEFT mixed'] / e2e['e2e base']:.2f} |")
    print(f"| batched mixed, {len(ADAPTERS)} adapters | {step['batched mixed'] / step['base']:.2f} | {e2e['e2e batched mixed'] / e2e['e2e base']:.2f} |")
    same = sum(outputs["peft"][k] == outputs["batched"][k] for k in outputs["peft"])
    print(f"\ngreedy text, batched vs PEFT mixed: identical for {same}/{len(texts)} rows")

if __name__ == "__main__":
    main()
