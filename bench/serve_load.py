"""Load on `harness serve`: throughput and p50/p95 latency at 1, 8 and 32 concurrent clients,
one adapter vs 8 mixed adapters.

A real `harness serve` process serves SmolLM2-135M with the eight LoRA adapters of the resume_json
zoo (lora_r1 ... lora_r64, lora_r16_rslora). Each client sends its requests one after another
(greedy, the resume_json test prompts, a fixed max_tokens); "single" sends every request to one
adapter, "mixed" spreads them round robin over all eight. Throughput is generated tokens (from
each answer's `usage`) per second of the level's wall time.

Goals (ratios, measured in one run):
* 32 clients over 8 mixed adapters reach >= 4x the throughput of one client;
* mixed adapters cost <= 20% against a single adapter at the same concurrency
  (mixed throughput / single throughput >= 0.8).

Usage:  python bench/serve_load.py [--quick] [--port 8765] [--json out.json]
--quick: 16 new tokens per answer, 1 request per client (2 for the lone client).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

ZOO = ROOT / "adapters_zoo" / "smollm2-135m" / "resume_json"
ADAPTERS = ("lora_r1", "lora_r2", "lora_r4", "lora_r8", "lora_r16", "lora_r32", "lora_r64", "lora_r16_rslora")
SINGLE = "lora_r8"
CONCURRENCY = (1, 8, 32)


def start_server(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    command = [sys.executable, "-m", "harness.cli", "serve", "--model", "smollm2-135m", "--port", str(port), "--batch-cap", "32"]
    for name in ADAPTERS:
        command += ["--adapter", str(ZOO / name)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"harness serve exited: {process.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("harness serve did not start within 600 s")


def prompts(count: int) -> list[str]:
    from harness.data import load_examples
    from harness.prompts import render
    from harness.registry import task_registry

    task = task_registry().get("resume_json")
    return [render(task, example) for example in load_examples(task, limit=count)]


async def level(url: str, texts: list[str], clients: int, per_client: int, mixed: bool, max_tokens: int) -> dict[str, Any]:
    """`clients` concurrent clients, each sending `per_client` requests in turn."""
    latencies: list[float] = []
    tokens = 0

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens
        for turn in range(per_client):
            number = index * per_client + turn
            model = ADAPTERS[number % len(ADAPTERS)] if mixed else SINGLE
            body = {"model": model, "prompt": texts[number % len(texts)], "max_tokens": max_tokens, "temperature": 0}
            start = time.perf_counter()
            response = await http.post(url + "/completions", json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - start)
            tokens += response.json()["usage"]["completion_tokens"]

    async with httpx.AsyncClient(timeout=600) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {"clients": clients, "mode": "mixed" if mixed else "single", "requests": len(latencies), "tokens": tokens,
            "wall_s": wall, "tokens_per_s": tokens / wall, "latency_p50_s": statistics.median(latencies),
            "latency_p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    max_tokens, per_client = (16, 1) if args.quick else (64, 4)
    texts = prompts(64)
    server = start_server(args.port)
    url = f"http://127.0.0.1:{args.port}/v1"
    try:
        asyncio.run(level(url, texts, len(ADAPTERS), 1, True, 4))  # warm-up: every adapter once
        rows = []
        for clients in CONCURRENCY:
            for mixed in (False, True):
                turns = per_client * 2 if clients == 1 else per_client
                rows.append(asyncio.run(level(url, texts, clients, turns, mixed, max_tokens)))
                row = rows[-1]
                print(f"{row['clients']:>3} clients {row['mode']:>6}: {row['tokens_per_s']:7.1f} tok/s  "
                      f"p50 {row['latency_p50_s']:6.2f} s  p95 {row['latency_p95_s']:6.2f} s  ({row['requests']} requests, {row['wall_s']:.1f} s)", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    by = {(r["clients"], r["mode"]): r["tokens_per_s"] for r in rows}
    scale = by[(32, "mixed")] / by[(1, "mixed")]
    mix_cost = {c: by[(c, "mixed")] / by[(c, "single")] for c in CONCURRENCY}
    print(f"32 mixed clients / 1 client: {scale:.2f}x (goal >= 4x: {'met' if scale >= 4 else 'NOT met'})")
    for clients, ratio in mix_cost.items():
        print(f"mixed / single at {clients} clients: {ratio:.2f} (goal >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "scale_32_mixed_over_1": scale, "mixed_over_single": mix_cost}, indent=2))


if __name__ == "__main__":
    main()
