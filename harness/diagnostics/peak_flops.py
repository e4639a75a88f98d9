"""Peak FLOP/s of this machine, the denominator of MFU, measured rather than taken from a datasheet.

MFU = achieved FLOP/s over the peak FLOP/s measured on this machine with a short matmul
micro-benchmark at the model's dtype, cached per machine, device, dtype, torch version and thread
count, since a datasheet peak is rarely reachable and CPUs have none.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import tempfile
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.diagnostics.timers import Timer, as_device, make_timer

if TYPE_CHECKING:
    import torch


def cache_dir() -> Path:
    """HARNESS_CACHE, else ~/.cache/harness."""
    return Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _device_label(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def dtype_name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


def peak_flops_key(device: torch.device | str, dtype: torch.dtype | str, size: int) -> str:
    """Cache key: the numbers differ across machines, devices, dtypes, torch versions and thread counts."""
    import torch

    dev = as_device(device)
    parts = [
        socket.gethostname(),
        f"{dev.type}:{_device_label(dev)}",
        dtype_name(dtype),
        f"torch {torch.__version__}",
        f"threads {torch.get_num_threads()}",
        f"n {size}",
    ]
    return " | ".join(parts)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):  # missing or corrupt: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: Mapping[str, Any]) -> None:
    # Write-then-rename so that parallel workers never read half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".peak_flops.", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def benchmark_matmul(
    device: torch.device | str,
    dtype: torch.dtype | str,
    size: int,
    *,
    budget_seconds: float = 0.5,
    max_repeats: int = 10,
    timer: Timer | None = None,
) -> float:
    """Best-of FLOP/s of an n×n by n×n matmul (2n³ FLOPs), repeated until the budget or max_repeats."""
    import torch

    dev = as_device(device)
    torch_dtype = getattr(torch, dtype_name(dtype)) if isinstance(dtype, str) else dtype
    timer = timer or make_timer(dev)
    a = torch.randn(size, size, device=dev).to(torch_dtype)
    b = torch.randn(size, size, device=dev).to(torch_dtype)
    out = torch.empty(size, size, device=dev, dtype=torch_dtype)
    torch.matmul(a, b, out=out)  # warm-up: kernel selection, thread pool start
    best = math.inf
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(max_repeats):
            with timer.measure() as span:
                torch.matmul(a, b, out=out)
            best = min(best, span.seconds)
            if time.perf_counter() - started > budget_seconds:
                break
    return 2.0 * size**3 / best


def measure_peak_flops(
    device: torch.device | str,
    dtype: torch.dtype | str,
    size: int | None = None,
    *,
    use_cache: bool = True,
    budget_seconds: float = 0.5,
) -> float:
    """Peak matmul FLOP/s of this machine and device at `dtype`, measured once and cached.

    Cached in `cache_dir()/peak_flops.json`, keyed by hostname, CPU model or GPU name, dtype, torch
    version and thread count. Default size: 1024 on the CPU (well under a second), 8192 on a GPU.
    """
    dev = as_device(device)
    n = size or (8192 if dev.type == "cuda" else 1024)
    path = cache_dir() / "peak_flops.json"
    key = peak_flops_key(dev, dtype, n)
    if use_cache:
        cached = _read_cache(path).get(key)
        if isinstance(cached, dict) and isinstance(cached.get("flops_per_second"), (int, float)):
            return float(cached["flops_per_second"])
    flops = benchmark_matmul(dev, dtype, n, budget_seconds=budget_seconds)
    if use_cache:
        data = _read_cache(path)  # re-read: another worker may have added keys meanwhile
        data[key] = {"flops_per_second": flops, "measured_at": datetime.now(timezone.utc).isoformat()}
        _write_cache(path, data)
    return flops
