"""What a leaderboard row is, in words a reader needs: its method, its name, what its base row means.

PEFT records QLoRA, DoRA and rsLoRA all as peft_type LORA; they are different methods to a reader
comparing them. Cells record DORA and RSLORA themselves (run.adapter_checks.recorded_method) and QLoRA
as the 4-bit base in their settings; for cells stored before that, the label is read from the
adapter's own files: `adapter_config.json` (use_dora, use_rslora) and the zoo's `card.json`
(load_in_4bit: the adapter was trained and is evaluated on a 4-bit base, i.e. QLoRA). An old row whose
folder is gone keeps the method the store recorded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

# peft_type -> how the method is written in the literature
METHOD_NAMES: dict[str, str] = {
    "LORA": "LoRA",
    "DORA": "DoRA",
    "QLORA": "QLoRA",
    "RSLORA": "rsLoRA",
    "LOHA": "LoHa",
    "LOKR": "LoKr",
    "VERA": "VeRA",
    "IA3": "IA3",
    "PROMPT_TUNING": "prompt tuning",
    "PREFIX_TUNING": "prefix tuning",
    "ADALORA": "AdaLoRA",
}
BASE_METHOD = "base"


@lru_cache(maxsize=512)
def _json_file(path: str) -> dict[str, Any]:
    try:
        found = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def method_label(stored: str | None, adapter_path: str | None, settings: dict[str, Any] | None = None) -> str:
    """'QLoRA', 'DoRA', 'rsLoRA', 'LoRA', 'IA3', ...; 'base' for the base model alone."""
    if stored is None and adapter_path is None:
        return BASE_METHOD
    method = (stored or "").upper()
    if method == "LORA":
        config = _json_file(str(Path(adapter_path) / "adapter_config.json")) if adapter_path else {}
        card = _json_file(str(Path(adapter_path) / "card.json")) if adapter_path else {}
        if card.get("load_in_4bit") or (settings or {}).get("load_in_4bit"):
            method = "QLORA"
        elif config.get("use_dora"):
            method = "DORA"
        elif config.get("use_rslora"):
            method = "RSLORA"
    return METHOD_NAMES.get(method, method.replace("_", " ").lower() or "unknown")


def base_description(output_type: str | None, base: str) -> str:
    """What the base row measures: a classification head on an encoder is untrained, so it is chance."""
    if output_type == "classify":
        return (f"{base} with a freshly initialised, untrained classification head: a chance-level "
                "reference (its predictions are random), not a trained model")
    if output_type == "multiple_choice":
        return f"{base} alone, no adapter: zero-shot log-likelihood over the task's choices"
    return f"{base} alone, no adapter: zero-shot with the task's prompt"


def display_name(base: str, adapter: str, several_bases: bool) -> str:
    """The adapter's name, qualified by its base when a board holds rows of several bases."""
    return f"{base} / {adapter}" if several_bases else adapter
