"""`harness serve`: load the base and adapters, build the app, run uvicorn on the loopback by default."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from harness.serve.app import ServeLimits, create_app
from harness.serve.scheduler import SchedulerLimits
from harness.serve.served import load_served, parse_adapter_args


def serve(model: str, adapters: Sequence[str], host: str, port: int, limits: ServeLimits, scheduling: SchedulerLimits,
          dtype: str = "float32", device: str = "auto", include_paths: Sequence[Path] = (),
          announce: Callable[[str], None] = print) -> None:
    import uvicorn

    served = load_served(model, parse_adapter_args(adapters), dtype=dtype, device=device, limits=scheduling)
    app = create_app(served, limits, tuple(include_paths))
    ids = ", ".join([served.base_id, *served.host.adapters])
    announce(f"serving {ids} at http://{host}:{port}/v1" + (" (API key required)" if limits.api_key else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
