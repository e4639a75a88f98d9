"""The batched engine: batch-size and batch-mix invariance, stop handling, early exit, scoring, classify."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_models import adapter_factory, single_thread, tiny_bert, tiny_llama, tiny_t5  # noqa: F401

from harness.run.engine import (
    ChoiceRequest,
    ChoiceResult,
    ClassifyRequest,
    GenRequest,
    GenResult,
    classify,
    encode_pair,
    generate_until,
    multiple_choice,
)
from harness.errors import HarnessError
from harness.run.adapter_host import AdapterHost
from harness.run.loading import load_base
from harness.spec import AdapterSpec, GenerationSettings, ModelSpec

PROMPTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog and",
    "a resume lists name email phone",
    "summarise",
    "which museum in ho chi minh city shows",
    "json fields name email skills python",
    "yes no positive",
    "fine, thanks: 1 2 3",
]
GREEDY = GenerationSettings(max_new_tokens=10)


def _host(folder: Path, kind: str, factory, methods: dict[str, str], num_labels: int | None = None) -> AdapterHost:
    host = AdapterHost(load_base(ModelSpec(name=str(folder)), num_labels=num_labels))
    for name, method in methods.items():
        # the seed follows the name, so "B" is the same adapter in every host
        host.add(AdapterSpec(path=factory(folder, kind, method, seed=sum(map(ord, name))), name=name))
    return host


def _generate(host: AdapterHost, requests: list[GenRequest], batch_size: int,
              settings: GenerationSettings = GREEDY) -> dict[str, GenResult]:
    out: dict[str, GenResult] = {}
    generate_until(host, requests, settings, batch_size, lambda r: out.__setitem__(r.key, r))
    assert len(out) == len(requests)
    return out


def _texts(results: dict[str, GenResult]) -> dict[str, str]:
    return {k: v.text for k, v in results.items()}


@pytest.fixture(scope="module")
def llama_host(tiny_llama: Path, adapter_factory) -> AdapterHost:
    return _host(tiny_llama, "causal", adapter_factory,
                 {"A": "lora", "B": "lora", "D": "dora", "I": "ia3", "soft": "prompt"})


def _requests(adapters: list[str | None], prompts: list[str] = PROMPTS) -> list[GenRequest]:
    return [GenRequest(f"{a}|{i}", p, a) for a in adapters for i, p in enumerate(prompts)]


def test_batch_size_does_not_change_greedy_text(llama_host: AdapterHost) -> None:
    requests = _requests([None, "A", "B", "D", "I", "soft"])
    one = _generate(llama_host, requests, 1)
    eight = _generate(llama_host, requests, 8)
    assert _texts(one) == _texts(eight)
    assert {r.new_tokens for r in one.values()} <= set(range(1, 11))
    assert one["None|0"].prompt_tokens == len(llama_host.base.tokenizer("hello world")["input_ids"])
    # adapters really change the text (else the invariance above would be vacuous)
    assert len({one[f"{a}|1"].text for a in [None, "A", "B", "D", "I", "soft"]}) >= 5


def test_mixed_batch_equals_adapter_alone(llama_host: AdapterHost, tiny_llama: Path, adapter_factory) -> None:
    mixed = _generate(llama_host, _requests([None, "A", "B"]), 24)
    alone = _host(tiny_llama, "causal", adapter_factory, {"B": "lora"})
    # alone, B's batches hold only B rows
    b_alone = _generate(alone, _requests(["B"]), 8)
    assert {k: v for k, v in _texts(mixed).items() if k.startswith("B|")} == _texts(b_alone)
    base_alone = _generate(AdapterHost(llama_host.base), _requests([None]), 8)
    assert {k: v for k, v in _texts(mixed).items() if k.startswith("None|")} == _texts(base_alone)


def test_decode_loop_matches_transformers_generate(llama_host: AdapterHost) -> None:
    base = llama_host.base
    ours = _generate(AdapterHost(base), _requests([None]), 8)
    for i, prompt in enumerate(PROMPTS):
        enc = base.tokenizer(prompt, return_tensors="pt")
        ids = base.model.generate(**enc, max_new_tokens=10, do_sample=False)[0, enc["input_ids"].shape[1] :]
        assert ours[f"None|{i}"].text == base.tokenizer.decode(ids, skip_special_tokens=True)


def test_stop_string_cuts_text_and_reports_early(llama_host: AdapterHost) -> None:
    base_only = AdapterHost(llama_host.base)
    free = _generate(base_only, _requests([None]), 8, GenerationSettings(max_new_tokens=12))
    text = free["None|1"].text
    stop = text[3:6]
    assert stop and text.find(stop) >= 3
    sizes: list[int] = []
    hook = base_only.base.model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0] if kw.get("input_ids") is not None else kw["inputs_embeds"].shape[0]), with_kwargs=True)
    order: list[str] = []
    try:
        results: dict[str, GenResult] = {}

        def record(result: GenResult) -> None:
            order.append(result.key)
            results[result.key] = result

        generate_until(base_only, _requests([None]), GenerationSettings(max_new_tokens=12, stop=(stop,)), 8, record)
    finally:
        hook.remove()
    assert results["None|1"].text == text[: text.find(stop)]
    assert results["None|1"].new_tokens < free["None|1"].new_tokens
    stopped = [k for k in order if results[k].new_tokens < 12]
    assert order[: len(stopped)] == stopped  # finished rows are reported as soon as they finish
    # finished rows left the batch: later forwards ran on fewer rows
    assert sizes[0] == 8 and min(sizes) < 8


def test_sampling_is_seeded(llama_host: AdapterHost) -> None:
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.9, top_p=0.9)
    torch.manual_seed(0)
    first = _generate(llama_host, _requests([None, "A"]), 4, settings)
    torch.manual_seed(0)
    assert _texts(_generate(llama_host, _requests([None, "A"]), 4, settings)) == _texts(first)


def test_seq2seq_generation(tiny_t5: Path, adapter_factory) -> None:
    host = _host(tiny_t5, "seq2seq", adapter_factory, {"A": "lora", "I": "ia3", "soft": "prompt"})
    requests = _requests([None, "A", "I", "soft"], PROMPTS[:4])
    one = _generate(host, requests, 1)
    assert _texts(one) == _texts(_generate(host, requests, 4))
    assert len({one[f"{a}|1"].text for a in [None, "A", "I", "soft"]}) >= 3
    base = host.base
    enc = base.tokenizer(PROMPTS[1], return_tensors="pt")
    ids = base.model.generate(**enc, max_new_tokens=10, do_sample=False)[0]
    assert one["None|1"].text == base.tokenizer.decode(ids, skip_special_tokens=True)


def _choices(host: AdapterHost, requests: list[ChoiceRequest], batch_size: int) -> dict[str, ChoiceResult]:
    out: dict[str, ChoiceResult] = {}
    multiple_choice(host, requests, batch_size, lambda r: out.__setitem__(r.key, r))
    assert len(out) == len(requests)
    return out


def test_encode_pair_moves_trailing_space(llama_host: AdapterHost) -> None:
    base = llama_host.base
    ctx, cont = encode_pair(base, "the answer is ", "yes")
    assert base.tokenizer.decode(ctx) == "the answer is"
    assert base.tokenizer.decode(cont) == " yes"


def test_multiple_choice_scores(llama_host: AdapterHost) -> None:
    requests = [ChoiceRequest(f"{a}|{i}", p + " answer:", (" yes", " no", " maybe so"), a)
                for a in [None, "A", "soft", "I"] for i, p in enumerate(PROMPTS[:4])]
    one = _choices(llama_host, requests, 1)
    many = _choices(llama_host, requests, 16)
    for key, result in one.items():
        torch.testing.assert_close(torch.tensor(many[key].scores), torch.tensor(result.scores), rtol=0, atol=1e-4)
        assert result.choice == max(range(3), key=lambda j: result.scores[j])
    # the summed log-likelihood equals a direct, unbatched computation on the base
    base = llama_host.base
    ctx, cont = encode_pair(base, requests[1].prompt, requests[1].choices[2])
    with torch.inference_mode():
        logits = base.model(torch.tensor([ctx + cont])).logits[0, len(ctx) - 1 : -1]
    direct = float(torch.log_softmax(logits, -1).gather(-1, torch.tensor(cont)[:, None]).sum())
    assert one["None|1"].scores[2] == pytest.approx(direct, abs=1e-4)
    assert one["A|1"].scores != one["None|1"].scores


def test_multiple_choice_seq2seq(tiny_t5: Path, adapter_factory) -> None:
    host = _host(tiny_t5, "seq2seq", adapter_factory, {"A": "lora"})
    requests = [ChoiceRequest(f"{a}|{i}", p, ("yes", "no"), a) for a in [None, "A"] for i, p in enumerate(PROMPTS[:3])]
    one, many = _choices(host, requests, 1), _choices(host, requests, 8)
    for key in one:
        torch.testing.assert_close(torch.tensor(many[key].scores), torch.tensor(one[key].scores), rtol=0, atol=1e-4)
    base = host.base
    enc = base.tokenizer(PROMPTS[0], return_tensors="pt")
    labels = base.tokenizer("yes", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        loss = base.model(**enc, labels=labels).loss
    assert one["None|0"].scores[0] == pytest.approx(-float(loss) * labels.shape[1], abs=1e-4)


def test_classify(tiny_bert: Path, adapter_factory) -> None:
    host = _host(tiny_bert, "encoder", adapter_factory, {"A": "lora", "soft": "prompt"}, num_labels=2)
    requests = [ClassifyRequest(f"{a}|{i}", p, "a pair" if i % 2 else None, a)
                for a in [None, "A", "soft"] for i, p in enumerate(PROMPTS)]
    results: dict[str, ChoiceResult] = {}
    classify(host, requests, 1, lambda r: results.__setitem__(r.key, r))
    batched: dict[str, ChoiceResult] = {}
    classify(host, requests, 16, lambda r: batched.__setitem__(r.key, r))
    for key, result in results.items():  # rows with and without a pair share batches: ~3e-7 apart
        torch.testing.assert_close(torch.tensor(batched[key].scores), torch.tensor(result.scores), rtol=0, atol=1e-5)
        assert batched[key].choice == result.choice
    base = host.base
    with torch.inference_mode():
        direct = base.model(**base.tokenizer(PROMPTS[1], "a pair", return_tensors="pt")).logits[0]
    torch.testing.assert_close(torch.tensor(results["None|1"].scores), direct, rtol=0, atol=1e-5)
    assert results["A|1"].scores != results["None|1"].scores


def test_wrong_output_type_for_kind(llama_host: AdapterHost, tiny_bert: Path) -> None:
    with pytest.raises(HarnessError, match="use output_type 'multiple_choice'"):
        classify(llama_host, [ClassifyRequest("k", "t", None, None)], 1, lambda r: None)
    bert = AdapterHost(load_base(ModelSpec(name=str(tiny_bert))))
    with pytest.raises(HarnessError, match="cannot generate text"):
        generate_until(bert, [GenRequest("k", "t", None)], GREEDY, 1, lambda r: None)


@pytest.mark.slow
def test_smollm2_batch_invariance() -> None:
    """Real SmolLM2: batch 1 vs 4 greedy token-identical, and equal to transformers' generate."""
    base = load_base(ModelSpec(name="smollm2-135m"))
    host = AdapterHost(base)
    prompts = ["The capital of France is", "List three colors:", "def add(a, b):", "Once upon a time, in a small village,"]
    requests = [GenRequest(str(i), p, None) for i, p in enumerate(prompts)]
    settings = GenerationSettings(max_new_tokens=12)
    one, four = _generate(host, requests, 1, settings), _generate(host, requests, 4, settings)
    assert _texts(one) == _texts(four)
    enc = base.tokenizer(prompts[0], return_tensors="pt")
    ids = base.model.generate(**enc, max_new_tokens=12, do_sample=False)[0, enc["input_ids"].shape[1] :]
    assert one["0"].text == base.tokenizer.decode(ids, skip_special_tokens=True)
    assert "Paris" in one["0"].text
