"""Helpers for the lm-eval bridge and export tests: SmolLM2 as lm-eval loads it, and LoRA adapters for it."""

from __future__ import annotations

import json
from pathlib import Path


def lm_eval_model_folder(tmp: Path) -> Path:
    """The converted SmolLM2 folder as lm-eval's `pretrained=` can load it.

    The converted config still carries the GGUF `quantization_config` it was read from, which
    transformers' from_pretrained (as lm-eval calls it) refuses without the GGUF file; the weights
    are plain safetensors, so a copy of the config without it, beside links to the other files,
    is the same model.
    """
    from harness.run.bases import smollm2_folder

    source = smollm2_folder()
    tmp.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != "config.json" and not item.name.startswith("."):
            (tmp / item.name).symlink_to(item)
    config = json.loads((source / "config.json").read_text())
    config.pop("quantization_config", None)
    (tmp / "config.json").write_text(json.dumps(config))
    return tmp
