"""How much does a fully cached re-run of a matrix cost next to the first run? Goal: at most 5 %.

The same `harness run` command (SmolLM2-135M, two zoo adapters and the base on resume_json, a few
examples, few new tokens) runs twice as a real process on a fresh store: the first run makes every
prediction, the second finds every one in the store and must not load the model. Both figures
include the interpreter's start and imports, as a user would see them. CPU time of the child
process is reported too: other processes on shared cores disturb it far less than wall time.

Usage:  python bench/cached_rerun.py [--limit 8] [--max-new-tokens 16] [--adapters lora_r8,lora_r16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "adapters_zoo" / "smollm2-135m" / "resume_json"


def timed_run(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--adapters", default="lora_r8,lora_r16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "harness.cli", "run", "--task", "resume_json", "--limit", str(args.limit),
                   "--max-new-tokens", str(args.max_new_tokens), "--store", str(Path(folder) / "bench.sqlite")]
        for name in args.adapters.split(","):
            command += ["--adapter", str(ZOO / name)]
        first_wall, first_cpu = timed_run(command)
        again_wall, again_cpu = timed_run(command)
    report = {
        "matrix": f"smollm2-135m x (base + {args.adapters}) x resume_json, {args.limit} examples, {args.max_new_tokens} new tokens",
        "first_run_s": {"wall": round(first_wall, 2), "cpu": round(first_cpu, 2)},
        "cached_rerun_s": {"wall": round(again_wall, 2), "cpu": round(again_cpu, 2)},
        "ratio_wall": round(again_wall / first_wall, 4),
        "ratio_cpu": round(again_cpu / first_cpu, 4),
        "goal": "ratio <= 0.05",
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
