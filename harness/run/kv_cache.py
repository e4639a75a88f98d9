"""A KV cache for the decode loop that appends in place instead of concatenating.

transformers' DynamicLayer grows its keys and values with `torch.cat` on every decode step, which
copies the whole cache once per layer per generated token. Profiled on SmolLM2 (batch 32, ~160-token
prompts, 2 CPU cores) that copy was 28% of a decode step (75 of 270 ms), more than attention itself.
`GrowingLayer` keeps keys and values in a buffer with room for the tokens still to come; a step
writes one column and `keys`/`values` are views of the filled part. The attention kernels read the
same numbers, so outputs are unchanged (the engine tests compare against `model.generate`).

torch/transformers are imported inside `growing_cache`: the CLI must not import them at startup.
"""

from __future__ import annotations

from typing import Any


def growing_cache(config: Any, reserve: int) -> Any:
    """A DynamicCache for `config` whose full-attention layers are GrowingLayers; sliding-window layers
    (and any other kind) stay as transformers makes them. `reserve`: tokens to leave room for."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self) -> None:
            super().__init__()
            self.key_buffer: Any = None
            self.value_buffer: Any = None

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            used = self.get_seq_length()
            needed = used + key_states.shape[-2]
            if self.key_buffer is None or needed > self.key_buffer.shape[-2]:
                self._reallocate(key_states, value_states, used, needed + reserve)
            self.key_buffer[:, :, used:needed] = key_states
            self.value_buffer[:, :, used:needed] = value_states
            self._expose(needed)
            return self.keys, self.values

        def _reallocate(self, key_states: Any, value_states: Any, used: int, capacity: int) -> None:
            keys = key_states.new_empty(*key_states.shape[:2], capacity, key_states.shape[-1])
            values = value_states.new_empty(*value_states.shape[:2], capacity, value_states.shape[-1])
            if used:
                keys[:, :, :used] = self.keys
                values[:, :, :used] = self.values
            self.key_buffer, self.value_buffer = keys, values

        def _expose(self, length: int) -> None:
            self.keys = self.key_buffer[:, :, :length]
            self.values = self.value_buffer[:, :, :length]

        def batch_select_indices(self, indices: Any) -> None:
            length = self.get_seq_length()
            if length:
                self.key_buffer = self.key_buffer[indices]
                self.value_buffer = self.value_buffer[indices]
                self._expose(length)

        def drop_leading(self, count: int) -> None:
            """Forget the first `count` positions (left padding no remaining row attends to)."""
            length = self.get_seq_length()
            if count and length:
                self.key_buffer = self.key_buffer[:, :, count:]
                self.value_buffer = self.value_buffer[:, :, count:]
                self._expose(length - count)

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise NotImplementedError("the engine's cache does not repeat rows (beam search is not supported)")

    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def drop_leading_positions(cache: Any, count: int) -> bool:
    """Drop the first `count` cache positions of every layer; False (nothing done) unless all layers can."""
    if not count or not all(hasattr(layer, "drop_leading") for layer in cache.layers):
        return False
    for layer in cache.layers:
        layer.drop_leading(count)
    return True
