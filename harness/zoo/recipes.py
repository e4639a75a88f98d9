"""Adapter recipes: how to make one adapter (PEFT method, its shape, its training budget).

A recipe is `adapters_zoo/recipes/<name>.yaml`, validated like a task spec (frozen pydantic model,
extra fields refused, a bad field is one sentence naming the file and the field). Recipes are
model-independent: target modules are listed per model family (Llama-style, BERT-style, T5) and the
training budget per model kind, so `lora_r8` means the same thing on SmolLM2 and on MiniLM.

Alpha rule: `alpha` defaults to 2 x rank (the common LoRA convention, scaling alpha/r = 2 at every
rank, so a rank sweep compares ranks and not learning-rate scales). With `rslora: true` PEFT scales
by alpha/sqrt(r) instead (rank-stabilised LoRA).

peft is imported inside `peft_config` only: the CLI imports this module at startup.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.errors import HarnessError
from harness.registry import PROJECT_ROOT, SpecRegistry
from harness.spec import Frozen, ModelKind, TaskSpec

RECIPES_DIR = PROJECT_ROOT / "adapters_zoo" / "recipes"

Method = Literal["lora", "dora", "ia3", "prompt_tuning", "loha", "lokr", "vera"]
# Methods whose size is a rank: the others ignore `rank`.
RANKED = frozenset({"lora", "dora", "loha", "lokr", "vera"})

# model_type -> family; a recipe's `targets` is keyed by family (or by an exact model_type).
FAMILIES: dict[str, str] = {
    **{t: "llama" for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "smollm3")},
    **{t: "bert" for t in ("bert", "roberta", "xlm-roberta", "camembert", "electra")},
    **{t: "t5" for t in ("t5", "mt5", "umt5")},
}
PEFT_TASK_TYPES: dict[ModelKind, str] = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM", "encoder": "SEQ_CLS"}


class TrainBudget(Frozen):
    """How much training one adapter gets; the defaults are the zoo's SmolLM2 budget (see report)."""

    # SmolLM2 default: 320 resumes x ~300 tokens = 40 steps of 8, ~100k trained tokens: 10 min at the ~165
    # tokens/s a 2-core AMX CPU trains SmolLM2 LoRA at under bf16 autocast. Measured: lora_r16 with this budget
    # reaches dev loss 0.095 and json_valid 0.95 on 20 test resumes; 160 examples at lr 5e-4 gave 0.48 / 0.65.
    max_train_examples: int | None = Field(320, ge=1)  # None: the whole train split
    max_dev_examples: int = Field(16, ge=1)  # held out from train when the task has no dev split
    max_seq_length: int = Field(384, ge=8)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)  # > 0 overrides epochs
    learning_rate: float = Field(1e-3, gt=0)  # LoRA-family; a 40-step budget wants the upper end
    batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(2, ge=1)
    eval_steps: int = Field(10, ge=1)  # dev loss, checkpoint and early-stopping check every N optimizer steps
    patience: int = Field(3, ge=1)  # evaluations without dev-loss improvement before stopping
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    seed: int = 0
    # "auto": bf16 autocast where the hardware has fast bf16 matmuls (CUDA with bf16, CPUs with AMX or
    # AVX512-BF16), fp32 elsewhere. Adapter weights and optimizer state stay fp32 either way.
    precision: Literal["auto", "fp32", "bf16"] = "auto"


# MiniLM (22M) on GLUE: 4000 examples (the whole train split when smaller), one epoch of batches of 16
# (<= 250 steps), lr 2e-3, a 128-sentence dev pass every 50 steps; the recipes put LoRA on every BERT linear
# layer and the pooler is trained with the head (`encoder_heads`). Measured with lora_r8 on the full dev sets,
# fp32 on 1 thread: SST-2 0.833 accuracy (255 s of training), MRPC 0.723 accuracy / 0.809 F1 (~520 s), CoLA
# still all "acceptable" (MCC 0, 8551 examples, ~340 s). The old budget (1600 examples, 100 steps, lr 3e-3,
# frozen pooler, LoRA on query/value) learnt only the class prior on MRPC, CoLA and RTE, 0.77-0.80 on SST-2.
# Ranks 16 and 64 override the learning rate (2e-3 x min(1, sqrt(4/r))): with alpha = 2r the update grows with
# the rank, and at 2e-3 rank 64 collapsed to chance on SST-2 (see adapters_zoo/recipes/lora_r64.yaml).
ENCODER_BUDGET = TrainBudget(
    max_train_examples=4000, max_dev_examples=128, max_seq_length=128, epochs=1.0, learning_rate=2e-3,
    batch_size=16, grad_accum=1, eval_steps=50, patience=3,
)


class Recipe(Frozen):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    method: Method
    rank: int = Field(8, ge=1)
    alpha: float | None = Field(None, gt=0)  # None: 2 x rank (the alpha rule above)
    rslora: bool = False
    dropout: float = Field(0.05, ge=0, lt=1)
    # QLoRA: the base is loaded in 4-bit NF4 with double quantization and evaluated that way too.
    load_in_4bit: bool = False
    # family (llama, bert, t5) or exact model_type -> module names the adapter attaches to
    targets: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # IA3: which of the targets are feed-forward (scaled on their input, not their output)
    feedforward: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # prompt tuning: number of virtual tokens and the text they start from ("" -> the task description)
    num_virtual_tokens: int = Field(20, ge=1)
    init_text: str = ""
    training: TrainBudget = TrainBudget()
    encoder_training: TrainBudget = ENCODER_BUDGET
    folder: Path | None = None  # set by the registry

    @model_validator(mode="before")
    @classmethod
    def _encoder_fields_over_encoder_defaults(cls, data: Any) -> Any:
        # `encoder_training: {learning_rate: 0.03}` changes one field of ENCODER_BUDGET, not of TrainBudget().
        if isinstance(data, dict) and isinstance(data.get("encoder_training"), dict):
            data = dict(data)
            data["encoder_training"] = ENCODER_BUDGET.model_dump() | data["encoder_training"]
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.method != "prompt_tuning" and not self.targets:
            raise ValueError(f"method '{self.method}' needs 'targets' (module names per model family)")
        if self.method == "ia3":
            for family, modules in self.feedforward.items():
                extra = set(modules) - set(self.targets.get(family, ()))
                if extra:
                    raise ValueError(f"feedforward modules {sorted(extra)} of '{family}' are not in its targets")
        if self.load_in_4bit and self.method not in ("lora", "dora"):
            raise ValueError("load_in_4bit (QLoRA) is only supported with method lora or dora")
        return self

    @property
    def lora_alpha(self) -> float:
        return self.alpha if self.alpha is not None else 2.0 * self.rank

    @property
    def effective_rank(self) -> int | None:
        return self.rank if self.method in RANKED else None

    def budget(self, kind: ModelKind) -> TrainBudget:
        return self.encoder_training if kind == "encoder" else self.training


def recipe_registry(folders: list[Path] | None = None) -> SpecRegistry[Recipe]:
    """The recipes in `folders` (default: adapters_zoo/recipes, discovered once per process)."""
    if folders is None:
        return _zoo_registry()
    return SpecRegistry("recipe", Recipe, "*.yaml", folders)


@lru_cache(maxsize=1)
def _zoo_registry() -> SpecRegistry[Recipe]:
    return SpecRegistry("recipe", Recipe, "*.yaml", [RECIPES_DIR])


def get_recipe(name_or_path: str) -> Recipe:
    """A recipe by name (adapters_zoo/recipes) or by the path of a YAML file."""
    path = Path(name_or_path)
    registry = recipe_registry()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return registry.load(path)
    return registry.get(name_or_path)


def family_of(model_type: str) -> str | None:
    return FAMILIES.get(model_type)


def _per_family(recipe: Recipe, table: dict[str, tuple[str, ...]], model_type: str, what: str) -> list[str]:
    for key in (model_type, family_of(model_type)):
        if key is not None and key in table:
            return list(table[key])
    if what == "feedforward":
        return []
    raise HarnessError(
        f"Recipe '{recipe.name}' names no {what} for model type '{model_type}'; "
        f"add a '{what}.{family_of(model_type) or model_type}' entry to its YAML."
    )


def encoder_heads(model: Any) -> tuple[str, ...]:
    """The classifier, and the pooler's dense layer when the encoder has a pooler: BERT's tanh pooler sits
    between the [CLS] state and the classifier, and outside `modules_to_save` it stays frozen under LoRA.
    `pooler.dense` and not `pooler`: PEFT's mixed-batch forward (the engine's multi-LoRA batches) only
    accepts Linear-like modules_to_save, and the dense layer holds all of the pooler's parameters."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    return ("classifier", "pooler.dense") if getattr(body, "pooler", None) is not None else ("classifier",)


def target_modules(recipe: Recipe, model_type: str) -> list[str]:
    return _per_family(recipe, recipe.targets, model_type, "targets")


def peft_config(recipe: Recipe, kind: ModelKind, model_type: str, task: TaskSpec, tokenizer_path: str,
                encoder_heads: tuple[str, ...] = ("classifier",)) -> Any:
    """The PEFT config this recipe asks for on a model of this kind and type.

    `encoder_heads`: the modules an encoder trains in full and saves with the adapter (see `encoder_heads`).
    """
    import peft

    task_type = PEFT_TASK_TYPES[kind]
    # An encoder gets a fresh classifier head: it must be trained and saved with the adapter.
    save = list(encoder_heads) if kind == "encoder" else None
    if recipe.method == "prompt_tuning":
        return peft.PromptTuningConfig(
            task_type=task_type, num_virtual_tokens=recipe.num_virtual_tokens,
            prompt_tuning_init=peft.PromptTuningInit.TEXT,
            prompt_tuning_init_text=recipe.init_text or task.description or task.name,
            tokenizer_name_or_path=tokenizer_path,
        )
    targets = target_modules(recipe, model_type)
    common: dict[str, Any] = {"task_type": task_type, "target_modules": targets, "modules_to_save": save}
    if recipe.method in ("lora", "dora"):
        return peft.LoraConfig(
            r=recipe.rank, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.dropout, use_rslora=recipe.rslora,
            use_dora=recipe.method == "dora", **common,
        )
    if recipe.method == "ia3":
        feedforward = _per_family(recipe, recipe.feedforward, model_type, "feedforward")
        return peft.IA3Config(feedforward_modules=feedforward, **common)
    if recipe.method == "loha":
        return peft.LoHaConfig(r=recipe.rank, alpha=recipe.lora_alpha, module_dropout=recipe.dropout, **common)
    if recipe.method == "lokr":
        return peft.LoKrConfig(r=recipe.rank, alpha=recipe.lora_alpha, module_dropout=recipe.dropout, **common)
    # VeRA: shared frozen random projections (saved with the adapter so it loads anywhere) and
    # trained per-layer scaling vectors; the rank is the projections' size.
    return peft.VeraConfig(r=recipe.rank, vera_dropout=recipe.dropout, save_projection=True, **common)
