"""Spectral diagnostics of PEFT adapters, read straight from the adapter's safetensors.

LoRA-family deltas are ΔW = s·B·A with B (m×r), A (r×n) and s = alpha/r (alpha/√r for rsLoRA).
Their singular values are computed exactly from the factors: B = Q_B·R_B and Aᵀ = Q_A·R_A give
ΔW = s·Q_B·(R_B·R_Aᵀ)·Q_Aᵀ with orthonormal Q's, so σ(ΔW) = |s|·σ(R_B·R_Aᵀ), an r×r problem.
The dense m×n product is never formed on that path, and same-shaped layers are stacked and
solved in one batched call (float64), which is what keeps rank 64 fast.

DoRA rescales each output row of W₀ + s·B·A to a learned magnitude, so its full delta is not
low rank: rows carry `delta="lora"` (the low-rank part, exact) and, when base weights are
given, `delta="dora_full"` (the whole change, by a dense SVD). `kind` says which path made a
row: "lowrank-exact" or "dense".

Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of
Equivalence"): a top-k left singular vector of the tuned matrix W₀ + ΔW whose largest cosine
similarity with every left singular vector of W₀ is below ε. The base's SVD is computed once
per (weight content hash, layer) and cached in memory and, if asked, as npz on disk.

IA3 gets scaling-vector statistics; prompt tuning gets virtual-token norms and the nearest
vocabulary tokens; other methods get a "not supported" note instead of a crash.

weightwatcher (optional, `weightwatcher=True`) runs on the merged dense layers. Importing it
calls logging.basicConfig and prints to stdout, so it is imported and run inside `_quiet()`,
which restores the root logger and swallows its output.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    from types import ModuleType

    from rich.console import Console
    from rich.table import Table

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
# Dense rows keep only their largest singular values; low-rank rows keep all r of them.
DENSE_TOP_SINGULAR_VALUES = 64
NEAREST_TOKENS = 3

Kind = Literal["lowrank-exact", "dense"]
DeltaPart = Literal["lora", "dora_full"]
BaseWeights = Mapping[str, Any] | Callable[[str], Any]

# ---------------------------------------------------------------------------------------------
# Reading an adapter
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LowRankLayer:
    """One low-rank delta ΔW = scale·B·A, oriented like the base module's weight (out × in)."""

    name: str  # module path without the PEFT prefix, e.g. "model.layers.0.self_attn.q_proj"
    B: np.ndarray  # (m, r)
    A: np.ndarray  # (r, n)
    scale: float
    magnitude: np.ndarray | None = None  # DoRA: one magnitude per output row of the base weight

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def dense(self) -> np.ndarray:
        """The dense float64 delta; only for merging with a base weight or checking."""
        return self.scale * (self.B.astype(np.float64) @ self.A.astype(np.float64))


@dataclass(frozen=True)
class ScalingVector:
    """An IA3 vector: it rescales a module's output rows ("output") or its input columns ("input")."""

    name: str
    values: np.ndarray
    axis: Literal["output", "input"]


@dataclass
class AdapterWeights:
    path: Path
    method: str  # lora | rslora | dora | adalora | ia3 | prompt_tuning | loha | lokr | vera | ...
    config: dict[str, Any]
    lowrank: list[LowRankLayer] = field(default_factory=list)
    scalings: list[ScalingVector] = field(default_factory=list)
    prompt_embeddings: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)  # what was not analysed, and why


LOWRANK_METHODS = frozenset({"lora", "rslora", "dora", "adalora"})
_LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "lora_E")
_PART_RE = re.compile(r"^(?P<module>.+?)\.(?P<part>" + "|".join(_LORA_PARTS) + r")(?:\.[A-Za-z0-9_]+)*$")


def adapter_method(config: Mapping[str, Any]) -> str:
    """The method name we report: PEFT's peft_type, with LoRA split into lora / rslora / dora."""
    peft_type = str(config.get("peft_type", "")).lower()
    if peft_type == "lora":
        if config.get("use_dora"):
            return "dora"
        return "rslora" if config.get("use_rslora") else "lora"
    return peft_type or "unknown"


def read_adapter(path: str | Path) -> AdapterWeights:
    """Reads adapter_config.json and adapter_model.safetensors directly; no model is built."""
    folder = Path(path)
    config = _read_config(folder)
    tensors = _read_tensors(folder)
    weights = AdapterWeights(path=folder, method=adapter_method(config), config=config)
    if weights.method in LOWRANK_METHODS:
        weights.lowrank = _lowrank_layers(tensors, config, weights.method, weights.notes)
    elif weights.method == "ia3":
        weights.scalings = _ia3_vectors(tensors)
    elif weights.method == "prompt_tuning":
        weights.prompt_embeddings = _prompt_embeddings(tensors, folder)
    else:
        weights.notes.append(f"spectral diagnostics are not supported for {weights.method}")
    return weights


def _read_config(folder: Path) -> dict[str, Any]:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise HarnessError(f"'{folder}' has no {CONFIG_FILE}; pass a PEFT adapter folder (one saved with save_pretrained).")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise HarnessError(f"'{config_path}' is not valid JSON ({exc}); re-save the adapter with save_pretrained.") from exc
    if not isinstance(config, dict):
        raise HarnessError(f"'{config_path}' does not hold a JSON object; re-save the adapter with save_pretrained.")
    return config


def _read_tensors(folder: Path) -> dict[str, np.ndarray]:
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        pickled = " (it holds pickled .bin weights, which diagnostics never unpickle)" if (folder / "adapter_model.bin").exists() else ""
        raise HarnessError(
            f"'{folder}' has no {WEIGHTS_FILE}{pickled}; save the adapter with safe_serialization=True."
        )
    try:
        from safetensors.numpy import load_file

        return load_file(str(weights_path))
    except TypeError:
        return _read_tensors_through_torch(weights_path)  # bfloat16 has no numpy dtype
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise HarnessError(f"'{weights_path}' could not be read ({exc}); re-save or re-download the adapter.") from exc


def _read_tensors_through_torch(weights_path: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    return {key: tensor.float().numpy() for key, tensor in load_file(str(weights_path)).items()}


def _natural_key(name: str) -> list[Any]:
    """Sort "layers.2" before "layers.10", as the model orders them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _strip_prefix(key: str) -> str:
    return key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key


def _group_lora_tensors(tensors: Mapping[str, np.ndarray], notes: list[str]) -> dict[str, dict[str, np.ndarray]]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    other = 0
    for key, tensor in tensors.items():
        match = _PART_RE.match(_strip_prefix(key))
        if match is None:
            other += 1
            continue
        groups.setdefault(match["module"], {})[match["part"]] = tensor
    if other:
        notes.append(f"{other} tensors that are not LoRA factors (modules_to_save, trainable tokens) were not analysed")
    return groups


def _pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches the module path's tail as a regex."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def _lora_scale(config: Mapping[str, Any], method: str, module: str, rank: int) -> float:
    alpha = float(_pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8)))
    if method == "adalora":
        # AdaLoRA: scaling = lora_alpha (or r when alpha is 0) divided by ranknum + 1e-5, ranknum = init_r
        return (alpha if alpha > 0 else float(rank)) / (rank + 1e-5)
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _as_matrix(tensor: np.ndarray) -> np.ndarray:
    """Conv factors (r, in, kh, kw) / (out, r, 1, 1) flatten to the 2-D (out, in·kh·kw) view."""
    return tensor.reshape(tensor.shape[0], -1) if tensor.ndim != 2 else tensor


def _lowrank_layers(
    tensors: Mapping[str, np.ndarray], config: Mapping[str, Any], method: str, notes: list[str]
) -> list[LowRankLayer]:
    layers: list[LowRankLayer] = []
    for module, parts in sorted(_group_lora_tensors(tensors, notes).items(), key=lambda item: _natural_key(item[0])):
        layer = _lowrank_layer(module, parts, config, method)
        if layer is None:
            notes.append(f"{module}: incomplete LoRA factors {sorted(parts)}, skipped")
        else:
            layers.append(layer)
    return layers


def _lowrank_layer(
    module: str, parts: Mapping[str, np.ndarray], config: Mapping[str, Any], method: str
) -> LowRankLayer | None:
    if "lora_embedding_A" in parts and "lora_embedding_B" in parts:
        # Embedding LoRA: A (r, vocab), B (dim, r), and the base weight is (vocab, dim) = (B·A)ᵀ.
        factor_b, factor_a = parts["lora_embedding_A"].T, parts["lora_embedding_B"].T
    elif "lora_A" in parts and "lora_B" in parts:
        factor_b, factor_a = _as_matrix(parts["lora_B"]), _as_matrix(parts["lora_A"])
        if method == "adalora" and "lora_E" in parts:
            factor_a = factor_a * parts["lora_E"].reshape(-1, 1)  # fold AdaLoRA's singular values into A
        if config.get("fan_in_fan_out"):
            factor_b, factor_a = factor_a.T, factor_b.T  # Conv1D bases store weights as (in, out)
    else:
        return None
    rank = factor_a.shape[0]
    magnitude = parts.get("lora_magnitude_vector")
    return LowRankLayer(
        name=module,
        B=factor_b,
        A=factor_a,
        scale=_lora_scale(config, method, module, rank),
        magnitude=None if magnitude is None else magnitude.reshape(-1),
    )


def _ia3_vectors(tensors: Mapping[str, np.ndarray]) -> list[ScalingVector]:
    vectors: list[ScalingVector] = []
    for key in sorted(tensors, key=_natural_key):
        if ".ia3_l" not in key:
            continue
        tensor = tensors[key]
        # PEFT stores output scalings as (out, 1) and feed-forward (input) scalings as (1, in).
        axis: Literal["output", "input"] = "input" if tensor.ndim == 2 and tensor.shape[0] == 1 else "output"
        name = _strip_prefix(key).split(".ia3_l")[0]
        vectors.append(ScalingVector(name=name, values=tensor.reshape(-1).astype(np.float64), axis=axis))
    return vectors


def _prompt_embeddings(tensors: Mapping[str, np.ndarray], folder: Path) -> np.ndarray:
    if "prompt_embeddings" not in tensors:
        raise HarnessError(f"'{folder / WEIGHTS_FILE}' has no 'prompt_embeddings' tensor; re-save the prompt-tuning adapter.")
    return tensors["prompt_embeddings"].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Spectra
# ---------------------------------------------------------------------------------------------


Backend = Literal["auto", "torch", "numpy"]


def lowrank_singular_values(
    B: Any, A: Any, scale: float | Sequence[float] | np.ndarray = 1.0, backend: Backend = "auto"
) -> np.ndarray:
    """Exact singular values of scale·B·A, descending, without forming the product.

    B is (m, r) or (L, m, r), A is (r, n) or (L, r, n) (numpy arrays or torch tensors); scale is
    one number or one per layer. Returns (min(m, n, r),) or (L, min(m, n, r)) float64.
    backend "auto" uses torch when it is already imported (its batched QR is about twice as fast
    as numpy's at r = 64) and numpy otherwise, so `harness diagnose` need not pay torch's import.
    """
    use_torch = backend == "torch" or (backend == "auto" and "torch" in sys.modules)
    scales = np.abs(np.asarray(scale, dtype=np.float64))
    scales = scales[:, None] if scales.ndim == 1 else scales
    return (_core_values_torch(B, A) if use_torch else _core_values_numpy(B, A)) * scales


def _core_values_numpy(B: Any, A: Any) -> np.ndarray:
    factor_b = np.asarray(B, dtype=np.float64)
    factor_a = np.asarray(A, dtype=np.float64)
    # Only R is needed: B = Q_B·R_B, Aᵀ = Q_A·R_A, so B·A = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ.
    r_b = np.linalg.qr(factor_b, mode="r")
    r_a = np.linalg.qr(np.swapaxes(factor_a, -1, -2), mode="r")
    return np.linalg.svd(r_b @ np.swapaxes(r_a, -1, -2), compute_uv=False)


def _core_values_torch(B: Any, A: Any) -> np.ndarray:
    import torch

    factor_b = torch.as_tensor(B if isinstance(B, torch.Tensor) else np.asarray(B)).to(torch.float64)
    factor_a = torch.as_tensor(A if isinstance(A, torch.Tensor) else np.asarray(A)).to(torch.float64)
    r_b = torch.linalg.qr(factor_b, mode="r").R
    r_a = torch.linalg.qr(factor_a.mT, mode="r").R
    return torch.linalg.svdvals(r_b @ r_a.mT).cpu().numpy()


def dense_singular_values(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(matrix, dtype=np.float64), compute_uv=False)


@dataclass(frozen=True)
class SpectrumStats:
    spectral_norm: float
    frobenius_norm: float
    stable_rank: float  # Σσ²/σ₁², weightwatcher's stable_rank (it writes λ = σ²)
    effective_rank: float  # exp(entropy of σ/Σσ), Roy & Vetterli 2007


def spectrum_stats(singular_values: np.ndarray) -> SpectrumStats:
    values = np.asarray(singular_values, dtype=np.float64)
    top = float(values.max()) if values.size else 0.0
    if top == 0.0:
        return SpectrumStats(0.0, 0.0, 0.0, 0.0)  # ΔW = 0: no direction, rank 0
    squares = values * values
    weights = values[values > 0] / values.sum()
    entropy = float(-(weights * np.log(weights)).sum())
    return SpectrumStats(
        spectral_norm=top,
        frobenius_norm=float(math.sqrt(squares.sum())),
        stable_rank=float(squares.sum() / (top * top)),
        effective_rank=float(math.exp(entropy)),
    )


def _batched_lowrank_spectra(layers: Sequence[LowRankLayer], backend: Backend = "auto") -> list[np.ndarray]:
    """Singular values of every layer, same-shaped layers stacked into one batched solve."""
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    for index, layer in enumerate(layers):
        groups.setdefault((layer.B.shape, layer.A.shape), []).append(index)
    spectra: list[np.ndarray] = [np.empty(0)] * len(layers)
    for indices in groups.values():
        stacked_b = np.stack([layers[i].B for i in indices])
        stacked_a = np.stack([layers[i].A for i in indices])
        values = lowrank_singular_values(stacked_b, stacked_a, [layers[i].scale for i in indices], backend)
        for row, index in enumerate(indices):
            spectra[index] = values[row]
    return spectra


# ---------------------------------------------------------------------------------------------
# Base weights and the cached base SVD
# ---------------------------------------------------------------------------------------------


def _to_numpy(tensor: Any) -> np.ndarray:
    if hasattr(tensor, "detach"):  # a torch tensor, possibly bf16 or on a GPU
        tensor = tensor.detach().float().cpu().numpy()
    return np.asarray(tensor, dtype=np.float64)


def base_weight(base: BaseWeights | None, module: str) -> np.ndarray | None:
    """The base weight of a PEFT module ("<module>.weight"), as a 2-D float64 array, or None."""
    if base is None:
        return None
    key = f"{module}.weight"
    try:
        tensor = base[key] if isinstance(base, Mapping) else base(key)
    except KeyError:
        return None
    if tensor is None:
        return None
    matrix = _to_numpy(tensor)
    return matrix.reshape(matrix.shape[0], -1) if matrix.ndim != 2 else matrix


@dataclass(frozen=True)
class BaseSVD:
    U: np.ndarray  # (m, min(m, n)) left singular vectors, float32 (cosines need no more)
    S: np.ndarray  # (min(m, n),) singular values, float64


_BASE_SVD_MEMORY: dict[str, BaseSVD] = {}
_BASE_SVD_MEMORY_LIMIT = 512


def weight_hash(matrix: np.ndarray) -> str:
    """Content hash of a weight: equal weights share one cached SVD, whatever the layer is called."""
    digest = hashlib.sha256(np.ascontiguousarray(matrix, dtype=np.float32).tobytes())
    digest.update(str(matrix.shape).encode())
    return digest.hexdigest()[:32]


def base_svd(matrix: np.ndarray, cache_dir: Path | None = None) -> BaseSVD:
    """SVD of a base weight, computed once per content hash: memory first, then npz on disk."""
    key = weight_hash(matrix)
    path = None if cache_dir is None else Path(cache_dir) / f"{key}.npz"
    cached = _BASE_SVD_MEMORY.get(key)
    if cached is None and path is not None and path.is_file():
        with np.load(path) as stored:
            cached = BaseSVD(U=stored["U"], S=stored["S"])
    if cached is None:
        left, values, _ = np.linalg.svd(matrix, full_matrices=False)
        cached = BaseSVD(U=left.astype(np.float32), S=values)
    if path is not None and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, U=cached.U, S=cached.S)
    if key not in _BASE_SVD_MEMORY:
        if len(_BASE_SVD_MEMORY) >= _BASE_SVD_MEMORY_LIMIT:
            _BASE_SVD_MEMORY.pop(next(iter(_BASE_SVD_MEMORY)))
        _BASE_SVD_MEMORY[key] = cached
    return cached


def top_left_singular_vectors(matrix: np.ndarray, k: int) -> np.ndarray:
    """The k leading left singular vectors, (m, k); ARPACK when k is small next to the matrix."""
    smaller = min(matrix.shape)
    if k >= smaller // 2 or smaller < 64:
        return np.linalg.svd(matrix, full_matrices=False)[0][:, :k]
    from scipy.sparse.linalg import svds

    left, values, _ = svds(matrix, k=k, random_state=0)
    return left[:, np.argsort(values)[::-1]]


def count_intruders(tuned: np.ndarray, base: BaseSVD, k: int = 10, threshold: float = 0.5) -> int:
    """Top-k left singular vectors of the tuned matrix whose best |cosine| with any base one is < threshold."""
    k = min(k, min(tuned.shape))
    tuned_vectors = top_left_singular_vectors(tuned, k)
    best = np.abs(base.U.astype(np.float64).T @ tuned_vectors).max(axis=0)
    return int((best < threshold).sum())


# ---------------------------------------------------------------------------------------------
# weightwatcher, isolated
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
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


def _import_weightwatcher() -> ModuleType:
    """Imports weightwatcher isolated: its basicConfig and import-time prints do not leak."""
    with _quiet():
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


_WW_FIELDS = ("alpha", "alpha_weighted", "stable_rank", "log_norm", "log_spectral_norm", "log_alpha_norm", "entropy", "num_pl_spikes")


def weightwatcher_metrics(
    matrices: Mapping[str, np.ndarray], target: Literal["merged", "delta"]
) -> dict[str, WeightWatcherMetrics]:
    """Runs weightwatcher.analyze on dense matrices (one dict entry per layer), quietly."""
    import torch

    ww = _import_weightwatcher()
    keys = {f"layer{i}": name for i, name in enumerate(matrices)}  # ww splits names on dots
    state = {f"{key}.weight": torch.from_numpy(np.asarray(matrices[name], dtype=np.float32)) for key, name in keys.items()}
    with _quiet():
        details = ww.WeightWatcher(model=state).analyze()
    metrics: dict[str, WeightWatcherMetrics] = {}
    for row in details.to_dict("records"):
        name = keys.get(str(row.get("name")))
        if name is not None:
            values = {field_name: _float(row.get(field_name)) for field_name in _WW_FIELDS}
            metrics[name] = WeightWatcherMetrics(target=target, **values)
    return metrics


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


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
    for layer, values in zip(weights.lowrank, _batched_lowrank_spectra(weights.lowrank), strict=True):
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
            return _to_numpy(tensor)
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


# ---------------------------------------------------------------------------------------------
# Output: records for the store, a table for `harness diagnose`
# ---------------------------------------------------------------------------------------------


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
        record.update({f"ww_{name}": getattr(row.weightwatcher, name) for name in _WW_FIELDS})
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
