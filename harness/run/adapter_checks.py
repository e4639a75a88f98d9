"""Checks an adapter folder must pass before it is attached: readable, a known PEFT type, finite weights.

Each failure is one CellError sentence naming the adapter and the fix, so a bad adapter fails its own
cells and the rest of the matrix goes on. These checks read only the adapter's files, never the base.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CellError
from harness.spec import AdapterSpec

CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def check_folder(spec: AdapterSpec) -> None:
    """The folder exists and holds a config and weights this process can read (no PEFT import: cheap)."""
    folder = Path(spec.path)
    if folder.exists() and not folder.is_dir():
        raise CellError(f"Adapter '{spec.name}': {folder} is a file, not an adapter folder; pass the folder that holds {CONFIG_FILE}.")
    if not folder.is_dir():
        raise CellError(f"Adapter '{spec.name}': folder {folder} does not exist; check the path.")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise CellError(f"Adapter '{spec.name}': folder {folder} is not readable; fix its permissions.")
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise CellError(f"Adapter '{spec.name}': {folder} holds no {CONFIG_FILE}; pass a PEFT adapter folder (save it with save_pretrained).")
    for path in [config, *(folder / name for name in WEIGHT_FILES)]:
        if path.exists() and not os.access(path, os.R_OK):
            raise CellError(f"Adapter '{spec.name}': {path} is not readable; fix its permissions.")


def check_peft_type(spec: AdapterSpec, config_path: Path) -> None:
    """An unknown peft_type is the adapter's fault (or a newer PEFT's), not the base's.

    Checked only before attaching: importing PEFT costs seconds, and a cached re-run needs no PEFT.
    """
    from peft import PeftType

    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CellError(f"Adapter '{spec.name}': {config_path} is not valid JSON ({error}); re-save the adapter.") from error
    peft_type = config.get("peft_type") if isinstance(config, dict) else None
    if peft_type is None:
        raise CellError(f"Adapter '{spec.name}': {config_path} names no peft_type; re-save the adapter with PEFT.")
    known = {member.value for member in PeftType}
    if str(peft_type).upper() not in known:
        raise CellError(
            f"Adapter '{spec.name}': unknown peft_type '{peft_type}' in {config_path}; the installed PEFT knows "
            f"{', '.join(sorted(known))} (upgrade PEFT if the adapter was saved by a newer one)."
        )


def check_finite(spec: AdapterSpec, weights: Path) -> None:
    """Refuse NaN or infinite weights: such an adapter would be scored as if it were real (empty answers, score 0)."""
    for name, tensor in _tensors(weights):
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            bad = int((~tensor.isfinite()).sum())
            raise CellError(
                f"Adapter '{spec.name}': tensor '{name}' in {weights.name} holds {bad} non-finite value(s) (NaN or inf); "
                "retrain or re-save the adapter."
            )


def _tensors(weights: Path) -> Iterator[tuple[str, Any]]:
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)
        return
    import torch

    yield from torch.load(str(weights), map_location="cpu", weights_only=True).items()


def recorded_method(config: dict[str, Any]) -> str:
    """The method a cell records: the PEFT type, except that LoRA's variants get their own name.

    PEFT files DoRA and rsLoRA under peft_type LORA; the leaderboard must still tell them apart after
    the adapter folder is gone, so the cell records DORA / RSLORA (QLoRA is the 4-bit base in the
    cell's settings)."""
    method = str(config["peft_type"]).upper()
    if method == "LORA" and config.get("use_dora"):
        return "DORA"
    if method == "LORA" and config.get("use_rslora"):
        return "RSLORA"
    return method


@dataclass(frozen=True)
class AdapterFacts:
    """What a cell records of an adapter, read from its files alone (as AdapterHost.add reports them)."""

    method: str
    rank: int | None
    trainable_params: int
    weights_hash: str
    recorded_method: str  # recorded_method(config): DORA and RSLORA named apart from LORA


def adapter_facts(spec: AdapterSpec) -> AdapterFacts | None:
    """The adapter's facts and weights hash without attaching it; None when only attaching can tell."""
    folder = Path(spec.path)
    weights = folder / WEIGHT_FILES[0]
    if not weights.is_file():
        return None  # pickled weights: let AdapterHost decide (it knows --allow-pickle)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        from safetensors import safe_open

        with safe_open(str(weights), framework="numpy") as handle:  # shapes only: no torch needed
            numel = sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())
    except Exception:  # noqa: BLE001 - unreadable or corrupt: attaching reports it with its reason
        return None
    return AdapterFacts(str(config["peft_type"]).upper(), config.get("r"), numel, sha256_file(weights), recorded_method(config))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
