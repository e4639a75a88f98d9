"""What a diagnosis becomes: flat records for the store and a rich table for `harness diagnose`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from harness.diagnostics.spectral import AdapterDiagnostics, LayerDiagnostics, PromptDiagnostics, ScalingDiagnostics
from harness.diagnostics.weightwatcher import WW_FIELDS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def to_records(diag: AdapterDiagnostics) -> list[dict[str, Any]]:
    """Flat rows (scalars only; singular values as a JSON list) for the results store."""
    base = {"adapter": str(diag.path), "method": diag.method}
    records: list[dict[str, Any]] = [{**base, "record": "layer", **_layer_record(row)} for row in diag.layers]
    records += [{**base, "record": "scaling", **_scaling_record(row)} for row in diag.scalings]
    if diag.prompt is not None:
        records += [{**base, "record": "prompt_token", **rec} for rec in _prompt_records(diag.prompt)]
    records += [{**base, "record": "note", "note": note} for note in diag.notes]
    summary = diag.summary
    records.append(
        {
            **base,
            "record": "summary",
            "layers": summary.layers,
            "median_stable_rank": summary.median_stable_rank,
            "max_relative_update": summary.max_relative_update,
            "total_intruders": summary.total_intruders,
            "seconds": summary.seconds,
        }
    )
    return records


def _layer_record(row: LayerDiagnostics) -> dict[str, Any]:
    record: dict[str, Any] = {
        "layer": row.name,
        "module": row.module,
        "rows": row.shape[0],
        "cols": row.shape[1],
        "rank": row.rank,
        "scale": row.scale,
        "delta": row.delta,
        "kind": row.kind,
        "primary": row.primary,
        "singular_values": json.dumps(list(row.singular_values)),
        "spectral_norm": row.spectral_norm,
        "frobenius_norm": row.frobenius_norm,
        "stable_rank": row.stable_rank,
        "effective_rank": row.effective_rank,
        "relative_update": row.relative_update,
        "intruders": row.intruders,
    }
    if row.weightwatcher is not None:
        record["ww_target"] = row.weightwatcher.target
        record.update({f"ww_{name}": getattr(row.weightwatcher, name) for name in WW_FIELDS})
    return record


def _scaling_record(row: ScalingDiagnostics) -> dict[str, Any]:
    return {
        "layer": row.name,
        "module": row.name.rsplit(".", 1)[-1],
        "axis": row.axis,
        "size": row.size,
        "mean": row.mean,
        "std": row.std,
        "min": row.min,
        "max": row.max,
        "distance_from_identity": row.distance_from_identity,
        "relative_update": row.relative_update,
    }


def _prompt_records(prompt: PromptDiagnostics) -> list[dict[str, Any]]:
    records = []
    for index, norm in enumerate(prompt.token_norms):
        nearest = prompt.nearest[index] if prompt.nearest else ()
        records.append(
            {
                "virtual_token": index,
                "norm": norm,
                "vocab_mean_norm": prompt.vocab_mean_norm,
                "nearest_tokens": json.dumps([{"id": t.token_id, "cosine": t.cosine, "text": t.text} for t in nearest]),
            }
        )
    return records


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def format_table(diag: AdapterDiagnostics) -> Table:
    """A rich Table for `harness diagnose`: one row per layer (or vector, or virtual token)."""
    from rich.table import Table

    summary = diag.summary
    caption = (
        f"median stable rank {_fmt(summary.median_stable_rank)} · max relative update "
        f"{_fmt(summary.max_relative_update)} · intruders {_fmt(summary.total_intruders)} · "
        f"{summary.seconds:.3f} s"
    )
    if diag.layers:
        caption += (
            "\nsrank = stable rank Σσ²/σ₁², erank = entropy effective rank, rel = ‖ΔW‖F/‖W₀‖F, "
            "intr = intruder dimensions"
        )
    if diag.notes:
        caption += "\n" + "\n".join(f"note: {note}" for note in diag.notes)
    table = Table(title=f"{diag.path} ({diag.method})", caption=caption)
    if diag.layers:
        _layer_table(table, diag.layers)
    elif diag.scalings:
        _scaling_table(table, diag.scalings)
    elif diag.prompt is not None:
        _prompt_table(table, diag.prompt)
    return table


def _layer_table(table: Table, rows: Sequence[LayerDiagnostics]) -> None:
    # Columns that would be all "–" (no base weights, no weightwatcher) are left out, and the
    # headers are short, so the table fits an 80-column terminal; the caption explains them.
    columns: list[tuple[str, Callable[[LayerDiagnostics], str]]] = [
        ("layer", lambda row: row.name),
        ("delta", lambda row: f"{row.delta}/{'exact' if row.kind == 'lowrank-exact' else 'dense'}"),
        ("shape r", lambda row: f"{row.shape[0]}×{row.shape[1]} {row.rank}"),
        ("scale", lambda row: _fmt(row.scale)),
        ("σ₁", lambda row: _fmt(row.spectral_norm)),
        ("‖ΔW‖F", lambda row: _fmt(row.frobenius_norm)),
        ("srank", lambda row: _fmt(row.stable_rank)),
        ("erank", lambda row: _fmt(row.effective_rank)),
    ]
    if any(row.relative_update is not None for row in rows):
        columns.append(("rel", lambda row: _fmt(row.relative_update)))
    if any(row.intruders is not None for row in rows):
        columns.append(("intr", lambda row: _fmt(row.intruders)))
    if any(row.weightwatcher is not None for row in rows):
        columns.append(("ww α", lambda row: _fmt(row.weightwatcher.alpha) if row.weightwatcher else "–"))
    for header, _ in columns:
        left = header in ("layer", "delta")
        table.add_column(header, justify="left" if left else "right", overflow="fold" if header == "layer" else "ellipsis")
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))


def _scaling_table(table: Table, rows: Sequence[ScalingDiagnostics]) -> None:
    table.add_column("vector", overflow="fold", min_width=12)
    table.add_column("axis")
    for column in ("size", "mean", "std", "min", "max", "‖l−1‖", "rel. update"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row.name,
            row.axis,
            str(row.size),
            _fmt(row.mean),
            _fmt(row.std),
            _fmt(row.min),
            _fmt(row.max),
            _fmt(row.distance_from_identity),
            _fmt(row.relative_update),
        )


def _prompt_table(table: Table, prompt: PromptDiagnostics) -> None:
    from rich.markup import escape

    for column in ("virtual token", "norm", "vocab mean norm", "nearest tokens (cosine)"):
        table.add_column(column, justify="left" if column.startswith("nearest") else "right")
    for index, norm in enumerate(prompt.token_norms):
        nearest = prompt.nearest[index] if prompt.nearest else ()
        # Token texts come from a model's vocabulary: escaped, so rich prints them literally.
        words = ", ".join(f"{escape(t.text) if t.text is not None else t.token_id!s} ({t.cosine:.2f})" for t in nearest)
        table.add_row(str(index), _fmt(norm), _fmt(prompt.vocab_mean_norm), words or "–")


def print_diagnostics(diag: AdapterDiagnostics, console: Console | None = None) -> None:
    if console is None:
        from rich.console import Console

        console = Console()
    console.print(format_table(diag))
