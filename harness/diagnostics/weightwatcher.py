"""weightwatcher, isolated: its metrics on merged dense layers, without its side effects.

weightwatcher (optional, `diagnose(..., weightwatcher=True)`) runs on the merged dense layers.
Importing it calls logging.basicConfig and prints to stdout, so it is imported and run inside
`quiet()`, which restores the root logger and swallows its output. (This module is
harness.diagnostics.weightwatcher; `import weightwatcher` inside it is the absolute import of the
third-party package.)
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Runs weightwatcher without letting it touch the root logger, stdout, stderr or warnings."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield captured
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def import_weightwatcher() -> ModuleType:
    """Imports weightwatcher isolated: its basicConfig and import-time prints do not leak."""
    with quiet():
        import weightwatcher

        # Its own logger would otherwise reach whatever handlers the harness puts on root.
        ww_logger = logging.getLogger("weightwatcher")
        ww_logger.propagate = False
        if not ww_logger.handlers:
            ww_logger.addHandler(logging.NullHandler())
    return weightwatcher


@dataclass(frozen=True)
class WeightWatcherMetrics:
    """weightwatcher's per-layer metrics; its 'spectral_norm' and 'norm' are λ_max = σ₁² and Σσ²."""

    target: Literal["merged", "delta"]  # W₀ + ΔW when base weights were given, else ΔW alone
    alpha: float
    alpha_weighted: float
    stable_rank: float
    log_norm: float
    log_spectral_norm: float
    log_alpha_norm: float
    entropy: float
    num_pl_spikes: float


WW_FIELDS = ("alpha", "alpha_weighted", "stable_rank", "log_norm", "log_spectral_norm", "log_alpha_norm", "entropy", "num_pl_spikes")


def weightwatcher_metrics(
    matrices: Mapping[str, np.ndarray], target: Literal["merged", "delta"]
) -> dict[str, WeightWatcherMetrics]:
    """Runs weightwatcher.analyze on dense matrices (one dict entry per layer), quietly."""
    import torch

    ww = import_weightwatcher()
    keys = {f"layer{i}": name for i, name in enumerate(matrices)}  # ww splits names on dots
    state = {f"{key}.weight": torch.from_numpy(np.asarray(matrices[name], dtype=np.float32)) for key, name in keys.items()}
    with quiet():
        details = ww.WeightWatcher(model=state).analyze()
    metrics: dict[str, WeightWatcherMetrics] = {}
    for row in details.to_dict("records"):
        name = keys.get(str(row.get("name")))
        if name is not None:
            values = {field_name: _float(row.get(field_name)) for field_name in WW_FIELDS}
            metrics[name] = WeightWatcherMetrics(target=target, **values)
    return metrics


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
