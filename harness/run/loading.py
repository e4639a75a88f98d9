"""Loads a base model and its tokenizer (`LoadedBase`), and tells what a cached run knows of a base
without loading it (`KnownBase`).

Kind (causal, seq2seq, encoder), device and dtype are resolved here. The weights' content hash comes
from `base_weights`; `load_base` and `known_base` key it by the same load options, so both agree.

torch/transformers are imported inside functions: a cached re-run imports this module (`known_base`,
`dtype_name`) and must import neither.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.run.base_weights import cached_weights_hash, weights_hash
from harness.run.bases import EMBEDDED, resolve_source
from harness.spec import ModelKind, ModelSpec

if TYPE_CHECKING:
    import torch

# model_type values of encoder-only architectures: they get a sequence-classification head.
ENCODER_TYPES = frozenset(
    {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "xlm-roberta", "mpnet",
     "camembert", "modernbert", "xlm", "funnel", "ernie"}
)


@dataclass
class LoadedBase:
    spec: ModelSpec
    model: Any  # torch.nn.Module, never wrapped by PEFT (see harness.run.adapter_host)
    tokenizer: Any
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype
    weights_hash: str
    name: str
    num_parameters: int


def _load_config(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if Path(source).is_dir():
            raise HarnessError(f"Model folder '{source}' has no readable config.json ({exc}); point at a HF model folder.") from exc
        raise HarnessError(
            f"Model '{source}' is neither an embedded default ({', '.join(EMBEDDED)}), a local folder, "
            "nor reachable on the Hugging Face hub (offline); pass a local folder."
        ) from exc


def detect_kind(config: Any) -> ModelKind:
    """Seq2seq if encoder-decoder, encoder for classifier/encoder-only configs, else causal."""
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForSequenceClassification") for a in archs) or config.model_type in ENCODER_TYPES:
        return "encoder"
    return "causal"


def resolve_device(device: str) -> torch.device:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# Device nodes of the accelerators `torch.cuda` drives (NVIDIA, ROCm, WSL): with none of them present
# torch.cuda.is_available() is False whatever torch build is installed.
ACCELERATOR_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def dtype_name(spec: ModelSpec) -> str:
    """The name of the dtype `load_base` will use ("float32", ...), importing torch only when it must.

    A cached re-run needs this name for its prediction keys and nothing else of torch, whose import
    costs more than the rest of such a run: an explicit dtype, a CPU device, or "auto" on a machine
    without an accelerator device node are answered without it.
    """
    if spec.dtype != "auto":
        return spec.dtype
    if spec.device.startswith("cpu"):
        return "float32"
    if spec.device == "auto" and not any(os.path.exists(node) for node in ACCELERATOR_NODES):
        return "float32"
    return str(resolve_dtype(spec.dtype, resolve_device(spec.device))).removeprefix("torch.")


def _quantization(spec: ModelSpec, device: torch.device) -> Any:
    if not spec.load_in_4bit:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.float32 if device.type == "cpu" else resolve_dtype("auto", device)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def _model_class(kind: ModelKind) -> Any:
    import transformers

    return {
        "causal": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "encoder": transformers.AutoModelForSequenceClassification,
    }[kind]


def load_base(spec: ModelSpec, num_labels: int | None = None) -> LoadedBase:
    """Load a base model and its tokenizer; `num_labels` sizes a fresh classifier head for encoders."""
    import torch
    from transformers import AutoTokenizer

    source, implied = resolve_source(spec)
    config = _load_config(source, spec.trust_remote_code)
    kind: ModelKind = spec.kind or implied or detect_kind(config)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": spec.trust_remote_code}
    quant = _quantization(spec, device)
    if quant is not None:
        kwargs |= {"quantization_config": quant, "device_map": {"": str(device)}}
    if kind == "encoder" and num_labels is not None:
        # a checkpoint head of another size is replaced by a fresh one (the base row's head)
        kwargs |= {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    # A fresh classifier head is random: seed it so the base row (and its hash) is reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = _model_class(kind).from_pretrained(source, **kwargs)
        except (OSError, ValueError) as exc:
            raise HarnessError(f"Model '{spec.name}' could not be loaded as a {kind} model ({exc}); check the folder or pass --kind.") from exc
    if quant is None:
        model.to(device)
    model.eval()
    tokenizer = _load_tokenizer(AutoTokenizer, source, kind, spec.trust_remote_code)
    return LoadedBase(
        spec=spec, model=model, tokenizer=tokenizer, kind=kind, device=device, dtype=dtype,
        weights_hash=weights_hash(model, source, extra=_hash_options(kind, str(dtype).removeprefix("torch."), spec, num_labels)),
        name=spec.name, num_parameters=sum(p.numel() for p in model.parameters()),
    )


def _hash_options(kind: ModelKind, dtype: str, spec: ModelSpec, num_labels: int | None) -> str:
    """The load options a base's weights hash is cached under: load_base and known_base must agree on it.
    (Written "torch.float32" as str(torch.dtype) gave it, so hashes cached before stay valid.)"""
    return f"{kind}|torch.{dtype}|{spec.load_in_4bit}|{num_labels}"


def _load_tokenizer(auto: Any, source: str, kind: ModelKind, trust_remote_code: bool) -> Any:
    tokenizer = auto.from_pretrained(source, trust_remote_code=trust_remote_code)
    if kind == "causal":
        tokenizer.padding_side = "left"  # generation appends on the right
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class KnownBase:
    """What a prediction key needs of a base, known without loading its weights."""

    kind: ModelKind
    dtype: str  # "float32", ...: dtype_name
    weights_hash: str
    tokenizer: Any


def known_base(spec: ModelSpec, num_labels: int | None = None, with_tokenizer: bool = True) -> KnownBase | None:
    """Kind, dtype, tokenizer and the cached weights hash of a base, without loading its weights.

    None when the hash was never computed (or the base is a hub id): then only loading can tell.
    The hash key is the one `load_base` uses, so the value is exactly the loaded model's. The config
    is read as JSON and the tokenizer only `with_tokenizer` (chat templates need it): importing
    transformers costs more than everything else a cached re-run does.
    """
    source, implied = resolve_source(spec)
    if not Path(source).is_dir():
        return None
    kind: ModelKind | None = spec.kind or implied
    if kind is None:
        config = _config_json(Path(source))
        if config is None:
            return None
        kind = detect_kind(config)
    dtype = dtype_name(spec)
    value = cached_weights_hash(source, extra=_hash_options(kind, dtype, spec, num_labels))
    if value is None:
        return None
    tokenizer = None
    if with_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = _load_tokenizer(AutoTokenizer, source, kind, spec.trust_remote_code)
    return KnownBase(kind, dtype, value, tokenizer)


def _config_json(folder: Path) -> SimpleNamespace | None:
    """config.json's fields as attributes, enough for `detect_kind` (None when unreadable)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return SimpleNamespace(**{"is_encoder_decoder": False, "architectures": None, "model_type": "", **data})
