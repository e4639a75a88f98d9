"""Batched multi-LoRA (harness.run.multi_lora) is exact: logits as PEFT's own per-adapter forward on
the same batch, greedy text as the PEFT path, for real zoo adapters and for rank/alpha patterns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_models import adapter_factory, single_thread, tiny_bert, tiny_llama  # noqa: F401

from harness.run import multi_lora
from harness.run.engine import GenRequest, GenResult, generate_until
from harness.run.adapter_host import AdapterHost
from harness.run.forward import encode, positions
from harness.run.loading import load_base
from harness.spec import AdapterSpec, GenerationSettings, ModelSpec

ZOO = Path(__file__).resolve().parent.parent / "adapters_zoo" / "smollm2-135m" / "resume_json"
ZOO_LORAS = ("lora_r1", "lora_r8", "lora_r64", "lora_r16_rslora")
PROMPTS = [
    "###resume: Jane Doe, data engineer, jane@example.com ###json:",
    "###resume: Tran Van An, accountant ###json:",
]
KEEP = 4  # logits of the last positions only: the vocabulary projection is most of a forward's cost


def _rows(adapters: list[str], prompts: list[str] = PROMPTS) -> tuple[list[str | None], list[str]]:
    """Every adapter and the base on every prompt, interleaved so no adapter's rows are contiguous."""
    names: list[str | None] = [None, *adapters]
    pairs = [(names[(i + j) % len(names)], p) for j in range(len(names)) for i, p in enumerate(prompts)]
    return [a for a, _ in pairs], [p for _, p in pairs]


def _all_logits(host: AdapterHost, adapters: list[str | None], prompts: list[str]) -> torch.Tensor:
    """Logits at the last KEEP positions of a padded batch."""
    route = host.route(adapters)
    enc = encode(host.base, prompts)
    out = route(**enc, position_ids=positions(enc["attention_mask"]), use_cache=False, logits_to_keep=KEEP)
    return out.logits.float()


def _peft_per_adapter(host: AdapterHost, adapters: list[str | None], prompts: list[str]) -> torch.Tensor:
    """PEFT's own forward with one adapter active at a time over the SAME batch (same padding), each
    row taken from its adapter's pass; base rows from the untouched base model."""
    peft_model = next(host.wrappers())
    enc = encode(host.base, prompts)
    pos = positions(enc["attention_mask"])
    expected = host.base.model(**enc, position_ids=pos, use_cache=False, logits_to_keep=KEEP).logits.float()
    for name in {a for a in adapters if a is not None}:
        peft_model.set_adapter(name)
        logits = peft_model(**enc, position_ids=pos, use_cache=False, logits_to_keep=KEEP).logits.float()
        rows = [i for i, a in enumerate(adapters) if a == name]
        expected[rows] = logits[rows]
    return expected


def _assert_exact(host: AdapterHost, adapters: list[str | None], prompts: list[str],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    mask = encode(host.base, prompts)["attention_mask"][:, -KEEP:].bool()
    with torch.inference_mode():
        expected = _peft_per_adapter(host, adapters, prompts)
        assert host.route(adapters).lora is not None, "the batch did not take the batched path"
        for segment_min in (2, 1 << 30):  # per-adapter segments (prefill form), concatenated factors (decode form)
            monkeypatch.setattr(multi_lora, "SEGMENT_MIN_TOKENS", segment_min)
            got = _all_logits(host, adapters, prompts)
            assert float((got - expected)[mask].abs().max()) <= 1e-4
    # the adapters really differ from the base (else equality above would be vacuous)
    base_rows = [i for i, a in enumerate(adapters) if a is None]
    tuned_rows = [i for i, a in enumerate(adapters) if a is not None and prompts[i] == prompts[base_rows[0]]]
    assert float((expected[tuned_rows] - expected[base_rows[0]]).abs().max()) > 1e-2


def _generate(host: AdapterHost, adapters: list[str | None], prompts: list[str], batch_size: int) -> dict[str, str]:
    out: dict[str, GenResult] = {}
    requests = [GenRequest(f"{i}|{a}", p, a) for i, (a, p) in enumerate(zip(adapters, prompts))]
    generate_until(host, requests, GenerationSettings(max_new_tokens=12, stop=("###",)), batch_size,
                   lambda r: out.__setitem__(r.key, r))
    return {k: v.text for k, v in out.items()}


@pytest.fixture(scope="module")
def zoo_host() -> AdapterHost:
    host = AdapterHost(load_base(ModelSpec(name="smollm2-135m")))
    for name in ZOO_LORAS:
        host.add(AdapterSpec(path=ZOO / name, name=name))
    return host


def test_zoo_adapters_logits_equal_peft(zoo_host: AdapterHost, monkeypatch: pytest.MonkeyPatch) -> None:
    adapters, prompts = _rows(list(ZOO_LORAS))
    _assert_exact(zoo_host, adapters, prompts, monkeypatch)


def test_zoo_adapters_greedy_text_equals_peft_path(zoo_host: AdapterHost) -> None:
    adapters, prompts = _rows(list(ZOO_LORAS))
    batched = _generate(zoo_host, adapters, prompts, 16)
    zoo_host.multi_lora = "peft"
    try:
        peft = _generate(zoo_host, adapters, prompts, 16)
    finally:
        zoo_host.multi_lora = "batched"
    assert batched == peft
    assert len(set(batched.values())) > len(PROMPTS)  # adapters change the text


def test_rank_and_alpha_patterns_and_partial_targets(tiny_llama: Path, adapter_factory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    host = AdapterHost(load_base(ModelSpec(name=str(tiny_llama))))
    variants = {
        "patterned": dict(r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                          rank_pattern={"q_proj": 2, "layers.1.self_attn.v_proj": 7}, alpha_pattern={"o_proj": 3.0}),
        "rslora": dict(r=6, use_rslora=True),
        "qv_only": dict(r=3, target_modules=["q_proj", "v_proj"]),
        "mlp": dict(r=5, target_modules=["gate_proj", "up_proj", "down_proj", "q_proj"]),
    }
    for seed, (name, extra) in enumerate(variants.items()):
        host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "lora", seed=40 + seed, **extra), name=name))
    scales = {tuple(sorted(layer.scaling.items())) for layer in multi_lora.lora_layers(next(host.wrappers()))}
    assert len(scales) > 2  # the patterns really give layers different scalings
    adapters, prompts = _rows(list(variants))
    _assert_exact(host, adapters, prompts, monkeypatch)
    batched = _generate(host, adapters, prompts, 8)
    host.multi_lora = "peft"
    assert _generate(host, adapters, prompts, 8) == batched


def test_other_adapter_types_keep_the_peft_path(tiny_llama: Path, tiny_bert: Path, adapter_factory) -> None:
    host = AdapterHost(load_base(ModelSpec(name=str(tiny_llama))))
    host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "lora", seed=3), name="A"))
    host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "dora", seed=4), name="D"))
    assert host.route(["A", None]).lora is not None
    assert host.route(["D"]).lora is None and host.route(["D"]).adapter_names is None  # DoRA: alone, PEFT's path
    host.multi_lora = "peft"
    assert host.route(["A", None]).adapter_names == ["A", "__base__"]
    # an encoder adapter that also trains its classifier head (modules_to_save) keeps PEFT's per-row heads
    encoder = AdapterHost(load_base(ModelSpec(name=str(tiny_bert)), num_labels=2))
    encoder.add(AdapterSpec(path=adapter_factory(tiny_bert, "encoder", "lora", seed=5), name="E"))
    assert encoder.route(["E", None]).lora is None


def test_layer_forwards_are_restored_after_a_batch(zoo_host: AdapterHost) -> None:
    route = zoo_host.route(["lora_r8", None])
    layers = multi_lora.lora_layers(route.module)
    with route.lora.active():
        assert all("forward" in vars(layer) for layer in layers)
    assert not any("forward" in vars(layer) for layer in layers)


def test_multi_lora_mode_is_not_part_of_the_prediction_key() -> None:
    from harness.registry import task_registry
    from harness.run.runner import settings_for
    from harness.spec import RunSpec

    task = task_registry().get("resume_json")
    facts = {"kind": "causal", "dtype": "float32", "load_in_4bit": False}
    specs = [RunSpec(tasks=("resume_json",), model=ModelSpec(name="smollm2-135m"), multi_lora=mode)
             for mode in ("peft", "batched")]
    assert specs[0] != specs[1]
    assert settings_for(specs[0], task, facts) == settings_for(specs[1], task, facts)


def test_qlora_on_its_4bit_base_equals_peft(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zoo's QLoRA adapter mixed with a plain LoRA on the 4-bit NF4 base (bitsandbytes' CPU kernels)."""
    host = AdapterHost(load_base(ModelSpec(name="smollm2-135m", load_in_4bit=True)))
    for name in ("qlora_r16", "lora_r8"):
        host.add(AdapterSpec(path=ZOO / name, name=name))
    adapters, prompts = _rows(["qlora_r16", "lora_r8"], PROMPTS[:1])  # bitsandbytes' CPU 4-bit kernels are slow
    _assert_exact(host, adapters, prompts, monkeypatch)


@pytest.mark.parametrize("segment_min", [2, 1 << 30])
def test_rows_leaving_the_batch_keep_each_row_on_its_adapter(tiny_llama: Path, adapter_factory, segment_min: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Route.select (rows finish during decoding) gives what a fresh batch of the kept rows gives,
    whether every adapter keeps a row (tables re-indexed) or one leaves (its columns dropped)."""
    monkeypatch.setattr(multi_lora, "SEGMENT_MIN_TOKENS", segment_min)
    host = AdapterHost(load_base(ModelSpec(name=str(tiny_llama))))
    for seed, name in enumerate(("A", "B")):
        host.add(AdapterSpec(path=adapter_factory(tiny_llama, "causal", "lora", seed=60 + seed, r=2 + 3 * seed), name=name))
    rows: list[str | None] = ["A", "A", "B", None, "B"]
    enc = encode(host.base, ["one two", "three", "four five six", "seven", "eight nine"])
    route = host.route(rows)
    with torch.inference_mode():
        for keep in ([0, 2, 3, 4], [0, 1, 3]):
            inputs = {k: v[keep] for k, v in enc.items()}
            inputs["position_ids"] = positions(inputs["attention_mask"])
            chosen = route.select(keep)
            fresh = host.route([rows[i] for i in keep])
            assert torch.equal(chosen(**inputs, use_cache=False).logits, fresh(**inputs, use_cache=False).logits)
