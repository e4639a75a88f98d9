"""How one batch goes through a model: the `Route` to call, tokenized inputs, virtual-token prefixes, positions.

Shared by the engine (`harness.run.engine`), the probe (`AdapterHost.probe`) and the server's
scheduler, so a row is encoded and positioned the same way everywhere.

torch is imported inside functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from harness.run.loading import LoadedBase


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
