"""Spectral diagnostics of PEFT adapters, read straight from the adapter's safetensors: `diagnose`.

Low-rank rows come from the exact factor path (harness.diagnostics.lowrank); `kind` says which path
made a row: "lowrank-exact" or "dense". DoRA rescales each output row of W₀ + s·B·A to a learned
magnitude, so its full delta is not low rank: rows carry `delta="lora"` (the low-rank part, exact)
and, when base weights are given, `delta="dora_full"` (the whole change, by a dense SVD). Intruder
dimensions need the base weights (harness.diagnostics.intruders); weightwatcher is optional
(harness.diagnostics.weightwatcher).

IA3 gets scaling-vector statistics; prompt tuning gets virtual-token norms and the nearest
vocabulary tokens; other methods get a "not supported" note instead of a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from harness.diagnostics.adapter_weights import AdapterWeights, LOWRANK_METHODS, LowRankLayer, ScalingVector, read_adapter
from harness.diagnostics.intruders import BaseWeights, base_svd, base_weight, count_intruders, to_numpy
from harness.diagnostics.lowrank import batched_lowrank_spectra, dense_singular_values, spectrum_stats
from harness.diagnostics.weightwatcher import WeightWatcherMetrics, weightwatcher_metrics
from harness.errors import HarnessError


# Dense rows keep only their largest singular values; low-rank rows keep all r of them.
DENSE_TOP_SINGULAR_VALUES = 64
NEAREST_TOKENS = 3
Kind = Literal["lowrank-exact", "dense"]
DeltaPart = Literal["lora", "dora_full"]


@dataclass(frozen=True)
class LayerDiagnostics:
    name: str
    shape: tuple[int, int]
    rank: int  # r for low-rank rows; min(m, n) for dense rows
    scale: float
    delta: DeltaPart
    kind: Kind
    singular_values: tuple[float, ...]  # all r for low-rank rows, the top 64 for dense rows
    spectral_norm: float
    frobenius_norm: float
    stable_rank: float
    effective_rank: float
    relative_update: float | None  # ‖ΔW‖_F / ‖W₀‖_F; None without base weights
    intruders: int | None  # None when not computed (no base weights, or intruder_k = 0)
    primary: bool  # the row the summary uses: dora_full when present, else lora
    weightwatcher: WeightWatcherMetrics | None = None

    @property
    def module(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ScalingDiagnostics:
    name: str
    axis: Literal["output", "input"]
    size: int
    mean: float
    std: float
    min: float
    max: float
    distance_from_identity: float  # ‖l − 1‖₂: how far the vector is from "no change"
    relative_update: float | None  # ‖(l − 1) ⊙ W₀‖_F / ‖W₀‖_F


@dataclass(frozen=True)
class NearestToken:
    token_id: int
    cosine: float
    text: str | None


@dataclass(frozen=True)
class PromptDiagnostics:
    num_virtual_tokens: int
    dim: int
    token_norms: tuple[float, ...]
    vocab_mean_norm: float | None  # mean norm of the base's input embeddings, for scale
    nearest: tuple[tuple[NearestToken, ...], ...]  # per virtual token; empty without base weights


@dataclass(frozen=True)
class DiagnosticsSummary:
    layers: int
    median_stable_rank: float | None
    max_relative_update: float | None
    total_intruders: int | None
    seconds: float


@dataclass
class AdapterDiagnostics:
    path: Path
    method: str
    layers: list[LayerDiagnostics]
    scalings: list[ScalingDiagnostics]
    prompt: PromptDiagnostics | None
    notes: list[str]
    summary: DiagnosticsSummary


def diagnose(
    adapter_path: str | Path,
    base_weights: BaseWeights | None = None,
    intruder_k: int = 10,
    intruder_threshold: float = 0.5,
    weightwatcher: bool = False,
    base_svd_cache_dir: str | Path | None = None,
    token_text: Callable[[int], str] | None = None,
) -> AdapterDiagnostics:
    """Spectral diagnostics of one PEFT adapter folder.

    base_weights maps "<module>.weight" (the PEFT layer name without "base_model.model.") to the
    base weight, as a state dict or a function; without it, relative updates, intruders and the
    DoRA full delta are left out. intruder_threshold is the paper's ε: a top-`intruder_k` singular
    vector of W₀ + ΔW is an intruder when its best |cosine| with W₀'s singular vectors is below it.
    token_text turns a token id into text for the prompt-tuning nearest-token list.
    """
    started = time.perf_counter()
    weights = read_adapter(adapter_path)
    cache_dir = None if base_svd_cache_dir is None else Path(base_svd_cache_dir)
    layers = _lowrank_diagnostics(weights, base_weights, intruder_k, intruder_threshold, cache_dir)
    if weightwatcher and weights.lowrank:
        layers = _with_weightwatcher(layers, weights, base_weights)
    scalings = [_scaling_diagnostics(vector, base_weight(base_weights, vector.name)) for vector in weights.scalings]
    prompt = None
    if weights.prompt_embeddings is not None:
        prompt = _prompt_diagnostics(weights.prompt_embeddings, _embedding_matrix(base_weights), token_text)
    notes = list(weights.notes)
    if base_weights is None and weights.method in LOWRANK_METHODS | {"ia3"}:
        notes.append("no base weights: relative updates and intruder dimensions were not computed")
    if base_weights is None and weights.method == "dora":
        notes.append("DoRA rows are the low-rank LoRA part only; pass base weights for the full delta")
    summary = _summary(layers, scalings, time.perf_counter() - started)
    return AdapterDiagnostics(Path(adapter_path), weights.method, layers, scalings, prompt, notes, summary)


def _lowrank_diagnostics(
    weights: AdapterWeights,
    base: BaseWeights | None,
    intruder_k: int,
    threshold: float,
    cache_dir: Path | None,
) -> list[LayerDiagnostics]:
    rows: list[LayerDiagnostics] = []
    for layer, values in zip(weights.lowrank, batched_lowrank_spectra(weights.lowrank), strict=True):
        w0 = base_weight(base, layer.name)
        if w0 is not None and w0.shape != layer.shape:
            raise HarnessError(
                f"Base weight '{layer.name}.weight' is {w0.shape} but the adapter's delta is {layer.shape}; "
                "pass the base model this adapter was trained on."
            )
        full = _dora_full_delta(layer, w0) if layer.magnitude is not None and w0 is not None else None
        lora_row = _row(layer, values, w0, primary=full is None)
        if w0 is not None and intruder_k > 0 and full is None:
            lora_row = _with_intruders(lora_row, w0 + layer.dense(), w0, intruder_k, threshold, cache_dir)
        rows.append(lora_row)
        if full is not None:
            full_row = _dense_row(layer, dense_singular_values(full), w0)
            if intruder_k > 0:
                full_row = _with_intruders(full_row, w0 + full, w0, intruder_k, threshold, cache_dir)
            rows.append(full_row)
    return rows


def _row(layer: LowRankLayer, values: np.ndarray, w0: np.ndarray | None, primary: bool) -> LayerDiagnostics:
    """The LoRA part of a layer, from its exact low-rank spectrum."""
    stats = spectrum_stats(values)
    return LayerDiagnostics(
        name=layer.name,
        shape=layer.shape,
        rank=layer.rank,
        scale=layer.scale,
        delta="lora",
        kind="lowrank-exact",
        singular_values=tuple(float(v) for v in values),
        spectral_norm=stats.spectral_norm,
        frobenius_norm=stats.frobenius_norm,
        stable_rank=stats.stable_rank,
        effective_rank=stats.effective_rank,
        relative_update=_relative(stats.frobenius_norm, w0),
        intruders=None,
        primary=primary,
    )


def _dense_row(layer: LowRankLayer, values: np.ndarray, w0: np.ndarray) -> LayerDiagnostics:
    """DoRA's full delta, from a dense SVD (it is not low rank)."""
    stats = spectrum_stats(values)
    return LayerDiagnostics(
        name=layer.name,
        shape=layer.shape,
        rank=len(values),
        scale=layer.scale,
        delta="dora_full",
        kind="dense",
        singular_values=tuple(float(v) for v in values[:DENSE_TOP_SINGULAR_VALUES]),
        spectral_norm=stats.spectral_norm,
        frobenius_norm=stats.frobenius_norm,
        stable_rank=stats.stable_rank,
        effective_rank=stats.effective_rank,
        relative_update=_relative(stats.frobenius_norm, w0),
        intruders=None,
        primary=True,
    )


def _relative(delta_norm: float, w0: np.ndarray | None) -> float | None:
    if w0 is None:
        return None
    base_norm = float(np.linalg.norm(w0))
    return delta_norm / base_norm if base_norm > 0 else math.inf


def _dora_full_delta(layer: LowRankLayer, w0: np.ndarray) -> np.ndarray:
    """DoRA's merged weight is m ⊙ V / ‖V‖_row with V = W₀ + s·B·A (PEFT's per-output-row norm)."""
    combined = w0 + layer.dense()
    row_norms = np.linalg.norm(combined, axis=1, keepdims=True)
    magnitude = np.asarray(layer.magnitude, dtype=np.float64).reshape(-1, 1)
    return magnitude / row_norms * combined - w0


def _with_intruders(
    row: LayerDiagnostics, tuned: np.ndarray, w0: np.ndarray, k: int, threshold: float, cache_dir: Path | None
) -> LayerDiagnostics:
    return replace(row, intruders=count_intruders(tuned, base_svd(w0, cache_dir), k, threshold))


def _with_weightwatcher(
    rows: list[LayerDiagnostics], weights: AdapterWeights, base: BaseWeights | None
) -> list[LayerDiagnostics]:
    matrices: dict[str, np.ndarray] = {}
    for layer in weights.lowrank:
        w0 = base_weight(base, layer.name)
        delta = layer.dense()
        if layer.magnitude is not None and w0 is not None:
            delta = _dora_full_delta(layer, w0)
        matrices[layer.name] = delta if w0 is None else w0 + delta
    metrics = weightwatcher_metrics(matrices, "delta" if base is None else "merged")
    return [replace(row, weightwatcher=metrics.get(row.name)) if row.primary else row for row in rows]


def _scaling_diagnostics(vector: ScalingVector, w0: np.ndarray | None) -> ScalingDiagnostics:
    values = vector.values
    shift = values - 1.0
    relative = None
    if w0 is not None:
        delta = w0 * (shift[:, None] if vector.axis == "output" else shift[None, :])
        relative = _relative(float(np.linalg.norm(delta)), w0)
    return ScalingDiagnostics(
        name=vector.name,
        axis=vector.axis,
        size=int(values.size),
        mean=float(values.mean()),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        distance_from_identity=float(np.linalg.norm(shift)),
        relative_update=relative,
    )


_EMBEDDING_NAMES = (
    "model.embed_tokens.weight",
    "embed_tokens.weight",
    "transformer.wte.weight",
    "shared.weight",
    "model.decoder.embed_tokens.weight",
    "embeddings.word_embeddings.weight",
)


def _embedding_matrix(base: BaseWeights | None) -> np.ndarray | None:
    """The base's input embedding matrix (vocab × dim), found under the usual names."""
    if base is None:
        return None
    names = list(_EMBEDDING_NAMES)
    if isinstance(base, Mapping):
        names += [key for key in base if key.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight"))]
    for name in names:
        try:
            tensor = base[name] if isinstance(base, Mapping) else base(name)
        except KeyError:
            continue
        if tensor is not None:
            return to_numpy(tensor)
    return None


def _prompt_diagnostics(
    prompts: np.ndarray, vocab: np.ndarray | None, token_text: Callable[[int], str] | None
) -> PromptDiagnostics:
    norms = np.linalg.norm(prompts, axis=1)
    nearest: tuple[tuple[NearestToken, ...], ...] = ()
    vocab_mean_norm = None
    if vocab is not None and vocab.shape[1] == prompts.shape[1]:
        vocab_norms = np.linalg.norm(vocab, axis=1)
        vocab_mean_norm = float(vocab_norms.mean())
        cosines = (prompts / np.maximum(norms[:, None], 1e-12)) @ (vocab / np.maximum(vocab_norms[:, None], 1e-12)).T
        nearest = tuple(_nearest(row, token_text) for row in cosines)
    return PromptDiagnostics(
        num_virtual_tokens=int(prompts.shape[0]),
        dim=int(prompts.shape[1]),
        token_norms=tuple(float(n) for n in norms),
        vocab_mean_norm=vocab_mean_norm,
        nearest=nearest,
    )


def _nearest(cosines: np.ndarray, token_text: Callable[[int], str] | None) -> tuple[NearestToken, ...]:
    top = np.argsort(cosines)[::-1][:NEAREST_TOKENS]
    return tuple(
        NearestToken(int(i), float(cosines[i]), None if token_text is None else token_text(int(i))) for i in top
    )


def _summary(layers: Sequence[LayerDiagnostics], scalings: Sequence[ScalingDiagnostics], seconds: float) -> DiagnosticsSummary:
    primary = [row for row in layers if row.primary]
    relative = [row.relative_update for row in primary if row.relative_update is not None]
    relative += [row.relative_update for row in scalings if row.relative_update is not None]
    intruders = [row.intruders for row in primary if row.intruders is not None]
    return DiagnosticsSummary(
        layers=len(primary) + len(scalings),
        median_stable_rank=float(np.median([row.stable_rank for row in primary])) if primary else None,
        max_relative_update=max(relative) if relative else None,
        total_intruders=sum(intruders) if intruders else None,
        seconds=seconds,
    )
