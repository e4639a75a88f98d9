"""The base model's side of the diagnostics: its weights, their cached SVD, and intruder dimensions.

Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of
Equivalence"): a top-k left singular vector of the tuned matrix W₀ + ΔW whose largest cosine
similarity with every left singular vector of W₀ is below ε. The base's SVD is computed once per
(weight content hash, layer) and cached in memory and, if asked, as npz on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


BaseWeights = Mapping[str, Any] | Callable[[str], Any]


def to_numpy(tensor: Any) -> np.ndarray:
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
    matrix = to_numpy(tensor)
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


def forget_base_svds() -> None:
    """Empties the in-memory SVD cache, so the next base_svd call reads the disk or computes (a cold start)."""
    _BASE_SVD_MEMORY.clear()


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
