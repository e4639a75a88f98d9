"""Batched multi-LoRA: many LoRA-family adapters in one batch for the cost of one.

PEFT runs a mixed batch (`adapter_names=[...]`) as a loop over adapters inside every LoRA layer:
index the rows of each adapter, two small GEMMs, scatter back (PEFT issue #804). For decoding, where
each step is one token per row, that loop is mostly overhead. Here every LoRA-wrapped Linear instead
computes, for the rows of one batch,

    base(x) + ((x @ A_cat.T) * row_scale) @ B_cat.T            ("concat": 2 GEMMs whatever K)

with A_cat = the present adapters' A stacked [Σr, d_in], B_cat = their B side by side [d_out, Σr], and
row_scale [rows, Σr] = the adapter's PEFT `scaling` on its own columns and 0 elsewhere (a base row is
all zeros). For a prefill (many tokens per row) the wasted columns cost real FLOPs, so there each
adapter runs on its own rows ("segments", contiguous slices when the rows are sorted by adapter):
bench/multi_lora_step.py measures both and `SEGMENT_MIN_TOKENS` picks per call.

Everything comes from the loaded PEFT modules themselves — their lora_A/lora_B weights and per-module
`scaling` (so rank_pattern/alpha_pattern and rsLoRA's alpha/sqrt(r) are whatever PEFT computed), and
the base layer's own forward (so a QLoRA 4-bit base runs through bitsandbytes as under PEFT). Dropout
is the identity at eval. Only plain LoRA on Linear layers qualifies (`unsupported_reason`): DoRA and
other variants, LoRA biases, LoRA on embeddings/convolutions, and adapters with modules_to_save or
trainable tokens keep PEFT's path. On CUDA the same tensors and ops run on the GPU; no installed
dependency ships a punica/S-LoRA segmented-gather kernel, so the GEMMs are torch's (cuBLAS).

The batch state is installed by swapping each LoRA layer's `forward` inside `LoraBatch.active()` and
restoring it after, so the PEFT path (and every other user of the model) is untouched outside it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# Calls with at least this many tokens per row (a prefill) run per-adapter segments; decode steps
# (1 token per row) run the concatenated form. Chosen from bench/multi_lora_step.py on CPU.
SEGMENT_MIN_TOKENS = 2


def lora_layers(model: Any) -> list[Any]:
    """Every PEFT LoRA layer inside `model` (a PeftModel or its base model)."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def unsupported_reason(peft_model: Any, layers: Sequence[Any], names: Sequence[str]) -> str | None:
    """Why adapters `names` cannot run batched on this PeftModel, or None when they can."""
    for name in names:
        config = peft_model.peft_config[name]
        if getattr(config, "modules_to_save", None) or getattr(config, "trainable_token_indices", None):
            return f"adapter '{name}' trains whole modules or tokens besides its LoRA factors"
    for layer in layers:
        for name in names:
            if name not in layer.lora_A:
                if name in getattr(layer, "lora_embedding_A", {}):
                    return f"adapter '{name}' puts LoRA on an embedding"
                continue
            problem = _layer_problem(layer, name)
            if problem:
                return f"adapter '{name}': {problem}"
    return None


def _layer_problem(layer: Any, name: str) -> str | None:
    if name in layer.lora_variant:
        return f"uses the '{type(layer.lora_variant[name]).__name__}' LoRA variant"
    if not isinstance(layer.lora_A[name], torch.nn.Linear) or not isinstance(layer.lora_B[name], torch.nn.Linear):
        return f"has a non-Linear LoRA layer ({type(layer).__name__})"
    if layer.lora_B[name].bias is not None:
        return "trains a LoRA bias"
    if layer.merged or layer.disable_adapters:
        return "is merged into the base weights"
    return None


@dataclass
class _Segment:
    name: str
    rows: slice | torch.Tensor  # the rows of one adapter: a slice when they are contiguous
    a: torch.Tensor  # [r, d_in]
    b: torch.Tensor  # [d_out, r]
    scale: float


@dataclass
class _LayerPlan:
    """One LoRA layer's factors for the adapters present in the batch."""

    a_cat: torch.Tensor  # [Σr, d_in]
    b_cat: torch.Tensor  # [d_out, Σr]
    row_scale: torch.Tensor  # [rows, Σr]
    segments: list[_Segment]


class LoraBatch:
    """The batched LoRA state for one batch: which adapter each row uses (None = the base)."""

    def __init__(self, layers: Sequence[Any], rows: Sequence[str | None]) -> None:
        self.layers = list(layers)
        self.rows = list(rows)
        self.plans = _plans(self.layers, self.rows)

    def select(self, keep: Sequence[int]) -> LoraBatch:
        """The state for a subset of the rows (finished rows leave the batch during decoding). While
        every adapter still has a row, the stacked factors stay and only the row tables are indexed."""
        rows = [self.rows[i] for i in keep]
        if {r for r in rows if r is not None} != {r for r in self.rows if r is not None}:
            return LoraBatch(self.layers, rows)  # an adapter left: drop its columns
        chosen = LoraBatch.__new__(LoraBatch)
        chosen.layers, chosen.rows = self.layers, rows
        chosen.plans = _reindexed(self.plans, rows, keep)
        return chosen

    @contextmanager
    def active(self) -> Iterator[None]:
        """Swap each LoRA layer's forward for the batched one while the batch runs."""
        swapped = []
        try:
            for layer, plan in zip(self.layers, self.plans):
                layer.forward = _batched_forward(layer, plan)
                swapped.append(layer)
            yield
        finally:
            for layer in swapped:
                del layer.forward  # the instance attribute goes; the class's forward is back


def _reindexed(plans: Sequence[_LayerPlan | None], rows: Sequence[str | None], keep: Sequence[int]) -> list[_LayerPlan | None]:
    index = torch.tensor(list(keep))
    tables: dict[int, torch.Tensor] = {}  # layers that shared a table share its selection
    where = {name: _rows_of(rows, name) for name in {r for r in rows if r is not None}}
    out: list[_LayerPlan | None] = []
    for plan in plans:
        if plan is None:
            out.append(None)
            continue
        key = id(plan.row_scale)
        if key not in tables:
            tables[key] = plan.row_scale[index.to(plan.row_scale.device)]
        segments = [_Segment(seg.name, where[seg.name], seg.a, seg.b, seg.scale) for seg in plan.segments]
        out.append(_LayerPlan(plan.a_cat, plan.b_cat, tables[key], segments))
    return out


def _plans(layers: Sequence[Any], rows: Sequence[str | None]) -> list[_LayerPlan | None]:
    present = sorted({r for r in rows if r is not None})
    where = {name: _rows_of(rows, name) for name in present}
    owner = torch.tensor([present.index(r) if r is not None else -1 for r in rows])
    tables: dict[tuple[Any, ...], torch.Tensor] = {}  # most layers share one layout: build its table once
    plans: list[_LayerPlan | None] = []
    for layer in layers:
        names = [n for n in present if n in layer.lora_A]
        if not names:
            plans.append(None)
            continue
        ranks = [layer.lora_A[n].weight.shape[0] for n in names]
        scales = [float(layer.scaling[n]) for n in names]
        segments = [_Segment(n, where[n], layer.lora_A[n].weight, layer.lora_B[n].weight, s)
                    for n, s in zip(names, scales)]
        a = segments[0].a  # a model split over devices keeps each layer's table on its layer's device
        key = (tuple(names), tuple(ranks), tuple(scales), str(a.device), a.dtype)
        if key not in tables:
            table = _row_scale(owner, [present.index(n) for n in names], ranks, scales)
            tables[key] = table.to(device=a.device, dtype=a.dtype)
        plans.append(_LayerPlan(torch.cat([s.a for s in segments]), torch.cat([s.b for s in segments], dim=1),
                                tables[key], segments))
    return plans


def _row_scale(owner: torch.Tensor, positions: list[int], ranks: list[int], scales: list[float]) -> torch.Tensor:
    """[rows, Σr]: a row's adapter scale on its adapter's columns, zero on every other column."""
    column_owner = torch.tensor([p for p, r in zip(positions, ranks) for _ in range(r)], device=owner.device)
    column_scale = torch.tensor([s for s, r in zip(scales, ranks) for _ in range(r)], device=owner.device,
                                dtype=torch.float64)
    return (owner[:, None] == column_owner[None, :]) * column_scale[None, :]


def _rows_of(rows: Sequence[str | None], name: str) -> slice | torch.Tensor:
    index = [i for i, r in enumerate(rows) if r == name]
    if index == list(range(index[0], index[-1] + 1)):
        return slice(index[0], index[-1] + 1)
    return torch.tensor(index)


def _batched_forward(layer: Any, plan: _LayerPlan | None) -> Any:
    base = layer.base_layer

    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = base(x, *args, **kwargs)
        if plan is None:
            return result
        tokens = x.shape[1] if x.dim() > 2 else 1
        if tokens >= SEGMENT_MIN_TOKENS:
            return _add_segments(x, result, plan)
        return result.add_(_concat_delta(x, plan).to(result.dtype))

    return forward


def _concat_delta(x: torch.Tensor, plan: _LayerPlan) -> torch.Tensor:
    scale = plan.row_scale.view(plan.row_scale.shape[0], *([1] * (x.dim() - 2)), plan.row_scale.shape[1])
    return F.linear(F.linear(x.to(plan.a_cat.dtype), plan.a_cat) * scale, plan.b_cat)


def _add_segments(x: torch.Tensor, result: torch.Tensor, plan: _LayerPlan) -> torch.Tensor:
    """PEFT's own arithmetic, per adapter on its rows, added in place into the base output."""
    for seg in plan.segments:
        rows = seg.rows if isinstance(seg.rows, slice) else seg.rows.to(x.device)
        result[rows] += (F.linear(F.linear(x[rows].to(seg.a.dtype), seg.a), seg.b) * seg.scale).to(result.dtype)
    return result
