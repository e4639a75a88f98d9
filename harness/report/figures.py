"""Plotly figures of the leaderboard: rank curves, Pareto fronts, spectra, training curves.

Each function returns a figure, or None when the data has nothing to draw (a task with no LoRA
sweep has no rank curve). plotly renders trace names, tick labels and hover text as a small HTML
dialect (it honours <a href>, <b>, <br>), so every string that came from a model, a dataset or a
folder name goes through `esc` first; plotly turns the entities back into plain characters.

plotly is imported inside the functions: the CLI imports the report package at start-up.
"""

from __future__ import annotations

import html
import json
import math
import os
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
# Keys are the labels of harness.report.rows.method_label (QLoRA, DoRA and rsLoRA are methods of their own).
METHOD_COLOURS: dict[str, str] = {
    "base": "#7f7f7f",
    "LoRA": "#1f77b4",
    "DoRA": "#ff7f0e",
    "QLoRA": "#2ca02c",
    "IA3": "#d62728",
    "prompt tuning": "#9467bd",
    "LoHa": "#8c564b",
    "LoKr": "#e377c2",
    "AdaLoRA": "#bcbd22",
    "rsLoRA": "#17becf",
    "VeRA": "#aec7e8",
}
SPARE_COLOURS = ("#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896")
# Training curves colour adapters, not methods: a qualitative palette with distinct neighbours.
CURVE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
GRID = "#e8ebf0"
FONT = dict(family="system-ui, -apple-system, Segoe UI, sans-serif", size=12)


def esc(text: object) -> str:
    """A string safe for plotly's text rendering."""
    return html.escape(str(text), quote=True)


def short_labels(labels: Sequence[str]) -> dict[str, str]:
    """Labels without the folder prefix they all share ('zoo/sst2/lora_r1', 'zoo/sst2/lora_r8' -> 'lora_r1', 'lora_r8'),
    so legends and ticks stay short; a single label keeps only its last part."""
    unique = list(dict.fromkeys(labels))
    if len(unique) == 1:
        return {unique[0]: unique[0].rstrip("/").rsplit("/", 1)[-1] or unique[0]}
    prefix = os.path.commonprefix(unique)
    cut = prefix.rfind("/") + 1
    return {label: label[cut:] or label for label in unique}


def method_of(row: LeaderboardRow) -> str:
    return row.method_name


def colour(method: str) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    return SPARE_COLOURS[sum(map(ord, method)) % len(SPARE_COLOURS)]


def _legend_rows(fig: go.Figure) -> int:
    """Rows a horizontal legend below the plot needs (two entries a row: names are often long)."""
    entries = [t for t in fig.data if t.showlegend is not False and t.type not in ("heatmap",)]
    return 0 if len(entries) < 2 else math.ceil(len(entries) / 2)


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    rows = _legend_rows(fig)
    fig.update_layout(
        title=dict(text=esc(title), x=0.01, font=dict(size=14)),
        xaxis_title=esc(x_title),
        yaxis_title=esc(y_title),
        height=height + 20 * rows,
        margin=dict(l=60, r=20, t=45, b=60 + 20 * rows),
        font=FONT,
        # "plotly_white" is deep-copied into every figure (0.2 s each); these few settings look the same
        template="none",
        paper_bgcolor="white",
        plot_bgcolor="white",
        # at the bottom of the figure, in a margin sized for it: above the plot it covered the title
        # and, with many adapters, the curves; just below the axis it covered the axis title
        legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, xanchor="left", x=0),
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


def module_of(record: Mapping[str, Any]) -> str:
    """The module type of a layer record ('q_proj', 'query', ...): what layers are grouped by."""
    return str(record.get("module") or str(record.get("layer", "")).rsplit(".", 1)[-1])


def block_of(name: str) -> int | None:
    match = _LAYER_NUMBER.search(name)
    return int(match.group(1)) if match else None


def _ordered(spectra: Sequence[AdapterSpectrum], value: str) -> list[AdapterSpectrum]:
    return sorted((s for s in spectra if s.layers(value)), key=lambda s: (s.method or "", s.rank or 0, s.label))


def spectral_heatmap(spectra: Sequence[AdapterSpectrum], value: str) -> go.Figure | None:
    """One panel per module type (q_proj, v_proj, ...): adapters as rows, transformer blocks as columns.

    Grouping by module keeps each panel a few rows by a few dozen blocks, so the ticks stay readable
    (one row of 120 "block.module" columns did not).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ordered = _ordered(spectra, value)
    modules = sorted({module_of(r) for s in ordered for r in s.layers(value)})
    if not ordered or not modules:
        return None
    if len(ordered) == 1:
        return _module_heatmap(ordered[0], value, modules)
    blocks = sorted({b for s in ordered for r in s.layers(value) if (b := block_of(str(r["layer"]))) is not None})
    panel = 40 + 22 * len(ordered)  # pixels per module panel
    gap = 45  # pixels between panels, room for the next panel's title
    height = max(260, 140 + len(modules) * panel + (len(modules) - 1) * gap)
    fig = make_subplots(rows=len(modules), cols=1, shared_xaxes=True, vertical_spacing=gap / (height - 135),
                        subplot_titles=[esc(m) for m in modules])  # fmt: skip
    short = short_labels([s.label for s in ordered])
    labels = [esc(short[s.label]) for s in ordered]
    for index, module in enumerate(modules, start=1):
        grid = []
        for spectrum in ordered:
            by_block = {block_of(str(r["layer"])): r.get(value) for r in spectrum.layers(value) if module_of(r) == module}
            grid.append([_float_or_none(by_block.get(block)) for block in blocks] if blocks else [_float_or_none(v) for v in by_block.values()])
        fig.add_trace(go.Heatmap(
            z=grid, x=blocks or None, y=labels, coloraxis="coloraxis",
            hovertemplate="%{y}<br>" + esc(module) + " block %{x}<br>" + esc(value) + " = %{z:.4g}<extra></extra>",
        ), row=index, col=1)  # fmt: skip
        fig.update_yaxes(type="category", automargin=True, row=index, col=1)
    fig.update_xaxes(dtick=max(1, len(blocks) // 12) if blocks else None, title_text="transformer block", row=len(modules), col=1)
    fig.update_layout(coloraxis=dict(colorscale="Viridis", colorbar=dict(title=esc(value.replace("_", " ")))))
    return _layout(fig, f"{value.replace('_', ' ')} per layer, by module", "", "", height)


def _module_heatmap(spectrum: AdapterSpectrum, value: str, modules: Sequence[str]) -> go.Figure:
    """One adapter: module types as rows, transformer blocks as columns."""
    import plotly.graph_objects as go

    layers = spectrum.layers(value)
    blocks = sorted({b for r in layers if (b := block_of(str(r["layer"]))) is not None})
    cells = {(module_of(r), block_of(str(r["layer"]))): r.get(value) for r in layers}
    grid = [[_float_or_none(cells.get((module, block))) for block in blocks] for module in modules]
    fig = go.Figure(go.Heatmap(
        z=grid, x=blocks, y=[esc(m) for m in modules], colorscale="Viridis",
        colorbar=dict(title=esc(value.replace("_", " "))),
        hovertemplate="%{y} block %{x}<br>" + esc(value) + " = %{z:.4g}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(type="category")
    fig.update_xaxes(dtick=max(1, len(blocks) // 12) if blocks else None)
    height = max(260, 150 + 30 * len(modules))
    return _layout(fig, f"{spectrum.label}: {value.replace('_', ' ')} per layer", "transformer block", "module", height)


def _singular_values(record: Mapping[str, Any]) -> list[float]:
    raw = record.get("singular_values")
    try:
        values = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return []
    return [float(v) for v in values] if isinstance(values, list) else []


def singular_value_decay(spectra: Sequence[AdapterSpectrum]) -> go.Figure | None:
    """Per adapter: σ_i / σ_1 against i, the median over its layers (log scale); a fast fall = unused rank."""
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    ordered = _ordered(spectra, "stable_rank")
    short = short_labels([s.label for s in ordered])
    for index, spectrum in enumerate(ordered):
        curves = [sv for r in spectrum.layers("stable_rank") if (sv := _singular_values(r)) and sv[0] > 0]
        if not curves:
            continue
        length = max(len(c) for c in curves)
        padded = np.full((len(curves), length), np.nan)
        for row, curve in enumerate(curves):
            padded[row, : len(curve)] = np.asarray(curve) / curve[0]
        median = np.nanmedian(padded, axis=0)
        fig.add_trace(go.Scatter(
            x=list(range(1, length + 1)), y=median.tolist(), mode="lines+markers", name=esc(short[spectrum.label]),
            line=dict(color=CURVE_COLOURS[index % len(CURVE_COLOURS)]),
            hovertemplate=esc(spectrum.label) + "<br>σ%{x}/σ1 = %{y:.3g} (median over layers)<extra></extra>",
        ))  # fmt: skip
    if not fig.data:
        return None
    fig.update_yaxes(type="log", dtick=1, exponentformat="power")  # ticks at decades only
    return _layout(fig, "singular-value decay (median over layers)", "singular value index i", "σ_i / σ_1")


def effective_rank_plot(spectra: Sequence[AdapterSpectrum]) -> go.Figure | None:
    """Per adapter: the effective rank of each layer (a box over layers) against its nominal rank r."""
    import plotly.graph_objects as go

    fig = go.Figure()
    nominal_x, nominal_y = [], []
    ordered = _ordered(spectra, "effective_rank")
    short = short_labels([s.label for s in ordered])
    for spectrum in ordered:
        values = [float(r["effective_rank"]) for r in spectrum.layers("effective_rank")]
        label = esc(short[spectrum.label])
        fig.add_trace(go.Box(y=values, name=label, boxpoints="all", jitter=0.4, pointpos=0, marker=dict(size=4),
                             line=dict(color=colour(spectrum.method or "unknown")), showlegend=False))  # fmt: skip
        if spectrum.rank:
            nominal_x.append(label)
            nominal_y.append(spectrum.rank)
    if not fig.data:
        return None
    if nominal_x:
        fig.add_trace(go.Scatter(x=nominal_x, y=nominal_y, mode="markers", name="nominal rank r",
                                 marker=dict(symbol="line-ew-open", size=28, color="#d62728", line=dict(width=2))))  # fmt: skip
    fig.update_xaxes(type="category")
    return _layout(fig, "effective rank per layer vs nominal rank", "adapter", "effective rank (exp. of spectral entropy)")


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
    short = short_labels([s.label for s, _ in counted])
    fig = go.Figure(
        go.Bar(
            x=[esc(short[s.label]) for s, _ in counted],
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
    short = short_labels(adapters)
    several = len(adapters) > 1
    shown: set[str] = set()
    for curve in curves:
        index = adapters.index(curve.adapter)
        fig.add_trace(
            go.Scatter(
                x=list(curve.steps),
                y=list(curve.losses),
                mode="lines+markers" if curve.split != "train" else "lines",
                # several adapters: one legend entry each (line style tells train from dev)
                name=esc(short[curve.adapter] if several else curve.split),
                legendgroup=esc(curve.adapter),
                showlegend=not several or curve.adapter not in shown,
                hovertemplate=esc(f"{short[curve.adapter]} {curve.split}") + "<br>step %{x}: loss %{y:.3f}<extra></extra>",
                line=dict(color=CURVE_COLOURS[index % len(CURVE_COLOURS)] if several else None,
                          dash="dot" if curve.split != "train" else "solid"),
            )
        )
        shown.add(curve.adapter)
    return _layout(fig, f"{title} (solid: train, dotted: dev)" if several else title, "step", "loss")


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
