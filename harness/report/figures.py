"""Plotly figures of the leaderboard: rank curves, Pareto fronts, spectra, training curves.

Each function returns a figure, or None when the data has nothing to draw (a task with no LoRA
sweep has no rank curve). plotly renders trace names, tick labels and hover text as a small HTML
dialect (it honours <a href>, <b>, <br>), so every string that came from a model, a dataset or a
folder name goes through `esc` first; plotly turns the entities back into plain characters.

plotly is imported inside the functions: the CLI imports the report package at start-up.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.report.leaderboard import LeaderboardRow, TaskBoard

if TYPE_CHECKING:
    import plotly.graph_objects as go

PLOTLY_JS = "plotly.min.js"
# One colour per PEFT method, stable across pages; unknown methods cycle through the rest.
METHOD_COLOURS: dict[str, str] = {
    "base": "#7f7f7f",
    "LORA": "#1f77b4",
    "DORA": "#ff7f0e",
    "QLORA": "#2ca02c",
    "IA3": "#d62728",
    "PROMPT_TUNING": "#9467bd",
    "LOHA": "#8c564b",
    "LOKR": "#e377c2",
    "ADALORA": "#bcbd22",
}
SPARE_COLOURS = ("#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896")
# Training curves colour adapters, not methods: a qualitative palette with distinct neighbours.
CURVE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GRID = "#e8ebf0"
FONT = dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12)


def esc(text: object) -> str:
    """A string safe for plotly's text rendering."""
    return html.escape(str(text), quote=True)


def method_of(row: LeaderboardRow) -> str:
    return "base" if row.is_base else (row.method or "unknown")


def colour(method: str) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return SPARE_COLOURS[sum(map(ord, method)) % len(SPARE_COLOURS)]


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title=dict(text=esc(title), x=0.01, font=dict(size=14)),
        xaxis_title=esc(x_title),
        yaxis_title=esc(y_title),
        height=height,
        margin=dict(l=60, r=20, t=45, b=50),
        font=FONT,
        # "plotly_white" is deep-copied into every figure (0.2 s each); these few settings look the same
        template="none",
        paper_bgcolor="white",
        plot_bgcolor="white",
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    )
    fig.update_xaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor="#bbb", automargin=True)
    fig.update_yaxes(gridcolor=GRID, zerolinecolor=GRID, linecolor="#bbb", automargin=True)
    return fig


def _scored(board: TaskBoard, metric: str) -> list[LeaderboardRow]:
    return [row for row in board.rows if row.status == "done" and metric in row.metrics and row.metrics[metric].value is not None]


def _hover(row: LeaderboardRow, metric: str) -> str:
    value = row.metrics[metric]
    return (
        f"{esc(row.adapter)}<br>{esc(method_of(row))}"
        + (f" r={row.rank}" if row.rank else "")
        + f"<br>{esc(metric)} = {value.value:.3f} [{value.low:.3f}, {value.high:.3f}]"
    )


# ---------------------------------------------------------------------------- rank curve


def rank_curve(board: TaskBoard, metric: str | None = None) -> go.Figure | None:
    """Headline metric against LoRA rank, one line per (base, method), with the 95% band."""
    import plotly.graph_objects as go

    metric = metric or board.headline
    if metric is None:
        return None
    rows = _scored(board, metric)
    series: dict[tuple[str, str], list[LeaderboardRow]] = {}
    for row in rows:
        if row.rank and not row.is_base:
            series.setdefault((row.base, method_of(row)), []).append(row)
    series = {key: sorted(points, key=lambda r: r.rank or 0) for key, points in series.items() if len(points) >= 2}
    if not series:
        return None
    fig = go.Figure()
    many_bases = len({base for base, _ in series}) > 1
    for (base, method), points in series.items():
        name = f"{base} {method}" if many_bases else method
        _band(fig, points, metric, colour(method), esc(name))
    for row in rows:
        if row.is_base:
            fig.add_hline(
                y=row.metrics[metric].value,
                line=dict(color=colour("base"), dash="dash"),
                annotation_text=esc(f"base {row.base}" if many_bases else "base model"),
                annotation_position="bottom right",
            )
    fig.update_xaxes(type="log", tickvals=sorted({r.rank for p in series.values() for r in p}))
    return _layout(fig, f"{board.task}: {metric} vs LoRA rank (95% interval)", "LoRA rank r (log scale)", metric)


def _band(fig: go.Figure, points: Sequence[LeaderboardRow], metric: str, line_colour: str, name: str) -> None:
    import plotly.graph_objects as go

    ranks = [row.rank for row in points]
    values = [row.metrics[metric] for row in points]
    fig.add_trace(
        go.Scatter(
            x=ranks + ranks[::-1],
            y=[v.high for v in values] + [v.low for v in values][::-1],
            fill="toself",
            mode="lines",
            fillcolor=_transparent(line_colour),
            line=dict(width=0),
            hoverinfo="skip",
            showlegend=False,
            name=name + " interval",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ranks,
            y=[v.value for v in values],
            mode="lines+markers",
            name=name,
            line=dict(color=line_colour),
            text=[_hover(row, metric) for row in points],
            hovertemplate="%{text}<extra></extra>",
        )
    )


def _transparent(hex_colour: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


# ---------------------------------------------------------------------------- Pareto


@dataclass(frozen=True)
class ParetoAxis:
    column: str
    title: str
    log: bool


PARETO_AXES: dict[str, ParetoAxis] = {
    "trainable_params": ParetoAxis("trainable_params", "trainable parameters (log scale)", True),
    "latency_p50": ParetoAxis("latency_p50", "median latency per example, s", False),
}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points no other point beats on both axes (lower x, higher y), sorted by x."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto(board: TaskBoard, axis: str, metric: str | None = None) -> go.Figure | None:
    """Metric against a cost (trainable parameters or latency); methods as colours; the front as a step line."""
    import plotly.graph_objects as go

    spec = PARETO_AXES[axis]
    metric = metric or board.headline
    if metric is None:
        return None
    rows = [row for row in _scored(board, metric) if row.value(spec.column) is not None]
    if spec.log:
        rows = [row for row in rows if (row.value(spec.column) or 0) > 0]
    if len(rows) < 2:
        return None
    fig = go.Figure()
    by_method: dict[str, list[LeaderboardRow]] = {}
    for row in rows:
        by_method.setdefault(method_of(row), []).append(row)
    for method, points in sorted(by_method.items()):
        fig.add_trace(
            go.Scatter(
                x=[row.value(spec.column) for row in points],
                y=[row.metrics[metric].value for row in points],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[row.metrics[metric].high - row.metrics[metric].value for row in points],
                    arrayminus=[row.metrics[metric].value - row.metrics[metric].low for row in points],
                    thickness=1,
                ),
                mode="markers",
                marker=dict(size=10, color=colour(method)),
                name=esc(method),
                text=[_hover(row, metric) for row in points],
                hovertemplate="%{text}<br>" + esc(spec.column) + " = %{x}<extra></extra>",
            )
        )
    front = pareto_front([(row.value(spec.column) or 0.0, row.metrics[metric].value) for row in rows])
    if len(front) >= 2:
        fig.add_trace(
            go.Scatter(
                x=[x for x, _ in front],
                y=[y for _, y in front],
                mode="lines",
                line=dict(shape="hv", color="#444", dash="dot"),
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    for row in _scored(board, metric):
        if row.is_base and row.value(spec.column) is None:  # the base trains nothing: a reference line, not a point
            fig.add_hline(y=row.metrics[metric].value, line=dict(color=colour("base"), dash="dash"),
                          annotation_text=esc(f"base {row.base}"), annotation_position="bottom right")
    if spec.log:
        fig.update_xaxes(type="log")
    return _layout(fig, f"{board.task}: {metric} vs {spec.column.replace('_', ' ')}", spec.title, metric)


# ---------------------------------------------------------------------------- spectra


@dataclass(frozen=True)
class AdapterSpectrum:
    """The per-layer spectral records of one adapter, with what sorts it among others."""

    label: str
    method: str | None
    rank: int | None
    records: Sequence[Mapping[str, Any]]
    adapter_hash: str | None = None

    def layers(self, value: str = "stable_rank") -> list[Mapping[str, Any]]:
        """Per-layer rows that carry `value`: low-rank deltas (the primary one; DoRA stores two) and
        IA3 scaling vectors, which have a relative update but no singular values."""
        return [
            r for r in self.records
            if r.get("record", "layer") in ("layer", "scaling") and "layer" in r
            and r.get(value) is not None and r.get("primary", True)
        ]  # fmt: skip


_LAYER_NUMBER = re.compile(r"layers?\.(\d+)\.")


def short_layer(name: str) -> str:
    """'model.layers.3.self_attn.q_proj' -> '3.q_proj': the block number and the module."""
    match = _LAYER_NUMBER.search(name)
    module = name.rsplit(".", 1)[-1]
    return f"{match.group(1)}.{module}" if match else name


def _layer_sort_key(name: str) -> tuple[int, str]:
    match = _LAYER_NUMBER.search(name)
    return (int(match.group(1)) if match else -1, name)


def spectral_heatmap(spectra: Sequence[AdapterSpectrum], value: str) -> go.Figure | None:
    """One row per adapter (by method, then rank), one column per layer, coloured by `value`."""
    import plotly.graph_objects as go

    ordered = sorted((s for s in spectra if s.layers(value)), key=lambda s: (s.method or "", s.rank or 0, s.label))
    layer_names = sorted({str(r["layer"]) for s in ordered for r in s.layers(value)}, key=_layer_sort_key)
    if not ordered or not layer_names:
        return None
    grid = []
    for spectrum in ordered:
        by_layer = {str(r["layer"]): r.get(value) for r in spectrum.layers(value)}
        grid.append([_float_or_none(by_layer.get(name)) for name in layer_names])
    labels = [esc(f"{s.label}") for s in ordered]
    columns = [esc(short_layer(name)) for name in layer_names]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=columns,
            y=labels,
            colorscale="Viridis",
            colorbar=dict(title=esc(value.replace("_", " "))),
            hovertemplate="%{y}<br>layer %{x}<br>" + esc(value) + " = %{z:.4g}<extra></extra>",
        )
    )
    fig.update_yaxes(type="category")
    fig.update_xaxes(type="category", tickangle=-60)
    height = max(260, 80 + 28 * len(ordered))
    return _layout(fig, f"{value.replace('_', ' ')} per layer", "layer (block.module)", "adapter", height)


def intruder_bars(spectra: Sequence[AdapterSpectrum]) -> go.Figure | None:
    """Intruder dimensions per adapter, summed over layers (only adapters where they were counted)."""
    import plotly.graph_objects as go

    counted = []
    for spectrum in sorted(spectra, key=lambda s: (s.method or "", s.rank or 0, s.label)):
        values = [r["intruders"] for r in spectrum.layers("intruders")]
        if values:
            counted.append((spectrum, sum(int(v) for v in values)))
    if not counted:
        return None
    fig = go.Figure(
        go.Bar(
            x=[esc(s.label) for s, _ in counted],
            y=[total for _, total in counted],
            marker_color=[colour(s.method or "unknown") for s, _ in counted],
            hovertemplate="%{x}: %{y} intruder dimensions<extra></extra>",
        )
    )
    fig.update_xaxes(type="category")
    return _layout(fig, "intruder dimensions per adapter (summed over layers)", "adapter", "intruder dimensions")


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ---------------------------------------------------------------------------- training curves


@dataclass(frozen=True)
class LossCurve:
    adapter: str
    split: str  # "train" or "dev"
    steps: tuple[float, ...]
    losses: tuple[float, ...]


def training_curves(curves: Sequence[LossCurve], title: str = "training curves") -> go.Figure | None:
    import plotly.graph_objects as go

    curves = [curve for curve in curves if curve.steps]
    if not curves:
        return None
    fig = go.Figure()
    adapters = sorted({curve.adapter for curve in curves})
    for curve in curves:
        index = adapters.index(curve.adapter)
        fig.add_trace(
            go.Scatter(
                x=list(curve.steps),
                y=list(curve.losses),
                mode="lines+markers" if curve.split != "train" else "lines",
                name=esc(f"{curve.adapter} {curve.split}" if len(adapters) > 1 else curve.split),
                line=dict(color=CURVE_COLOURS[index % len(CURVE_COLOURS)] if len(adapters) > 1 else None,
                          dash="dot" if curve.split != "train" else "solid"),
            )
        )
    return _layout(fig, title, "step", "loss")


# ---------------------------------------------------------------------------- output


def to_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a <div> and a <script> that draws it with the page's shared plotly.js."""
    return fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


def write_plotly_js(folder: Path) -> Path:
    """plotly.js once for the whole report (inlined it is ~4.8 MB per page)."""
    from plotly.offline import get_plotlyjs

    path = folder / PLOTLY_JS
    path.parent.mkdir(parents=True, exist_ok=True)
    script = get_plotlyjs()
    if not path.exists() or path.stat().st_size != len(script.encode("utf-8")):
        path.write_text(script, encoding="utf-8")
    return path
