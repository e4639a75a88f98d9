"""Reads a PEFT adapter folder (config, weights file, tensor shapes) and refuses one that does not fit its base.

Each failure is one CellError sentence naming the adapter and the fix: a missing or invalid config,
missing or (without --allow-pickle) pickled or corrupt weights, a tensor whose shape cannot attach to
the base's module, target modules the base does not have. `adapter_checks` holds the checks the
cached-run planner also runs (folder readable, PEFT type, finite weights); the fit checks here need
the loaded base's modules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CellError
from harness.spec import AdapterSpec


@dataclass(frozen=True)
class AdapterFiles:
    config: dict[str, Any]
    weights: Path
    tensors: dict[str, tuple[int, ...]]  # key -> shape
    numel: int


def read_adapter(spec: AdapterSpec) -> AdapterFiles:
    """Validate an adapter folder's files; each failure is one CellError sentence."""
    folder = Path(spec.path)
    if not folder.is_dir():
        raise CellError(f"Adapter '{spec.name}': folder {folder} does not exist; check the path.")
    config_path = folder / "adapter_config.json"
    if not config_path.exists():
        raise CellError(f"Adapter '{spec.name}': {config_path} is missing; is {folder} a PEFT adapter folder?")
    try:
        config = json.loads(config_path.read_text())
        if not isinstance(config, dict) or "peft_type" not in config:
            raise ValueError("no peft_type")
    except ValueError as exc:
        raise CellError(f"Adapter '{spec.name}': {config_path} is not a valid PEFT config ({exc}); re-save the adapter.") from exc
    weights = _weights_file(spec, folder)
    tensors = _tensor_shapes(spec, weights)
    numel = 0
    for shape in tensors.values():
        count = 1
        for dim in shape:
            count *= dim
        numel += count
    return AdapterFiles(config=config, weights=weights, tensors=tensors, numel=numel)


def check_fits(spec: AdapterSpec, files: AdapterFiles, base_name: str, base_model: Any) -> None:
    """Refuse an adapter whose tensor shapes or target modules do not fit the base (one CellError sentence)."""
    mismatch = _shape_mismatch(spec, files, base_model)
    if mismatch:
        made_for = files.config.get("base_model_name_or_path") or "another model"
        same = _loose_name(made_for) == _loose_name(base_name)
        origin = "" if same else f" (it was made for '{made_for}')"
        raise CellError(
            f"Adapter '{spec.name}' does not fit base '{base_name}'{origin}: {mismatch}; use an adapter trained on this base."
        )
    missing = _missing_targets(files.config, base_model)
    if missing:
        raise CellError(
            f"Adapter '{spec.name}' targets modules {missing} that base '{base_name}' does not have; use an adapter trained on this base."
        )


def _weights_file(spec: AdapterSpec, folder: Path) -> Path:
    safe = folder / "adapter_model.safetensors"
    if safe.exists():
        return safe
    pickled = folder / "adapter_model.bin"
    if pickled.exists():
        if not spec.allow_pickle:
            raise CellError(
                f"Adapter '{spec.name}' has only pickled weights (adapter_model.bin); pass --allow-pickle to load pickled weights."
            )
        return pickled
    raise CellError(f"Adapter '{spec.name}': no adapter_model.safetensors in {folder}; save the adapter with save_pretrained.")


def _tensor_shapes(spec: AdapterSpec, weights: Path) -> dict[str, tuple[int, ...]]:
    try:
        if weights.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(weights), framework="pt") as handle:
                return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
        import torch

        state = torch.load(str(weights), map_location="cpu", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CellError(f"Adapter '{spec.name}': weights file {weights.name} is corrupt ({exc}); re-save or re-download it.") from exc


def _loose_name(name: str | None) -> str:
    """'HuggingFaceTB/SmolLM2-135M-Instruct' and '/cache/smollm2-135m' compare alike."""
    base = Path(name or "").name.lower()
    return re.sub(r"[^a-z0-9]", "", base)


def _module_key(key: str) -> str:
    """Map a saved PEFT tensor key to the base module it belongs to."""
    key = key.removeprefix("base_model.model.")
    key = re.sub(r"\.(lora_[A-Za-z_]+|ia3_l|hada_\w+|lokr_\w+|oft_\w+|boft_\w+)(\.weight)?$", "", key)
    return key


def _shape_mismatch(spec: AdapterSpec, files: AdapterFiles, base_model: Any) -> str | None:
    """Describe the first adapter tensor whose shape cannot fit this base, or None."""
    modules = dict(base_model.named_modules())
    params = {k: tuple(v.shape) for k, v in base_model.state_dict().items()}
    for key, shape in files.tensors.items():
        if "prompt_embeddings" in key:
            hidden = base_model.get_input_embeddings().weight.shape[1]
            if shape[-1] != hidden:
                return f"{key} has width {shape[-1]} but the base's embeddings have width {hidden}"
            continue
        problem = _lora_like_mismatch(key, shape, modules)
        if problem:
            return problem
        plain = key.removeprefix("base_model.model.").replace(".modules_to_save", "")
        if plain in params and params[plain] != shape and ".lora_" not in key:
            return f"{plain} has shape {list(shape)} but the base's has {list(params[plain])}"
    return None


def _lora_like_mismatch(key: str, shape: tuple[int, ...], modules: dict[str, Any]) -> str | None:
    """Check a LoRA/IA3 tensor against the 2-D weight of the base module it attaches to."""
    name = _module_key(key)
    module = modules.get(name)
    if module is None or len(shape) != 2:
        return None
    dims = _in_out(module)
    if dims is None:
        return None
    in_f, out_f = dims
    # (tensor marker, which axis of the saved tensor, the size the base module needs there)
    checks = ((".lora_A.", 1, in_f), (".lora_B.", 0, out_f), (".lora_embedding_A", 1, in_f),
              (".lora_embedding_B", 0, out_f))
    for marker, axis, want in checks:
        if marker in key and shape[axis] != want:
            return f"{key} has shape {list(shape)} but the base's {name} maps {in_f} to {out_f}"
    if "ia3_l" in key and shape[0] * shape[1] not in (out_f, in_f):
        return f"{key} has shape {list(shape)} but the base's {name} maps {in_f} to {out_f}"
    return None


def _in_out(module: Any) -> tuple[int, int] | None:
    """(input size, output size) of a Linear/Embedding/Conv1D-like module, or None."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)  # also right for 4-bit Linear
    if hasattr(module, "num_embeddings") and hasattr(module, "embedding_dim"):
        return int(module.num_embeddings), int(module.embedding_dim)
    weight = getattr(module, "weight", None)
    if weight is not None and weight.dim() == 2 and type(module).__name__ == "Conv1D":
        return int(weight.shape[0]), int(weight.shape[1])  # GPT-2 Conv1D stores (in, out)
    return None


def _missing_targets(config: dict[str, Any], base_model: Any) -> list[str]:
    targets = config.get("target_modules")
    if not targets or targets == "all-linear":
        return []
    names = [n for n, _ in base_model.named_modules()]
    if isinstance(targets, str):
        return [] if any(re.fullmatch(targets, n) for n in names) else [targets]
    return [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
