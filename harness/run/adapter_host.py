"""Attaches PEFT adapters to a loaded base: `AdapterHost` owns one `LoadedBase` and every adapter
attached to it (`AttachedAdapter`), and hands the engine a `Route` (which module to call, with which
per-row adapter names or virtual-token prefix) for a batch.

How the base row stays pure: PEFT injects its layers *into* the module it wraps. We therefore never
wrap `LoadedBase.model` itself: every PEFT wrapper wraps a *structural clone* of it — new module
objects whose parameters and buffers are the very same tensors as the base's (`_share_clone`), so no
weight memory is duplicated and no PEFT layer ever appears inside `LoadedBase.model`. Base rows run
either on the untouched `LoadedBase.model` or, inside a mixed LoRA batch, through PEFT's
`adapter_names=["__base__", ...]`, which skips the LoRA branch for those rows (equivalent to
`with peft_model.disable_adapter():` but per row). Unmerged LoRA/IA3 never write to base weights.

torch and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import CellError, first_line
from harness.run.adapter_checks import check_finite, recorded_method, sha256_file
from harness.run.adapter_files import check_fits, read_adapter
from harness.run.forward import Route, encode, positions, with_prefix
from harness.spec import AdapterSpec

if TYPE_CHECKING:
    import torch

    from harness.run.loading import LoadedBase

BASE_ROW = "__base__"  # PEFT's name for "no adapter" inside a mixed batch
# Adapter types that the engine runs through a virtual-token prefix.
PROMPT_TYPES = frozenset({"PROMPT_TUNING", "P_TUNING"})
# How a mixed batch of LoRA adapters runs: PEFT's per-adapter loop, or harness.run.multi_lora.
MultiLoraMode = Literal["peft", "batched"]


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

    @property
    def recorded_method(self) -> str:
        """What a cell records as its method (DoRA and rsLoRA named apart from LoRA)."""
        return recorded_method(self.config) if self.config else self.method


def _share_clone(module: Any) -> Any:
    """A structural copy of `module` whose parameters and buffers ARE the original tensors (no copy)."""
    memo: dict[int, Any] = {id(t): t for t in module.parameters()}
    memo |= {id(t): t for t in module.buffers()}
    return copy.deepcopy(module, memo)


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
        files = read_adapter(adapter)
        check_finite(adapter, files.weights)  # a NaN adapter must never be scored as a real one
        check_fits(adapter, files, self.base.name, self.base.model)
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
            raise CellError(f"Adapter '{spec.name}' could not be attached to base '{self.base.name}' ({first_line(exc)}); check that it was trained on this base.") from exc

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
