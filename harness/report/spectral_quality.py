"""Does a spectral diagnostic predict quality? Spearman correlations across the adapters of one task.

For each task and base, every adapter with a finished cell and stored spectra (`harness run --spectral`)
gives one point: its headline score and a per-adapter summary of each diagnostic (the median over its
layers of weightwatcher's alpha, the stable rank, the effective rank and the relative update size).
Spearman's rho (scipy) is computed over those points with a percentile bootstrap interval that
resamples adapters (pairs), seeded; rho is undefined when either side is constant, and fewer than
`MIN_ADAPTERS` points give no correlation at all rather than a number that means nothing.
The p-value is a permutation test's (exact up to 7 adapters): scipy's default t approximation
gave p = 0.000 for a perfect order of 4 adapters, which one ordering in 12 reaches by chance
(exact p = 2/24). Below `FEW_ADAPTERS` the row says that the bootstrap interval understates the
uncertainty: a resample of a few points keeps their order, so 4 monotone points give [1, 1].

Reads the results store only, like the rest of report/.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.leaderboard import LeaderboardRow, TaskBoard
from harness.report.significance import format_p
from harness.store import Store

# per-layer record field -> the name shown for its per-adapter median
DIAGNOSTICS: dict[str, str] = {
    "ww_alpha": "weightwatcher alpha",
    "stable_rank": "stable rank",
    "effective_rank": "effective rank",
    "relative_update": "relative update",
}
MIN_ADAPTERS = 4
FEW_ADAPTERS = 10
N_RESAMPLES = 2000
N_PERMUTATIONS = 9999  # exact (every ordering) while n! <= this: up to 7 adapters
FEW_NOTE = f"fewer than {FEW_ADAPTERS} adapters: the bootstrap interval understates the uncertainty; read the permutation p"


@dataclass(frozen=True)
class SpectralQuality:
    task: str
    base: str
    metric: str
    diagnostic: str
    n: int  # adapters with both a score and this diagnostic
    rho: float | None
    low: float | None
    high: float | None
    p_value: float | None
    note: str = ""


def adapter_summary(records: Sequence[Mapping[str, object]]) -> dict[str, float]:
    """The median of each diagnostic over an adapter's primary low-rank layers (finite values only)."""
    layers = [r for r in records if r.get("record") == "layer" and r.get("primary", True)]
    summary: dict[str, float] = {}
    for field in DIAGNOSTICS:
        values = [float(v) for r in layers if isinstance(v := r.get(field), (int, float)) and math.isfinite(v)]
        if values:
            summary[field] = statistics.median(values)
    return summary


def spearman_with_interval(x: Sequence[float], y: Sequence[float], seed: int = 0) -> tuple[float | None, float | None, float | None, float | None]:
    """rho, its 95% percentile-bootstrap interval over resampled pairs, and scipy's p-value."""
    import numpy as np
    from scipy.stats import rankdata, spearmanr

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) < MIN_ADAPTERS or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None, None, None, None
    rho = float(spearmanr(xs, ys).statistic)
    index = np.random.default_rng(seed).integers(0, len(xs), (N_RESAMPLES, len(xs)))
    # Spearman's rho is Pearson's r of the ranks, so all resamples are ranked and correlated at once
    rx, ry = rankdata(xs[index], axis=1), rankdata(ys[index], axis=1)
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    norm = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    defined = norm > 0  # a resample of one repeated point has no rho
    draws = (rx * ry).sum(axis=1)[defined] / norm[defined]
    low, high = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if draws.size else (None, None)
    return rho, low, high, permutation_p(xs, ys, seed)


def permutation_p(x: Any, y: Any, seed: int = 0) -> float:
    """Two-sided p of Spearman's rho under random pairings of x with y (exact while n! <= N_PERMUTATIONS)."""
    import numpy as np
    from scipy.stats import permutation_test, rankdata

    ranked_y = rankdata(y)
    centred_y = ranked_y - ranked_y.mean()

    def rho(sample: Any, axis: int = -1) -> Any:
        ranks = rankdata(sample, axis=axis)
        centred = ranks - ranks.mean(axis=axis, keepdims=True)
        return (centred * centred_y).sum(axis=axis) / np.sqrt((centred**2).sum(axis=axis) * (centred_y**2).sum())

    result = permutation_test((np.asarray(x),), rho, permutation_type="pairings", vectorized=True,
                              n_resamples=N_PERMUTATIONS, alternative="two-sided", rng=np.random.default_rng(seed))  # fmt: skip
    return float(result.pvalue)


def task_correlations(store: Store, board: TaskBoard, seed: int = 0) -> list[SpectralQuality]:
    """One row per (base, diagnostic) of this task's adapters."""
    metric = board.headline
    if metric is None:
        return []
    out: list[SpectralQuality] = []
    for base in sorted({row.base for row in board.rows}):
        points = _points(store, [r for r in board.rows if r.base == base], metric)
        for field, title in DIAGNOSTICS.items():
            pairs = [(summary[field], score) for summary, score in points if field in summary]
            rho, low, high, p = spearman_with_interval([a for a, _ in pairs], [b for _, b in pairs], seed)
            note = f"needs at least {MIN_ADAPTERS} adapters with differing values" if rho is None else FEW_NOTE if len(pairs) < FEW_ADAPTERS else ""
            out.append(SpectralQuality(board.task, base, metric, title, len(pairs), rho, low, high, p, note))
    return out


def _points(store: Store, rows: Sequence[LeaderboardRow], metric: str) -> list[tuple[dict[str, float], float]]:
    points = []
    for row in rows:
        score = row.value(metric)
        if row.is_base or row.adapter_hash is None or score is None or row.status != "done":
            continue
        summary = adapter_summary(store.spectra(row.adapter_hash))
        if summary:
            points.append((summary, score))
    return points


def to_markdown(rows: Sequence[SpectralQuality]) -> str:
    lines = [
        "| task | base | metric | diagnostic | adapters | Spearman rho [95% CI] | p |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rho = "n/a" if r.rho is None else f"{r.rho:+.2f} [{_num(r.low)}, {_num(r.high)}]" + (" ⚠" if r.note else "")
        lines.append(f"| {r.task} | {r.base} | {r.metric} | {r.diagnostic} | {r.n} | {rho} | {'n/a' if r.p_value is None else format_p(r.p_value)} |")
    if any(r.rho is not None and r.note for r in rows):
        lines.append(f"\n⚠ {FEW_NOTE}; the p-values are a permutation test's.")
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"
