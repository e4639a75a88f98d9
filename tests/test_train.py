"""Recipes and adapter training: every recipe trains two steps on tiny data and round-trips exactly.

Tiny random models (tests/helpers_models.py) keep this fast; one test trains the real SmolLM2 for two
steps on two short examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers_models import tiny_bert, tiny_llama, tiny_t5  # noqa: F401

from harness.errors import HarnessError
from harness.zoo.recipes import ENCODER_BUDGET, TrainBudget, get_recipe, recipe_registry
from harness.spec import ModelSpec
from harness.zoo.train import (
    IGNORE, PadCollator, TrainOverrides, TrainResult, causal_row, encode_examples, keep_4bit_trainable, list_zoo,
    train,
)

# one dev evaluation and one checkpoint, at step 2
TINY = TrainOverrides(max_steps=2, train_limit=4, dev_limit=2, eval_steps=2, batch_size=2, max_seq_length=64)
REQUIRED = {"lora_r1", "lora_r2", "lora_r4", "lora_r8", "lora_r16", "lora_r32", "lora_r64", "qlora_r16",
            "prompt_tuning_n20", "ia3", "dora_r8"}
ALL_RECIPES = recipe_registry().names()


def _train(recipe: str, task: str, base_dir: Path, out: Path, overrides: TrainOverrides = TINY, **kw: Any) -> TrainResult:
    return train(recipe, task, str(base_dir), output=out, overrides=overrides, progress=False, **kw)


def _batch(result: TrainResult, task_name: str) -> dict[str, Any]:
    from harness.data import load_examples
    from harness.registry import task_registry

    task = task_registry().get(task_name)
    rows = encode_examples(task, result.base, load_examples(task, split="test", limit=2), 64).rows
    batch = PadCollator(int(result.base.tokenizer.pad_token_id or 0))(rows)
    batch.pop("labels")
    return batch


def _reloaded_logits(result: TrainResult, base_dir: Path, batch: dict[str, Any]) -> Any:
    """Logits of the saved adapter on a freshly loaded base, as the evaluator would load it."""
    import torch
    from peft import PeftModel

    from harness.run.loading import load_base

    card = result.card
    base = load_base(ModelSpec(name=str(base_dir), load_in_4bit=card.load_in_4bit),
                     num_labels=2 if card.base_kind == "encoder" else None)
    if card.load_in_4bit:
        # bitsandbytes' repacked CPU inference kernel computes in bf16 (logits differ ~1e-1 on a tiny
        # random model); compare on the kernel the adapter was trained with
        keep_4bit_trainable(base.model)
    model = PeftModel.from_pretrained(base.model, str(result.path)).eval()
    with torch.inference_mode():
        return model(**batch).logits


def _logits(model: Any, batch: dict[str, Any]) -> Any:
    import torch

    with torch.inference_mode():
        return model(**batch).logits


# ---------------------------------------------------------------- recipes


def test_zoo_recipes_are_valid_and_complete() -> None:
    assert REQUIRED <= set(ALL_RECIPES)
    methods = {get_recipe(name).method for name in ALL_RECIPES}
    assert {"loha", "lokr", "vera"} <= methods  # at least two methods beyond LoRA/DoRA/IA3/prompt tuning
    r8 = get_recipe("lora_r8")
    assert r8.lora_alpha == 16  # the alpha rule: 2 x rank
    assert get_recipe("lora_r16_rslora").rslora
    assert get_recipe("qlora_r16").load_in_4bit
    # a partial encoder_training changes only the fields it names, over the encoder defaults
    prompt = get_recipe("prompt_tuning_n20")
    assert prompt.encoder_training.learning_rate == 0.03
    assert prompt.encoder_training.batch_size == ENCODER_BUDGET.batch_size
    assert prompt.budget("causal").max_seq_length == TrainBudget().max_seq_length


def test_bad_recipe_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmethod: lora\nrank: 4\nlearning_rat: 0.1\ntargets: {llama: [q_proj]}\n")
    with pytest.raises(HarnessError, match=r"bad\.yaml.*learning_rat"):
        recipe_registry([tmp_path]).get("bad")
    path.write_text("name: bad\nmethod: lora\n")
    with pytest.raises(HarnessError, match=r"bad\.yaml.*targets"):
        recipe_registry([tmp_path]).get("bad")
    with pytest.raises(HarnessError, match="Did you mean 'lora_r8'"):
        get_recipe("lora_r9")


# ---------------------------------------------------------------- features


def test_loss_only_on_completion_with_eos(tiny_llama: Path) -> None:
    from harness.data import load_examples
    from harness.run.loading import load_base
    from harness.registry import task_registry

    task = task_registry().get("hcm_qa")
    base = load_base(ModelSpec(name=str(tiny_llama)))
    example = load_examples(task, split="train", limit=1)
    row = encode_examples(task, base, example, 4096).rows[0]
    prompt_len = sum(1 for label in row["labels"] if label == IGNORE)
    assert prompt_len > 0 and row["labels"][:prompt_len] == [IGNORE] * prompt_len
    assert row["labels"][prompt_len:] == row["input_ids"][prompt_len:]
    assert row["labels"][-1] == base.tokenizer.eos_token_id
    # padding is ignored by the loss
    batch = PadCollator(0)([row, {k: v[:3] for k, v in row.items()}])
    assert batch["labels"][1, 3:].eq(IGNORE).all() and batch["attention_mask"][1, 3:].eq(0).all()


def test_causal_row_cuts_the_prompt_on_the_left() -> None:
    row, cut = causal_row(list(range(100)), [900, 901, 902], 10)
    assert cut and row["input_ids"] == [93, 94, 95, 96, 97, 98, 99, 900, 901, 902]
    row, cut = causal_row([1, 2], list(range(500, 520)), 10)  # a long target keeps the prompt whole
    assert cut and row["input_ids"][:2] == [1, 2] and len(row["input_ids"]) == 10
    assert causal_row([1], [2], 10) == ({"input_ids": [1, 2], "attention_mask": [1, 1], "labels": [IGNORE, 2]}, False)


# ---------------------------------------------------------------- every recipe, two steps, exact round trip


@pytest.mark.parametrize("recipe", ALL_RECIPES)
def test_recipe_trains_and_round_trips_on_causal(recipe: str, tiny_llama: Path, tmp_path: Path) -> None:
    result = _train(recipe, "hcm_qa", tiny_llama, tmp_path / recipe)
    card = json.loads((result.path / "card.json").read_text())
    assert card["steps"] == 2 and card["recipe"] == recipe and card["task"] == "hcm_qa"
    assert card["trainable_params"] > 0 and card["adapter_bytes"] > 0
    assert [step for step, _ in card["train_loss"]] == [1, 2] and [s for s, _ in card["dev_loss"]] == [2]
    assert card["load_in_4bit"] == get_recipe(recipe).load_in_4bit
    batch = _batch(result, "hcm_qa")
    trained = _logits(result.model, batch)
    reloaded = _reloaded_logits(result, tiny_llama, batch)
    assert (trained - reloaded).abs().max().item() == 0.0
    with result.model.disable_adapter():
        base_logits = _logits(result.model, batch)
    # prompt tuning's logits also cover its virtual tokens: compare the real positions
    assert (trained[:, -base_logits.shape[1]:] - base_logits).abs().max().item() > 0  # two steps changed something


def test_encoder_head_is_saved_and_round_trips(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    result = _train("lora_r8", "glue_sst2", tiny_bert, tmp_path / "bert")
    with safe_open(str(result.path / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())
        assert {handle.get_tensor(k).dtype for k in keys} == {__import__("torch").float16}
    assert any("classifier" in key for key in keys) and any("lora_A" in key for key in keys)
    batch = _batch(result, "glue_sst2")
    assert (_logits(result.model, batch) - _reloaded_logits(result, tiny_bert, batch)).abs().max().item() == 0.0
    assert result.card.prompt is None and result.card.base_kind == "encoder"


def test_seq2seq_trains_and_round_trips(tiny_t5: Path, tmp_path: Path) -> None:
    result = _train("lora_r8", "hcm_qa", tiny_t5, tmp_path / "t5")
    batch = _batch(result, "hcm_qa")
    import torch

    batch["decoder_input_ids"] = torch.zeros((batch["input_ids"].shape[0], 1), dtype=torch.long)
    assert (_logits(result.model, batch) - _reloaded_logits(result, tiny_t5, batch)).abs().max().item() == 0.0


# ---------------------------------------------------------------- QLoRA, determinism, resume, zoo


def test_qlora_base_is_really_4bit(tiny_llama: Path, tmp_path: Path) -> None:
    import bitsandbytes as bnb

    result = _train("qlora_r16", "hcm_qa", tiny_llama, tmp_path / "q")
    layers = [m for m in result.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers
    for layer in layers:
        stored = layer.weight.numel() * layer.weight.element_size()
        assert stored * 2 == layer.in_features * layer.out_features  # two 4-bit values per byte
        assert layer.weight.quant_state.quant_type == "nf4" and layer.weight.quant_state.nested  # double quant
    assert result.card.load_in_4bit and result.card.train_loss[0][1] != result.card.train_loss[1][1]


def test_same_seed_same_adapter(tiny_llama: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    first = _train("lora_r4", "hcm_qa", tiny_llama, tmp_path / "a").path
    second = _train("lora_r4", "hcm_qa", tiny_llama, tmp_path / "b").path
    a, b = load_file(str(first / "adapter_model.safetensors")), load_file(str(second / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) == 0.0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_is_recorded_and_the_returned_model_computes_unwrapped(precision: str, tiny_llama: Path,
                                                                          tmp_path: Path) -> None:
    # bf16 trains under accelerate's autocast wrapper; the model handed back must compute like a reload
    result = _train("lora_r4", "hcm_qa", tiny_llama, tmp_path / precision, TINY.model_copy(update={"precision": precision}))
    assert result.card.bf16_autocast is (precision == "bf16")
    batch = _batch(result, "hcm_qa")
    assert (_logits(result.model, batch) - _reloaded_logits(result, tiny_llama, batch)).abs().max().item() == 0.0


def test_resumes_from_last_checkpoint(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    first = _train("lora_r4", "hcm_qa", tiny_llama, out, TINY.model_copy(update={"learning_rate": 1e-3}),
                   keep_checkpoints=True)
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    # a different learning rate would change step 2's loss if the run started over
    again = TINY.model_copy(update={"learning_rate": 0.5, "max_steps": 3})
    second = _train("lora_r4", "hcm_qa", tiny_llama, out, again)
    assert [s for s, _ in second.card.train_loss] == [1, 2, 3]
    assert second.card.train_loss[:2] == first.card.train_loss
    assert not (out / "checkpoints").exists()


def test_list_zoo_reads_cards(tiny_llama: Path, tmp_path: Path) -> None:
    zoo = tmp_path / "zoo"
    _train("lora_r2", "hcm_qa", tiny_llama, zoo / "tiny" / "hcm_qa" / "lora_r2")
    _train("ia3", "hcm_qa", tiny_llama, zoo / "tiny" / "hcm_qa" / "ia3")
    entries = list_zoo(zoo)
    assert [(e.recipe, e.method, e.rank) for e in entries] == [("ia3", "ia3", None), ("lora_r2", "lora", 2)]
    assert all(e.trainable_params > 0 and e.adapter_bytes > 0 and e.trained_at for e in entries)
    (zoo / "tiny" / "hcm_qa" / "ia3" / "card.json").write_text("{}")
    with pytest.raises(HarnessError, match="retrain"):
        list_zoo(zoo)


def test_generation_task_on_an_encoder_is_refused(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="generation task"):
        _train("lora_r8", "hcm_qa", tiny_bert, tmp_path / "x")


def test_real_smollm2_two_steps(tmp_path: Path) -> None:
    # 192 tokens: the resumes' prompts are cut on the left (the truncation path, on a real tokenizer)
    overrides = TrainOverrides(max_steps=2, train_limit=2, dev_limit=1, eval_steps=2, batch_size=1, grad_accum=1,
                               max_seq_length=192)
    result = train("lora_r16", "resume_json", "smollm2-135m", output=tmp_path / "smol", overrides=overrides,
                   progress=False)
    card = result.card
    assert card.base == "smollm2-135m" and card.steps == 2 and card.truncated_examples >= 1
    assert card.trainable_params == 30 * 16 * (576 + 576 + 576 + 192 + 576 + 192 + 576 + 576)
    assert 0 < card.best_dev_loss < 10 and card.best_dev_loss == min(loss for _, loss in card.dev_loss)


def test_encoder_heads_train_the_pooler_with_the_classifier(tiny_bert) -> None:
    """BERT's tanh pooler sits between [CLS] and the classifier: frozen under LoRA it blocks learning."""
    from transformers import AutoModelForSequenceClassification

    from harness.zoo.recipes import encoder_heads

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    assert encoder_heads(model) == ("classifier", "pooler.dense")
    model.bert.pooler = None
    assert encoder_heads(model) == ("classifier",)
