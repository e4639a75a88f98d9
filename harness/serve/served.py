"""What a server serves: one loaded base, its adapters under short names, and the engine's scheduler.

A served adapter's id is its short name (the folder's name, or NAME from NAME=DIR); its content hash
(sha256 of its weights file, as `harness run` keys predictions) is published in /v1/models so that
an endpoint client can key its cache on the weights behind a name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.run.adapter_host import AdapterHost
from harness.serve.scheduler import Scheduler, SchedulerLimits
from harness.spec import AdapterSpec, ModelSpec


@dataclass
class Served:
    base_id: str
    host: AdapterHost
    scheduler: Scheduler

    @property
    def context(self) -> int:
        """Tokens the model attends over (prompt + generated), from its config."""
        config = self.host.base.model.config
        return int(getattr(config, "max_position_embeddings", None) or self.host.base.tokenizer.model_max_length)

    def knows(self, model: str) -> bool:
        return model == self.base_id or model in self.host.adapters

    def adapter_of(self, model: str) -> str | None:
        """The host's adapter name for a served model id (None = the base)."""
        return None if model == self.base_id else model

    def virtual_tokens(self, adapter: str | None) -> int:
        """Prompt-tuning adapters put this many virtual tokens in front of the prompt."""
        if adapter is None:
            return 0
        return int(self.host.adapters[adapter].config.get("num_virtual_tokens") or 0)

    def model_entries(self) -> list[dict[str, Any]]:
        base = self.host.base
        entries = [{"id": self.base_id, "object": "model", "created": 0, "owned_by": "harness",
                    "metadata": {"kind": "base", "weights_hash": base.weights_hash, "dtype": str(base.dtype).removeprefix("torch."),
                                 "context": self.context}}]
        for name, info in self.host.adapters.items():
            entries.append({"id": name, "object": "model", "created": 0, "owned_by": "harness", "parent": self.base_id,
                            "root": self.base_id,
                            "metadata": {"kind": "adapter", "adapter_hash": info.weights_hash, "method": info.method,
                                         "rank": info.rank, "base_weights_hash": base.weights_hash}})
        return entries


def parse_adapter_args(values: Sequence[str]) -> list[AdapterSpec]:
    """`DIR` or `NAME=DIR` per --adapter; the served id is NAME or the folder's name; ids must be unique."""
    specs: list[AdapterSpec] = []
    for value in values:
        name, _, folder = value.rpartition("=") if "=" in value else ("", "", value)
        path = Path(folder).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise HarnessError(f"Adapter folder '{path}' has no adapter_config.json; pass a PEFT adapter folder (or NAME=FOLDER).")
        name = name or path.resolve().name
        if any(spec.name == name for spec in specs):
            raise HarnessError(f"Two adapters would be served as '{name}'; give one another id with --adapter NAME={folder}.")
        specs.append(AdapterSpec(path=path.resolve(), name=name))
    return specs


def load_served(model: str, adapters: Sequence[AdapterSpec], dtype: str = "float32", device: str = "auto",
                limits: SchedulerLimits = SchedulerLimits()) -> Served:
    """Load the base once and attach every adapter; a bad adapter stops the server before it starts."""
    from harness.run.loading import load_base

    base = load_base(ModelSpec(name=model, dtype=dtype, device=device))  # type: ignore[arg-type]
    if base.kind != "causal":
        raise HarnessError(f"Model '{model}' is a {base.kind} model; `harness serve` serves causal language models.")
    host = AdapterHost(base)
    for spec in adapters:
        if spec.name == model:
            raise HarnessError(f"Adapter id '{spec.name}' is the base model's id; serve it as --adapter OTHER={spec.path}.")
        host.add(spec)
    return Served(model, host, Scheduler(host, limits))
