"""FLOPs of a model's work, counted from its parameters and the tokens it processed.

2 FLOPs per parameter per token for the forward pass (Kaplan et al. 2020), counting the parameters
that take part in matrix products (embedding look-ups are free; a tied output head is counted once),
plus 2 per adapter parameter per token while a LoRA adapter is unmerged (x·A then ·B), plus the
attention scores and the weighted sum, 4·d per attended position per layer with causal attention and
a KV cache. Every prompt and generated token is counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def estimate_flops(
    num_params: int,
    adapter_params: int,
    prompt_tokens: int,
    new_tokens: int,
    *,
    adapter_merged: bool = False,
    attention: float = 0.0,
) -> float:
    """Forward FLOPs for a cell: 2·N per token, +2·adapter params per token while unmerged, + attention.

    `attention` is the attention term from `attention_flops` (0 to leave it out).
    """
    tokens = prompt_tokens + new_tokens
    per_token = 2 * num_params + (0 if adapter_merged else 2 * adapter_params)
    return float(per_token * tokens) + attention


def attention_flops(
    prompt_lengths: Sequence[int], new_lengths: Sequence[int], num_layers: int, hidden_size: int
) -> float:
    """QKᵀ and the weighted sum of V: 4·d FLOPs per attended position per layer, causal with a KV cache.

    Token i of a sequence (1-based) attends to i positions, so a sequence of T tokens costs
    4·L·d·T(T+1)/2. Grouped-query attention shares K/V heads but not this work, so d is the model width.
    """
    total = 0
    for prompt, new in zip(prompt_lengths, new_lengths, strict=True):
        length = prompt + new
        total += length * (length + 1) // 2
    return 4.0 * num_layers * hidden_size * total


@dataclass(frozen=True)
class ModelCost:
    """What a model costs per token: matmul parameters of the base, of the adapter, and its attention shape."""

    params: int
    adapter_params: int = 0
    adapter_merged: bool = False
    num_layers: int = 0  # 0 leaves the attention term out
    hidden_size: int = 0

    def flops(self, prompt_lengths: Sequence[int], new_lengths: Sequence[int]) -> float:
        attention = attention_flops(prompt_lengths, new_lengths, self.num_layers, self.hidden_size)
        return estimate_flops(
            self.params,
            self.adapter_params,
            sum(prompt_lengths),
            sum(new_lengths),
            adapter_merged=self.adapter_merged,
            attention=attention,
        )


def _active_adapter_param_ids(model: torch.nn.Module) -> dict[int, int]:
    """id -> numel of the parameters of the active adapters of every peft tuner layer."""
    import torch

    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # no peft: no adapters
        return {}
    found: dict[int, int] = {}
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for layer_name in module.adapter_layer_names:
            container = getattr(module, layer_name, None)
            if container is None:
                continue
            for adapter in module.active_adapters:
                if adapter not in container:
                    continue
                item = container[adapter]
                params = [item] if isinstance(item, torch.nn.Parameter) else list(item.parameters())
                found.update({id(p): p.numel() for p in params})
    return found


def model_cost(model: torch.nn.Module, *, adapter_merged: bool = False) -> ModelCost:
    """Count a (peft) model's matmul parameters, split into base and active adapter, and read its shape.

    Embedding look-ups cost no FLOPs, so an embedding weight counts only when a linear layer uses
    it too (a tied output head); shared tensors count once.
    """
    import torch

    adapter = _active_adapter_param_ids(model)
    embedding_ids: set[int] = set()
    used_elsewhere: set[int] = set()
    for module in model.modules():
        own = [id(p) for p in module.parameters(recurse=False)]
        (embedding_ids if isinstance(module, torch.nn.Embedding) else used_elsewhere).update(own)
    base = 0
    seen: set[int] = set()
    for p in model.parameters():
        key = id(p)
        if key in seen or key in adapter:
            continue
        seen.add(key)
        if key in embedding_ids and key not in used_elsewhere:
            continue
        base += p.numel()
    config = getattr(model, "config", None)
    return ModelCost(
        params=base,
        adapter_params=sum(adapter.values()),
        adapter_merged=adapter_merged,
        num_layers=int(getattr(config, "num_hidden_layers", 0) or 0),
        hidden_size=int(getattr(config, "hidden_size", 0) or 0),
    )
