"""Trains one adapter from a recipe on one task (transformers Trainer + PEFT) and lists the zoo.

`train_adapter("lora_r16", "resume_json")` writes `adapters_zoo/<base>/<task>/<recipe>/`:
the PEFT adapter (adapter_config.json + adapter_model.safetensors) and `card.json` (what was trained,
on what, for how long, with which losses). What it does, and why:

* Causal LMs learn the completion only: labels are -100 on the prompt and on padding, and EOS is
  appended to a generation target so the model learns to stop. The prompt is tokenized on its own,
  as the engine tokenizes it at inference time. Seq2seq models get the prompt as encoder input.
* Encoders (MiniLM) are trained as sequence classifiers; the fresh head, and the pooler in front of it
  when the encoder has one, are trained in full and saved with the adapter
  (`modules_to_save=["classifier", "pooler.dense"]`).
* Dev loss every `eval_steps` optimizer steps, early stopping after `patience` evaluations without
  improvement, the best checkpoint restored at the end. Tasks without a dev split hold out the tail
  of their train split.
* Interrupted runs resume from the last checkpoint in `<output>/checkpoints/`; a finished run
  deletes its checkpoints (optimizer states are many times the adapter's size).
* Seeded: the same recipe, task, base and seed give the same adapter weights (on one machine).
* Adapter weights are saved in float16 by default (half the zoo's size). The in-memory model is
  rounded to the saved values, so it and a reloaded adapter give identical logits; card.json's dev
  loss is the best checkpoint's, measured before that rounding.
* QLoRA (`load_in_4bit`): bitsandbytes repacks 4-bit weights for a fast CPU kernel on the first
  no-grad forward (the dev-loss evaluation), and that kernel has no backward, so training silently
  stops learning afterwards. We switch the repacking off on the model we train.

torch/transformers/peft are imported inside functions: the CLI imports this module at startup.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.errors import HarnessError
from harness.run.bases import MINILM, SMOLLM2
from harness.run.loading import LoadedBase, load_base
from harness.zoo.recipes import Recipe, TrainBudget, encoder_heads, get_recipe, peft_config
from harness.registry import PROJECT_ROOT, task_registry
from harness.spec import Example, Frozen, ModelSpec, TaskSpec

if TYPE_CHECKING:
    import torch

ZOO_DIR = PROJECT_ROOT / "adapters_zoo"
CARD_FILE = "card.json"
CHECKPOINTS = "checkpoints"
SaveDtype = Literal["float16", "float32"]
IGNORE = -100  # label id the loss skips


class TrainOverrides(Frozen):
    """Command-line overrides of a recipe's budget (None keeps the recipe's value)."""

    max_steps: int | None = Field(None, ge=1)
    train_limit: int | None = Field(None, ge=1)
    dev_limit: int | None = Field(None, ge=1)
    epochs: float | None = Field(None, gt=0)
    max_seq_length: int | None = Field(None, ge=8)
    eval_steps: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    grad_accum: int | None = Field(None, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    seed: int | None = None
    precision: Literal["auto", "fp32", "bf16"] | None = None

    def apply(self, budget: TrainBudget) -> TrainBudget:
        names = {"train_limit": "max_train_examples", "dev_limit": "max_dev_examples"}
        update = {names.get(k, k): v for k, v in self.model_dump().items() if v is not None}
        return budget.model_copy(update=update)


class AdapterCard(Frozen):
    """card.json: everything needed to know what an adapter is and to evaluate it as trained."""

    base: str
    base_weights_hash: str
    base_kind: str
    load_in_4bit: bool  # QLoRA: evaluate on the 4-bit base it was trained on
    recipe: str
    recipe_spec: dict[str, Any]
    method: str
    rank: int | None
    task: str
    prompt: str | None
    train_data_hash: str
    dev_data_hash: str
    train_examples: int
    dev_examples: int
    truncated_examples: int  # examples cut to max_seq_length
    budget: TrainBudget
    steps: int
    epochs: float
    stopped_early: bool
    wall_time_s: float
    trainable_params: int
    adapter_bytes: int
    save_dtype: str
    bf16_autocast: bool = False  # trained under bf16 autocast (budget.precision resolved on this machine)
    train_loss: list[tuple[int, float]]  # (optimizer step, loss)
    dev_loss: list[tuple[int, float]]
    best_dev_loss: float  # of the saved (best) checkpoint, before rounding to save_dtype
    trained_at: str
    versions: dict[str, str]


@dataclass(frozen=True)
class ZooEntry:
    path: Path
    base: str
    task: str
    recipe: str
    method: str
    rank: int | None
    trainable_params: int
    adapter_bytes: int
    load_in_4bit: bool
    best_dev_loss: float
    trained_at: str


# ---------------------------------------------------------------- choosing base, data, folder


def default_model(task: TaskSpec) -> str:
    """Classification tasks train the MiniLM encoder (22M, fast); generation tasks SmolLM2."""
    return MINILM if task.choices else SMOLLM2


def base_folder_name(model_name: str) -> str:
    return Path(model_name).name.lower() or "model"


def adapter_folder(zoo_dir: Path, model_name: str, task: str, recipe: str) -> Path:
    return zoo_dir / base_folder_name(model_name) / task / recipe


def split_examples(task: TaskSpec, budget: TrainBudget) -> tuple[list[Example], list[Example]]:
    """(train, dev): the dev split when the task has one, else the train split's tail held out."""
    from harness.data import load_examples

    pool = load_examples(task, split="train")
    if "dev" in task.splits:
        dev = load_examples(task, split="dev", limit=budget.max_dev_examples)
    else:
        if len(pool) < 2:
            raise HarnessError(f"Task '{task.name}' has {len(pool)} train examples and no dev split; it needs at least 2 to train.")
        held = min(budget.max_dev_examples, max(1, len(pool) // 10))
        pool, dev = pool[:-held], pool[-held:]
    # A seeded shuffle: GLUE train files are not always shuffled, and max_train_examples takes a prefix.
    order = random.Random(budget.seed).sample(range(len(pool)), len(pool))
    train = [pool[i] for i in order[: budget.max_train_examples]]
    if not train or not dev:
        raise HarnessError(f"Task '{task.name}' gave no train or dev examples; check HARNESS_DATA_DIR.")
    return train, dev


# ---------------------------------------------------------------- features


@dataclass(frozen=True)
class Features:
    rows: list[dict[str, Any]]
    truncated: int


def encode_examples(task: TaskSpec, base: LoadedBase, examples: list[Example], max_len: int) -> Features:
    """Token ids (and labels) for each example, as the base's kind needs them."""
    from harness.prompts import classify_texts, render, target_text

    tok = base.tokenizer
    rows: list[dict[str, Any]] = []
    truncated = 0
    for example in examples:
        if base.kind == "encoder":
            text, pair = classify_texts(task, example)
            enc = tok(text, pair, truncation=True, max_length=max_len)
            row = {k: list(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
            truncated += len(tok(text, pair)["input_ids"]) > max_len
            rows.append(row | {"labels": int(example.label if example.label is not None else 0)})
            continue
        prompt_ids = list(tok(render(task, example, tokenizer=tok))["input_ids"])
        target_ids = list(tok(target_text(task, example), add_special_tokens=False)["input_ids"])
        if task.output_type == "generate_until" and tok.eos_token_id is not None:
            target_ids.append(tok.eos_token_id)  # learn to stop
        builder = causal_row if base.kind == "causal" else seq2seq_row
        row, was_cut = builder(prompt_ids, target_ids, max_len)
        truncated += was_cut
        rows.append(row)
    return Features(rows=rows, truncated=truncated)


def causal_row(prompt: list[int], target: list[int], max_len: int) -> tuple[dict[str, Any], bool]:
    """Prompt then target in max_len tokens; loss on the target tokens only.

    When too long, the target keeps what the prompt leaves of the window, but the prompt keeps at
    least half of it, cut on the LEFT: its end (e.g. "###json:") is what leads into the answer.
    """
    cut = len(prompt) + len(target) > max_len
    if cut:
        keep_target = max(1, min(len(target), max_len - min(len(prompt), max_len // 2)))
        target = target[:keep_target]
        prompt = prompt[len(prompt) - (max_len - keep_target):]
    ids = prompt + target
    labels = [IGNORE] * len(prompt) + target
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}, cut


def seq2seq_row(prompt: list[int], target: list[int], max_len: int) -> tuple[dict[str, Any], bool]:
    cut = len(prompt) > max_len or len(target) > max_len
    ids = prompt[:max_len]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target[:max_len]}, cut


class PadCollator:
    """Right-pads every list field of a batch: input ids with pad, labels with -100, masks with 0."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        batch: dict[str, torch.Tensor] = {}
        for key in rows[0]:
            values = [row[key] for row in rows]
            if not isinstance(values[0], list):
                batch[key] = torch.tensor(values, dtype=torch.long)
                continue
            fill = {"input_ids": self.pad_id, "labels": IGNORE}.get(key, 0)
            width = max(len(v) for v in values)
            batch[key] = torch.tensor([v + [fill] * (width - len(v)) for v in values], dtype=torch.long)
        return batch


# ---------------------------------------------------------------- model


def build_peft_model(recipe: Recipe, base: LoadedBase, task: TaskSpec, seed: int) -> Any:
    """The base wrapped for training; the adapter's random init is seeded."""
    import transformers
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = base.model
    drop_gguf_marker(model)
    if recipe.load_in_4bit:
        keep_4bit_trainable(model)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = peft_config(
        recipe, base.kind, model.config.model_type, task, tokenizer_path=str(model.name_or_path), encoder_heads=encoder_heads(model)
    )
    transformers.set_seed(seed)
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model"
        raise HarnessError(f"Recipe '{recipe.name}' does not fit base '{base.name}' ({str(exc).splitlines()[0]}); fix its targets.") from exc
    peft_model.train()
    return peft_model


def drop_gguf_marker(model: Any) -> None:
    """Forget a `gguf` quantization_config carried over by a GGUF conversion: the weights are plain floats,
    but Trainer refuses to train a model that says it is GGUF-quantized."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = str(getattr(getattr(quantizer, "quantization_config", None), "quant_method", "")).lower()
    if quantizer is not None and method.endswith("gguf"):
        quantizer.remove_quantization_config(model)


def keep_4bit_trainable(model: Any) -> None:
    """Stop bitsandbytes repacking 4-bit weights for its no-grad CPU kernel (see module docstring)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def round_trainable(model: Any, dtype: SaveDtype) -> None:
    """Round trainable weights to the dtype they will be saved in, so memory equals the file."""
    import torch

    target = getattr(torch, dtype)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.is_floating_point():
                param.copy_(param.to(target).to(param.dtype))


def save_adapter(model: Any, out: Path, dtype: SaveDtype) -> None:
    """save_pretrained in safetensors, trainable tensors stored as `dtype` (frozen buffers as they are)."""
    import torch

    target = getattr(torch, dtype)
    originals = {name: p.data for name, p in model.named_parameters() if p.requires_grad and p.is_floating_point()}
    try:
        for name, param in model.named_parameters():
            if name in originals:
                param.data = originals[name].to(target)
        model.save_pretrained(str(out), safe_serialization=True)
    finally:
        for name, param in model.named_parameters():
            if name in originals:
                param.data = originals[name]


# ---------------------------------------------------------------- trainer


def _progress_callback(enabled: bool) -> Any:
    """Trainer's tqdm bar, showing the latest losses on the bar instead of printing log lines."""
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if self.training_bar is not None and logs:
                shown = {k: f"{v:.4g}" for k, v in logs.items() if k in ("loss", "eval_loss")}
                if shown:
                    self.training_bar.set_postfix(shown, refresh=False)

    return QuietProgress() if enabled else None


def make_trainer(model: Any, budget: TrainBudget, train: Features, dev: Features, out: Path, base: LoadedBase,
                 progress: bool) -> Any:
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    per_epoch = max(1, -(-len(train.rows) // (budget.batch_size * budget.grad_accum)))
    total = budget.max_steps if budget.max_steps > 0 else max(1, int(per_epoch * budget.epochs + 0.999))
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=budget.batch_size, per_device_eval_batch_size=budget.batch_size,
        gradient_accumulation_steps=budget.grad_accum, learning_rate=budget.learning_rate,
        num_train_epochs=budget.epochs, max_steps=budget.max_steps, weight_decay=budget.weight_decay,
        warmup_steps=int(budget.warmup_ratio * total), lr_scheduler_type="linear",
        eval_strategy="steps", eval_steps=budget.eval_steps, save_strategy="steps", save_steps=budget.eval_steps,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        logging_steps=1, logging_first_step=True, seed=budget.seed, data_seed=budget.seed, report_to=[],
        use_cpu=base.device.type == "cpu", dataloader_num_workers=0, remove_unused_columns=False,
        label_names=["labels"], disable_tqdm=True, save_only_model=False,
        bf16=uses_bf16(budget, base), fp16=False,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train.rows, eval_dataset=dev.rows,
        data_collator=PadCollator(int(base.tokenizer.pad_token_id or 0)),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=budget.patience)],
    )
    # Printing belongs to the CLI: drop the log printers, keep (optionally) the bar.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    bar = _progress_callback(progress)
    if bar is not None:
        trainer.add_callback(bar)
    return trainer


def uses_bf16(budget: TrainBudget, base: LoadedBase) -> bool:
    """bf16 autocast for the budget's precision on this device (see TrainBudget.precision).

    Measured on a 2-core AMX CPU, SmolLM2 LoRA r16, 4 x 320 tokens: 189 tokens/s in fp32, 241 with bf16
    autocast. A QLoRA base computes in its own compute dtype, so it keeps fp32 autocast-free training.
    """
    import torch

    if budget.precision != "auto" or base.spec.load_in_4bit:
        return budget.precision == "bf16"
    if base.device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if base.device.type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


# ---------------------------------------------------------------- the entry point


@dataclass
class TrainResult:
    path: Path
    card: AdapterCard
    model: Any  # the trained PeftModel, its weights rounded to the saved dtype (equal to the file)
    base: LoadedBase


def train_adapter(
    recipe_name: str,
    task_name: str,
    model_name: str | None = None,
    output: Path | None = None,
    overrides: TrainOverrides = TrainOverrides(),
    zoo_dir: Path = ZOO_DIR,
    save_dtype: SaveDtype = "float16",
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> Path:
    """Train `recipe_name` on `task_name` and return the adapter folder (see the module docstring)."""
    return train(recipe_name, task_name, model_name, output, overrides, zoo_dir, save_dtype, progress,
                 keep_checkpoints).path


def train(
    recipe_name: str,
    task_name: str,
    model_name: str | None = None,
    output: Path | None = None,
    overrides: TrainOverrides = TrainOverrides(),
    zoo_dir: Path = ZOO_DIR,
    save_dtype: SaveDtype = "float16",
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> TrainResult:
    """train_adapter, also returning the card and the trained model (for tests and notebooks)."""
    recipe = get_recipe(recipe_name)
    task = task_registry().get(task_name)
    model_name = model_name or default_model(task)
    base = load_base(ModelSpec(name=model_name, load_in_4bit=recipe.load_in_4bit),
                     num_labels=len(task.choices) if task.choices else None)
    if base.kind == "encoder" and not task.choices:
        raise HarnessError(f"Task '{task.name}' is a generation task and '{model_name}' is an encoder; train it on a causal or seq2seq model.")
    budget = overrides.apply(recipe.budget(base.kind))
    out = Path(output) if output is not None else adapter_folder(zoo_dir, model_name, task.name, recipe.name)
    out.mkdir(parents=True, exist_ok=True)

    train_examples, dev_examples = split_examples(task, budget)
    train_rows = encode_examples(task, base, train_examples, budget.max_seq_length)
    dev_rows = encode_examples(task, base, dev_examples, budget.max_seq_length)
    model = build_peft_model(recipe, base, task, budget.seed)
    trainer = make_trainer(model, budget, train_rows, dev_rows, out, base, progress)

    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=last_checkpoint(out))
    wall = time.perf_counter() - started
    curves = loss_curves(trainer.state.log_history)

    # Trainer evaluates at the last step too, so the best checkpoint (now loaded) has a dev loss.
    best = trainer.state.best_metric
    final_dev = float(best) if best is not None else float(trainer.evaluate()["eval_loss"])
    # Under bf16, accelerate wrapped model.forward in autocast; the model we return and save must not be.
    model = trainer.accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    round_trainable(model, save_dtype)
    model.eval()
    save_adapter(model, out, save_dtype)
    card = make_card(recipe, task, base, budget, trainer, model, out, save_dtype, wall, final_dev, curves,
                     (train_examples, dev_examples), train_rows.truncated + dev_rows.truncated)
    (out / CARD_FILE).write_text(json.dumps(card.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8")
    if not keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return TrainResult(path=out, card=card, model=model, base=base)


def loss_curves(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if "loss" in e and "step" in e]
    dev = [(int(e["step"]), float(e["eval_loss"])) for e in log_history if "eval_loss" in e and "step" in e]
    return train, dev


Curve = list[tuple[int, float]]


def make_card(recipe: Recipe, task: TaskSpec, base: LoadedBase, budget: TrainBudget, trainer: Any, model: Any,
              out: Path, save_dtype: SaveDtype, wall: float, final_dev: float, curves: tuple[Curve, Curve],
              data: tuple[list[Example], list[Example]], truncated: int) -> AdapterCard:
    import peft
    import torch
    import transformers

    from harness.data import data_fingerprint

    state = trainer.state
    trainable, _ = model.get_nb_trainable_parameters()
    weights = out / "adapter_model.safetensors"
    return AdapterCard(
        base=base.name, base_weights_hash=base.weights_hash, base_kind=base.kind, load_in_4bit=recipe.load_in_4bit,
        recipe=recipe.name, recipe_spec=recipe.model_dump(mode="json", exclude={"folder"}), method=recipe.method,
        rank=recipe.effective_rank, task=task.name, prompt=None if base.kind == "encoder" else task.default_prompt,
        train_data_hash=data_fingerprint(data[0]), dev_data_hash=data_fingerprint(data[1]),
        train_examples=len(data[0]), dev_examples=len(data[1]), truncated_examples=truncated, budget=budget,
        steps=int(state.global_step), epochs=round(float(state.epoch or 0.0), 4),
        stopped_early=state.global_step < state.max_steps,
        wall_time_s=round(wall, 2), trainable_params=int(trainable), adapter_bytes=weights.stat().st_size,
        save_dtype=save_dtype, bf16_autocast=bool(trainer.args.bf16), train_loss=curves[0], dev_loss=curves[1],
        best_dev_loss=final_dev,
        trained_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        versions={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    )


# ---------------------------------------------------------------- the zoo


def read_card(path: Path) -> AdapterCard:
    from pydantic import ValidationError

    try:
        return AdapterCard.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise HarnessError(f"Adapter card '{path}' is unreadable or invalid ({str(exc).splitlines()[0]}); retrain that adapter.") from exc


def list_zoo(zoo_dir: Path = ZOO_DIR) -> list[ZooEntry]:
    """Every trained adapter below zoo_dir (folders with card.json), sorted by base, task, recipe."""
    entries: list[ZooEntry] = []
    if not zoo_dir.is_dir():
        return entries
    for path in sorted(zoo_dir.rglob(CARD_FILE)):
        if CHECKPOINTS in path.parts:
            continue
        card = read_card(path)
        entries.append(ZooEntry(
            path=path.parent, base=card.base, task=card.task, recipe=card.recipe, method=card.method, rank=card.rank,
            trainable_params=card.trainable_params, adapter_bytes=card.adapter_bytes, load_in_4bit=card.load_in_4bit,
            best_dev_loss=card.best_dev_loss, trained_at=card.trained_at,
        ))
    return sorted(entries, key=lambda e: (e.base, e.task, e.recipe))
