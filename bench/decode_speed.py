"""Decode speed of the engine against transformers' `generate`, base model, batch 1 and 16.

SmolLM2-135M fp32 on resume_json prompts, greedy, no stop string (both sides stop at EOS or the token
budget), 1 thread. The two sides are interleaved (A B A B ...) and the medians of generated tokens/s
compared; the greedy text of both is checked to be the same.

A second table bounds what any faster decode step could gain: one engine decode step (a forward of
one token per row over the prompts' KV cache) against the weight GEMMs alone — `x @ W.T` for every
Linear of the model and the LM head at the same batch size, nothing else. Their ratio is the largest
speed-up a step can get while it computes in fp32 (attention, norms and all framework overhead at zero).

    .venv/bin/python bench/decode_speed.py            # batches 1 and 16, 48 new tokens, 5 rounds
    .venv/bin/python bench/decode_speed.py --quick    # 24 new tokens, 3 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("HARNESS_DATA_DIR", str((PROJECT.parent / "shared" / "data").resolve()))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"


def engine_run(host, texts: list[str], max_new_tokens: int) -> tuple[int, list[str]]:
    from harness.run import engine
    from harness.spec import GenerationSettings

    out: dict[str, tuple[int, str]] = {}
    requests = [engine.GenRequest(str(i), t, None) for i, t in enumerate(texts)]
    engine.generate_until(host, requests, GenerationSettings(max_new_tokens=max_new_tokens), len(texts),
                          lambda r: out.__setitem__(r.key, (r.new_tokens, r.text)))
    return sum(n for n, _ in out.values()), [out[str(i)][1] for i in range(len(texts))]


def generate_run(base, texts: list[str], max_new_tokens: int) -> tuple[int, list[str]]:
    tok = base.tokenizer
    enc = tok(texts, return_tensors="pt", padding=True)
    ids = base.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
    new = ids[:, enc["input_ids"].shape[1]:]
    eos = tok.eos_token_id
    counts = [(row.tolist() + [eos]).index(eos) + (1 if eos in row.tolist() else 0) for row in new]
    return sum(counts), tok.batch_decode(new, skip_special_tokens=True)


def decode_step_ms(base, texts: list[str], steps: int) -> float:
    """Median time of one decode step (one token per row) after prefilling `texts`."""
    import torch
    from harness.run.kv_cache import growing_cache

    model, tok = base.model, base.tokenizer
    enc = tok(texts, return_tensors="pt", padding=True)
    cache = growing_cache(model.config, reserve=steps + 1)
    model(**enc, past_key_values=cache, use_cache=True, logits_to_keep=1)
    mask, times = enc["attention_mask"], []
    token = torch.full((len(texts), 1), tok.eos_token_id)
    for _ in range(steps):
        mask = torch.cat([mask, mask.new_ones(len(texts), 1)], dim=1)
        started = time.perf_counter()
        model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def weight_gemms_ms(base, rows: int, rounds: int) -> float:
    """Median time of `x @ W.T` over every Linear weight of the model (LM head included), `rows` rows."""
    import torch

    weights = [m.weight for m in base.model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1], dtype=w.dtype) for w in weights}
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for w in weights:
            torch.matmul(inputs[w.shape[1]], w.T)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def floor_table(base, all_texts: list[str], batches: list[int], rounds: int) -> None:
    print("\n| batch | decode step (ms) | weight GEMMs alone (ms) | largest possible step speed-up |")
    print("| --- | --- | --- | --- |")
    for size in batches:
        step = decode_step_ms(base, all_texts[:size], steps=2 * rounds + 1)
        gemms = weight_gemms_ms(base, size, 2 * rounds + 1)
        print(f"| {size} | {step:.1f} | {gemms:.1f} | {step / gemms:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.max_new_tokens, args.rounds = 24, 3

    import torch

    from harness.data import load_examples
    from harness.prompts import render
    from harness.registry import task_registry
    from harness.run.adapter_host import AdapterHost
    from harness.run.loading import load_base
    from harness.spec import ModelSpec

    torch.set_num_threads(1)
    base = load_base(ModelSpec(name="smollm2-135m", dtype="float32"))
    host = AdapterHost(base)
    task = task_registry().get("resume_json")
    all_texts = [render(task, e) for e in load_examples(task, limit=max(args.batches))]
    print(f"SmolLM2-135M fp32, {args.max_new_tokens} new tokens max, 1 thread, medians of {args.rounds} interleaved rounds\n")
    print("| batch | engine tok/s | generate tok/s | engine / generate | same greedy text |")
    print("| --- | --- | --- | --- | --- |")
    with torch.inference_mode():
        for size in args.batches:
            texts = all_texts[:size]
            rates: dict[str, list[float]] = {"engine": [], "generate": []}
            outputs: dict[str, list[str]] = {}
            for _ in range(args.rounds + 1):  # the first round warms up and is dropped
                for name, run in (("engine", lambda: engine_run(host, texts, args.max_new_tokens)),
                                  ("generate", lambda: generate_run(base, texts, args.max_new_tokens))):
                    started = time.perf_counter()
                    tokens, outputs[name] = run()
                    rates[name].append(tokens / (time.perf_counter() - started))
            engine_rate, generate_rate = (statistics.median(rates[n][1:]) for n in ("engine", "generate"))
            same = outputs["engine"] == outputs["generate"]
            print(f"| {size} | {engine_rate:.1f} | {generate_rate:.1f} | {engine_rate / generate_rate:.2f}x | {same} |", flush=True)
        floor_table(base, all_texts, args.batches, args.rounds)


if __name__ == "__main__":
    main()
