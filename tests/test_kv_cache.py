"""The in-place KV cache gives the same logits as transformers' DynamicCache, through every path the
decode loop uses: growing past its reserve, rows leaving the batch, leading padding dropped."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from helpers_models import tiny_llama  # noqa: F401

from harness.run.kv_cache import drop_leading_positions, growing_cache


def _step(model, cache, ids, positions) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True).logits[:, -1]


def test_growing_cache_equals_dynamic_cache(tiny_llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    torch.manual_seed(0)
    prompt = torch.randint(3, model.config.vocab_size, (3, 7))
    ours, theirs = growing_cache(model.config, reserve=1), DynamicCache(config=model.config)  # reserve 1: regrows
    positions = torch.arange(7).expand(3, 7)
    a, b = _step(model, ours, prompt, positions), _step(model, theirs, prompt, positions)
    assert torch.equal(a, b)
    for step in range(5):
        if step == 2:  # a row leaves the batch
            keep = torch.tensor([0, 2])
            ours.batch_select_indices(keep)
            theirs.batch_select_indices(keep)
            a, b = a[keep], b[keep]
        token = a.argmax(-1)[:, None]
        assert torch.equal(token, b.argmax(-1)[:, None])
        pos = torch.full((token.shape[0], 1), 7 + step)
        a, b = _step(model, ours, token, pos), _step(model, theirs, token, pos)
        assert torch.equal(a, b)
    assert ours.get_seq_length() == theirs.get_seq_length() == 12
    # the prefill allocated 7 + 1 positions, so holding 12 means the buffers were regrown on the way
    assert all(layer.key_buffer.shape[-2] >= 12 for layer in ours.layers)


def test_drop_leading_positions_keeps_the_rest(tiny_llama: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32).eval()
    cache = growing_cache(model.config, reserve=4)
    _step(model, cache, torch.randint(3, model.config.vocab_size, (2, 6)), torch.arange(6).expand(2, 6))
    before = [layer.keys[:, :, 2:].clone() for layer in cache.layers]
    assert drop_leading_positions(cache, 2) and cache.get_seq_length() == 4
    assert all(torch.equal(layer.keys, old) for layer, old in zip(cache.layers, before))
    assert not drop_leading_positions(DynamicCache(config=model.config), 2)  # plain layers are left alone
