"""Base loading, weight hashing, adapter validation, base purity, hot-swap and probe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers_models import adapter_factory, make_llama, single_thread, tiny_bert, tiny_llama, tiny_t5  # noqa: F401

from harness.errors import CellError, HarnessError
from harness.run import base_weights, loading
from harness.run.adapter_host import AdapterHost, AttachedAdapter, last_logits
from harness.run.base_weights import state_dict_hash
from harness.run.loading import LoadedBase, load_base
from harness.spec import AdapterSpec, ModelSpec

PROMPTS = ["hello world", "the quick brown fox jumps over", "a resume lists name email"]


@pytest.fixture()
def llama_base(tiny_llama: Path) -> LoadedBase:
    return load_base(ModelSpec(name=str(tiny_llama)))


def test_load_causal_folder(llama_base: LoadedBase, tiny_llama: Path) -> None:
    assert llama_base.kind == "causal"
    assert llama_base.tokenizer.padding_side == "left"
    assert llama_base.tokenizer.pad_token is not None
    assert llama_base.dtype == torch.float32 and llama_base.device.type == "cpu"
    assert llama_base.num_parameters == sum(p.numel() for p in llama_base.model.parameters())
    assert llama_base.weights_hash == state_dict_hash(llama_base.model)


def test_weights_hash_cached_by_file_identity(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_base(ModelSpec(name=str(tiny_llama)))
    assert (tiny_llama / ".harness_weights_hash.json").exists()

    def no_rehash(model: object) -> str:
        raise AssertionError("a reload must not rehash the weights")

    monkeypatch.setattr(base_weights, "state_dict_hash", no_rehash)  # weights_hash looks it up here
    assert load_base(ModelSpec(name=str(tiny_llama))).weights_hash == first.weights_hash


def test_weights_hash_differs_between_models(tmp_path: Path, tiny_llama: Path) -> None:
    other = load_base(ModelSpec(name=str(make_llama(tmp_path / "other", seed=7))))
    assert other.weights_hash != load_base(ModelSpec(name=str(tiny_llama))).weights_hash


def test_kind_detection(tiny_t5: Path, tiny_bert: Path) -> None:
    assert load_base(ModelSpec(name=str(tiny_t5))).kind == "seq2seq"
    bert = load_base(ModelSpec(name=str(tiny_bert)), num_labels=3)
    assert bert.kind == "encoder"
    assert bert.model.config.num_labels == 3
    assert bert.tokenizer.padding_side == "right"


def test_unknown_model_is_one_sentence() -> None:
    with pytest.raises(HarnessError, match=r"Model 'no-such/model-xyz' is neither an embedded default .*pass a local folder\.$"):
        load_base(ModelSpec(name="no-such/model-xyz"))


# ---------------------------------------------------------------- adapter validation


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _add(base: LoadedBase, path: Path, name: str = "x", allow_pickle: bool = False) -> AttachedAdapter:
    return AdapterHost(base).add(AdapterSpec(path=path, name=name, allow_pickle=allow_pickle))


def test_missing_folder(llama_base: LoadedBase, tmp_path: Path) -> None:
    with pytest.raises(CellError, match="Adapter 'x': folder .* does not exist"):
        _add(llama_base, tmp_path / "nope")


def test_missing_and_invalid_config(llama_base: LoadedBase, tiny_llama: Path, adapter_factory, tmp_path: Path) -> None:
    folder = _copy(adapter_factory(tiny_llama, "causal"), tmp_path / "a")
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(CellError, match="is not a valid PEFT config"):
        _add(llama_base, folder)
    (folder / "adapter_config.json").unlink()
    with pytest.raises(CellError, match="adapter_config.json is missing"):
        _add(llama_base, folder)


def test_weights_missing_pickled_and_corrupt(llama_base: LoadedBase, tiny_llama: Path, adapter_factory, tmp_path: Path) -> None:
    folder = _copy(adapter_factory(tiny_llama, "causal"), tmp_path / "a")
    weights = folder / "adapter_model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CellError, match="is corrupt"):
        _add(llama_base, folder)
    weights.unlink()
    with pytest.raises(CellError, match="no adapter_model.safetensors"):
        _add(llama_base, folder)
    from safetensors.torch import load_file

    weights.write_bytes(good)
    torch.save(load_file(str(weights)), folder / "adapter_model.bin")
    weights.unlink()
    with pytest.raises(CellError, match="pass --allow-pickle to load pickled weights"):
        _add(llama_base, folder)
    assert _add(llama_base, folder, allow_pickle=True).method == "LORA"


def test_adapter_for_another_base(llama_base: LoadedBase, adapter_factory, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    wide = tmp_path / "wide"
    make_llama(wide)
    config = LlamaConfig.from_pretrained(str(wide))
    config.hidden_size, config.intermediate_size = 32, 64
    LlamaForCausalLM(config).save_pretrained(str(wide))
    with pytest.raises(CellError, match=r"Adapter 'x' does not fit base .*made for .*q_proj.lora_A.weight has shape"):
        _add(llama_base, adapter_factory(wide, "causal"))


def test_target_modules_absent(llama_base: LoadedBase, tiny_llama: Path, adapter_factory, tmp_path: Path) -> None:
    folder = _copy(adapter_factory(tiny_llama, "causal"), tmp_path / "a")
    config = json.loads((folder / "adapter_config.json").read_text())
    config["target_modules"] = ["c_attn"]
    (folder / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CellError, match=r"targets modules \['c_attn'\] that base"):
        _add(llama_base, folder)


def test_attached_adapter_fields(llama_base: LoadedBase, tiny_llama: Path, adapter_factory) -> None:
    host = AdapterHost(llama_base)
    lora = host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", r=4), name="l4"))
    dora = host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "dora"), name="d"))
    ia3 = host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "ia3"), name="i"))
    soft = host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "prompt"), name="soft"))
    assert (lora.method, lora.rank, lora.hot_swappable, lora.mixable) == ("LORA", 4, True, True)
    assert (dora.hot_swappable, dora.mixable) == (True, False)
    assert (ia3.method, ia3.hot_swappable, soft.method) == ("IA3", False, "PROMPT_TUNING")
    # 2 layers x (q_proj: A 4x64 + B 64x4, v_proj: A 4x64 + B 32x4)
    assert lora.trainable_params == 2 * (4 * 64 + 64 * 4 + 4 * 64 + 32 * 4)
    assert soft.trainable_params == 4 * 64
    assert len(lora.weights_hash) == 64 and lora.weights_hash != dora.weights_hash
    assert {host.group_of(None), host.group_of("l4")} == {"mixed"}
    assert host.group_of("d") == "solo:d"
    with pytest.raises(CellError, match="already used"):
        host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal"), name="l4"))


def test_base_stays_pure(llama_base: LoadedBase, tiny_llama: Path, adapter_factory) -> None:
    before = state_dict_hash(llama_base.model)
    host = AdapterHost(llama_base)
    plain = last_logits(host, [None] * 3, PROMPTS)
    for i, method in enumerate(["lora", "dora", "ia3", "prompt"]):
        host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", method), name=f"a{i}"))
    assert state_dict_hash(llama_base.model) == before
    assert not any("lora" in n or "ia3" in n for n, _ in llama_base.model.named_modules())
    torch.testing.assert_close(last_logits(host, [None] * 3, PROMPTS), plain, rtol=0, atol=0)
    # the base row inside a mixed LoRA batch (adapter_names "__base__") is the same base
    mixed = last_logits(host, [None, "a0", None], PROMPTS)
    torch.testing.assert_close(mixed[[0, 2]], plain[[0, 2]], rtol=0, atol=1e-6)


def test_probe(llama_base: LoadedBase, tiny_llama: Path, adapter_factory) -> None:
    host = AdapterHost(llama_base)
    host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal"), name="real"))
    host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", init_lora_weights=True), name="zero"))
    assert host.probe("real", PROMPTS) > 1e-3
    with pytest.raises(CellError, match=r"^Adapter 'zero' has no effect on this base: .*target modules wrong\?\)\.$"):
        host.probe("zero", PROMPTS)


def test_hot_swap_equals_fresh_load(tiny_llama: Path, adapter_factory) -> None:
    many = AdapterHost(load_base(ModelSpec(name=str(tiny_llama))))
    for seed, name in [(1, "A"), (2, "B"), (3, "C")]:
        many.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", seed=seed), name=name))
    alone = AdapterHost(load_base(ModelSpec(name=str(tiny_llama))))
    alone.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", seed=2), name="B"))
    torch.testing.assert_close(last_logits(many, ["B"] * 3, PROMPTS), last_logits(alone, ["B"] * 3, PROMPTS), rtol=0, atol=0)
    many.remove("A")
    with pytest.raises(CellError, match="not attached"):
        many.group_of("A")
    torch.testing.assert_close(last_logits(many, ["B"] * 3, PROMPTS), last_logits(alone, ["B"] * 3, PROMPTS), rtol=0, atol=0)
    many.remove("B")
    many.remove("C")
    assert list(many.wrappers()) == []


def test_classifier_adapter_brings_its_head(tiny_bert: Path, adapter_factory) -> None:
    base = load_base(ModelSpec(name=str(tiny_bert)), num_labels=2)
    host = AdapterHost(base)
    host.add(AdapterSpec(path=adapter_factory(tiny_bert, "encoder"), name="cls"))
    assert host.probe("cls", PROMPTS) > 0
    assert not any("modules_to_save" in n for n, _ in base.model.named_modules())


@pytest.mark.slow
def test_minilm_embedded_encoder() -> None:
    first = load_base(ModelSpec(name="minilm-l6"), num_labels=3)
    again = load_base(ModelSpec(name="minilm-l6"), num_labels=3)
    assert first.kind == "encoder" and first.model.config.num_labels == 3
    # the fresh head is seeded, so the base row and its hash are reproducible
    assert first.weights_hash == again.weights_hash == state_dict_hash(again.model)


def test_load_in_4bit_with_lora(tiny_llama: Path, adapter_factory) -> None:
    base = load_base(ModelSpec(name=str(tiny_llama), load_in_4bit=True))
    assert type(base.model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    assert base.weights_hash != load_base(ModelSpec(name=str(tiny_llama))).weights_hash
    host = AdapterHost(base)
    host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal"), name="q"))
    assert host.probe("q", PROMPTS) > 1e-3


def test_dense_state_dict_dequantizes_4bit_weights(tiny_llama: Path) -> None:
    from harness.run.base_weights import dense_state_dict

    full = load_base(ModelSpec(name=str(tiny_llama))).model.state_dict()
    base = load_base(ModelSpec(name=str(tiny_llama), load_in_4bit=True))
    key = "model.layers.0.self_attn.q_proj.weight"
    before = dense_state_dict(base.model)[key].float()
    assert before.shape == full[key].shape
    assert ((before - full[key]).norm() / full[key].norm()).item() < 0.2  # NF4 rounding, not garbage
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad():
        base.model(input_ids=ids)  # bitsandbytes may repack the weights for its CPU kernel here
        logits = base.model(input_ids=ids).logits  # computed by the kernel that stays
        after = dense_state_dict(base.model)[key].float()
        again = base.model(input_ids=ids).logits
    assert torch.allclose(after, before, rtol=0, atol=1e-2 * before.abs().max().item())
    assert torch.equal(logits, again)  # reading the weights left the module's own quant state alone


def test_dtype_name_matches_what_loading_resolves(monkeypatch) -> None:
    """The cached path names the dtype without torch; it must be the dtype load_base would use."""
    from harness.spec import ModelSpec

    for device, dtype in [("cpu", "auto"), ("auto", "auto"), ("cpu", "bfloat16"), ("auto", "float16")]:
        spec = ModelSpec(name="m", device=device, dtype=dtype)
        assert loading.dtype_name(spec) == str(loading.resolve_dtype(dtype, loading.resolve_device(device))).removeprefix("torch.")
    # with an accelerator node present, "auto" asks torch (which says CPU here: no CUDA build or device)
    monkeypatch.setattr(loading, "ACCELERATOR_NODES", ("/",))
    assert loading.dtype_name(ModelSpec(name="m")) == str(loading.resolve_dtype("auto", loading.resolve_device("auto"))).removeprefix("torch.")
