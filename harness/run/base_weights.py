"""A loaded base's weights as data: their content hash, and their dense form.

`weights_hash` is `state_dict_hash` (sha256 over every tensor's bytes), cached in a small JSON next to
the weight files (or in the harness cache) keyed by the files' path, size and mtime plus the load
options; `cached_weights_hash` reads that cache alone, so a cached re-run knows the hash without
loading. `dense_state_dict` gives a 4-bit base's weights back at their real shape for diagnostics.

torch and bitsandbytes are imported inside functions: a cached re-run imports this module.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.run.bases import cache_root

if TYPE_CHECKING:
    import torch


def state_dict_hash(model: Any) -> str:
    """sha256 over the state dict tensors' bytes in sorted key order (names included)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt"))


def _hash_key(source: str, extra: str) -> str | None:
    folder = Path(source)
    if not folder.is_dir():
        return None  # a hub id: no stable file identity to key on, hash every time
    parts = [extra] + [f"{p.resolve()}|{p.stat().st_size}|{p.stat().st_mtime_ns}" for p in _weight_files(folder)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _hash_cache_files(source: str) -> list[Path]:
    """Next to the weights when writable, else in the harness cache."""
    fallback = cache_root() / "hashes" / (hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:16] + ".json")
    return [Path(source) / ".harness_weights_hash.json", fallback]


def weights_hash(model: Any, source: str, extra: str) -> str:
    """state_dict_hash, cached in a small JSON keyed by weight files' path+size+mtime (+ load options)."""
    key = _hash_key(source, extra)
    files = _hash_cache_files(source) if key else []
    cached = _cached_hash(key, files)
    if cached is not None:
        return cached
    value = state_dict_hash(model)
    for path in files:
        if _write_json_entry(path, key, value):
            break
    return value


def cached_weights_hash(source: str, extra: str) -> str | None:
    """The hash `weights_hash(model, source, extra)` cached for these weight files, or None (never
    computed, or `source` is a hub id, which has no file identity to key on)."""
    key = _hash_key(source, extra)
    return _cached_hash(key, _hash_cache_files(source)) if key else None


def _cached_hash(key: str | None, files: Sequence[Path]) -> str | None:
    for path in files:
        try:
            cached = json.loads(path.read_text())
            if key in cached:
                return str(cached[key])
        except (OSError, ValueError):
            continue
    return None


def _write_json_entry(path: Path, key: str | None, value: str) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing[key] = value
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(existing, indent=1))
        os.replace(tmp, path)  # atomic: a reader never sees half a file
        return True
    except (OSError, ValueError):
        return False


def dense_state_dict(model: Any) -> dict[str, Any]:
    """The model's state dict with 4-bit (bitsandbytes) linear weights dequantized to their real shape.

    A QLoRA base's state dict holds packed uint8 storage, (out*in/2, 1), which spectral diagnostics
    cannot compare with an adapter's (out, in) delta. Built from named parameters and buffers, not
    `state_dict()`: bitsandbytes' state_dict un-repacks CPU-kernel weights in place, which changes
    the model's next logits.
    """
    state = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        quant_state = getattr(weight, "quant_state", None)
        if quant_state is not None:
            state[f"{name}.weight"] = _dequantize_4bit(weight.data, quant_state)
    return state


def _dequantize_4bit(data: Any, quant_state: Any) -> Any:
    """Dense weight of a bitsandbytes 4-bit tensor. After its first no-grad forward on the CPU,
    bitsandbytes repacks the weight for its bf16 kernel; undo that on copies (its inverse rewrites the
    quant state it is given, and the module must keep computing with its own)."""
    import bitsandbytes.functional as bnbf

    if getattr(quant_state, "packing_format_for_cpu", False):
        data, quant_state = bnbf._convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(quant_state))
    return bnbf.dequantize_4bit(data, quant_state)
