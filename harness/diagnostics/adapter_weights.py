"""Reading a PEFT adapter folder into numpy arrays: low-rank factors, scaling vectors, prompt embeddings.

LoRA-family deltas are ΔW = s·B·A with B (m×r), A (r×n) and s = alpha/r (alpha/√r for rsLoRA);
each `LowRankLayer` holds B, A and s, oriented like the base module's weight (out × in), and DoRA's
magnitude vector when there is one. The safetensors file is read directly, without loading a model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.errors import HarnessError


CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


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


def strip_prefix(key: str) -> str:
    return key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key


def _group_lora_tensors(tensors: Mapping[str, np.ndarray], notes: list[str]) -> dict[str, dict[str, np.ndarray]]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    other = 0
    for key, tensor in tensors.items():
        match = _PART_RE.match(strip_prefix(key))
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
        name = strip_prefix(key).split(".ia3_l")[0]
        vectors.append(ScalingVector(name=name, values=tensor.reshape(-1).astype(np.float64), axis=axis))
    return vectors


def _prompt_embeddings(tensors: Mapping[str, np.ndarray], folder: Path) -> np.ndarray:
    if "prompt_embeddings" not in tensors:
        raise HarnessError(f"'{folder / WEIGHTS_FILE}' has no 'prompt_embeddings' tensor; re-save the prompt-tuning adapter.")
    return tensors["prompt_embeddings"].astype(np.float64)
