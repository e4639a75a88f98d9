"""Frozen, validated specifications: what a task, a model, an adapter and a run are.

Specs are pydantic models with `frozen=True` and `extra="forbid"`, so a typo in a task YAML is
an error that names the field, and a spec can be hashed into a cache key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.metrics.filters import FILTERS

OutputType = Literal["generate_until", "multiple_choice", "classify"]
FileFormat = Literal["jsonl", "tsv", "python"]

# Bumped whenever prompt rendering changes in a way that changes the text sent to a model,
# so that cached predictions made with the old rendering are not reused.
PROMPT_VERSION = 1


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TsvOptions(Frozen):
    """How to read one TSV file; each SOURCE.md in the data mirror lists the quirks."""

    header: bool = True
    # "none" reads quotes as plain characters (CoLA, MRPC and SST-2 have unbalanced quotes);
    # "csv" applies csv double-quote escaping (RTE's Hugging Face export).
    quoting: Literal["none", "csv"] = "none"
    encoding: str = "utf-8"  # "utf-8-sig" strips a byte-order mark (MRPC)
    columns: tuple[str, ...] = ()  # column names when the file has no header row


class DatasetSource(Frozen):
    """Where a task's examples come from: a local mirror first, the public dataset second."""

    format: FileFormat = "jsonl"
    # split name -> file path relative to HARNESS_DATA_DIR (or to the task folder for format python)
    local: dict[str, str] = Field(default_factory=dict)
    tsv: TsvOptions = TsvOptions()
    # mirror column -> the public dataset's column, so `fields` uses one set of names for both
    rename: dict[str, str] = Field(default_factory=dict)
    # format python: "file.py:function" inside the task folder, called as function(split, data_dir)
    # and returning a list of row dicts. Used for generated data and derived sets.
    python: str | None = None
    hf_id: str | None = None
    hf_config: str | None = None
    hf_splits: dict[str, str] = Field(default_factory=dict)  # our split name -> the hub's

    @model_validator(mode="after")
    def _python_needs_function(self) -> DatasetSource:
        if self.format == "python" and not self.python:
            raise ValueError("format 'python' needs 'python: file.py:function'")
        return self


class FieldMap(Frozen):
    """Which row fields become an example's id, inputs, references and label."""

    id: str | None = None  # default: "<split>-<row index>"
    inputs: tuple[str, ...]
    references: tuple[str, ...] = ()
    label: str | None = None


class GenerationSettings(Frozen):
    max_new_tokens: int = Field(128, ge=1)
    stop: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)


class TaskSpec(Frozen):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    dataset: DatasetSource
    splits: tuple[str, ...] = ("test",)
    eval_split: str = "test"
    fields: FieldMap
    output_type: OutputType = "generate_until"
    # template name -> template text; placeholders are input field names in braces
    prompts: dict[str, str]
    default_prompt: str = "default"
    # render through the tokenizer's chat template (when the model has one)
    chat_prompts: tuple[str, ...] = ()
    # verbalised labels for multiple_choice / classify: choices[label] is the label's text
    choices: tuple[str, ...] = ()
    generation: GenerationSettings = GenerationSettings()
    metrics: tuple[str, ...]
    # output filters run on every prediction before the metrics (harness/metrics/filters.py), in order
    filters: tuple[str, ...] = ()
    few_shot: int = Field(0, ge=0)
    few_shot_split: str = "train"
    # fields that hold real people's data: reports show field-level results only
    private: bool = False
    # the in-domain task this one shifts from (resume_json_real: real resumes, adapters trained on synthetic
    # ones): reports show each adapter's gap between the two (harness/report/domain_shift.py)
    shift_of: str | None = Field(None, pattern=r"^[a-z0-9_]+$")
    # set by the registry: the folder the task.yaml was found in (for templates and plugins)
    folder: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        if self.default_prompt not in self.prompts:
            raise ValueError(f"default_prompt '{self.default_prompt}' is not one of prompts {sorted(self.prompts)}")
        unknown_chat = set(self.chat_prompts) - set(self.prompts)
        if unknown_chat:
            raise ValueError(f"chat_prompts names unknown prompts {sorted(unknown_chat)}")
        if self.output_type in ("multiple_choice", "classify") and not self.choices:
            raise ValueError(f"output_type '{self.output_type}' needs 'choices' (the verbalised labels)")
        if self.output_type in ("multiple_choice", "classify") and not self.fields.label:
            raise ValueError(f"output_type '{self.output_type}' needs 'fields.label'")
        unknown_filters = [name for name in self.filters if name not in FILTERS]
        if unknown_filters:
            raise ValueError(f"filters names unknown filters {unknown_filters}; choose from {sorted(FILTERS)}")
        if self.shift_of == self.name:
            raise ValueError(f"shift_of names the task itself ('{self.name}'); name the in-domain task it shifts from")
        if self.eval_split not in self.splits:
            raise ValueError(f"eval_split '{self.eval_split}' is not one of splits {list(self.splits)}")
        return self

    def content_hash(self) -> str:
        """Hash of everything that changes what a model is asked (not the folder it lives in).

        Filters only change how answers are scored, so they are left out: adding one re-scores the
        stored predictions instead of regenerating them. `shift_of` only changes what reports compare.
        """
        payload = self.model_dump(mode="json", exclude={"folder", "description", "filters", "shift_of"})
        return stable_hash(payload)


class Example(Frozen):
    """One evaluation example, whatever the task: typed, so metrics and stores need no guessing."""

    id: str
    inputs: dict[str, str]
    references: tuple[str, ...] = ()
    label: int | None = None


ModelKind = Literal["causal", "seq2seq", "encoder"]


class ModelSpec(Frozen):
    """A base model: an embedded default name, a Hugging Face id or a local folder."""

    name: str
    kind: ModelKind | None = None  # None: read from the model's config
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = "auto"  # "auto" picks CUDA when present
    load_in_4bit: bool = False
    trust_remote_code: bool = False


class AdapterSpec(Frozen):
    """A PEFT adapter folder (adapter_config.json + adapter_model.safetensors)."""

    path: Path
    name: str  # unique within a run; defaults to the folder's zoo-relative path
    allow_pickle: bool = False


class RunSpec(Frozen):
    """Everything one `harness run` was asked to do. Its hash names the run."""

    tasks: tuple[str, ...]
    model: ModelSpec
    adapters: tuple[AdapterSpec, ...] = ()
    include_base: bool = True
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    prompt: str | None = None
    seed: int = 0
    spectral: bool = False
    # How mixed batches of LoRA adapters run (harness.run.multi_lora): both give the same predictions,
    # so it is not part of a prediction's key; "peft" keeps PEFT's per-adapter loop for comparison.
    multi_lora: Literal["peft", "batched"] = "batched"
    # measure each adapter's latency (batch 1) and throughput (full batch) alone on a probe set
    cost_profile: bool = True


def stable_hash(payload: Any) -> str:
    """sha256 of a JSON-serialisable value with sorted keys: equal content, equal hash."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
