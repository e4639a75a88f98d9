"""`harness export-lm-eval --out DIR`: our tasks as lm-evaluation-harness task YAML.

For each task the export writes, into the user's folder:
* `<task>.jsonl` — the eval split as we load it (never the shared data files themselves), one row
  per example with the prompt already rendered by harness.prompts (few-shot included; chat prompts
  are rendered plain: pass lm_eval `--apply_chat_template` for those), the references and the label;
* `<task>.yaml` — `dataset_path: json` with `data_files` pointing at that JSONL, `doc_to_text: prompt`,
  our generation settings (greedy, stop strings, max_gen_toks) or our choices, and a metric_list
  whose aggregations call harness.metrics;
* `<task>.harness.json` — the TaskSpec, so scoring needs no task registry on the lm_eval side;
* `utils.py` — `process_results` and one aggregation per metric key, calling back into this module.

`lm_eval --model hf --model_args pretrained=M --include_path DIR --tasks resume_json` then makes the
same greedy predictions `harness run` makes and scores them with the same metrics (corpus values;
lm-eval's stderr for them is its own bootstrap). Needs `harness` installed where lm_eval runs.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.metrics.filters import RAW_SUFFIX
from harness.spec import Example, TaskSpec

UTILS_HEADER = '''"""Written by `harness export-lm-eval`: lm-eval scores these tasks with harness.metrics (needs `pip install harness`)."""

from pathlib import Path

from harness.interop.lm_eval_export import aggregator, results_processor

HERE = Path(__file__).resolve().parent
process_results = results_processor(HERE)
'''


class _Function(str):
    """A YAML scalar written with lm-eval's `!function` tag."""


def _function_representer(dumper: yaml.SafeDumper, value: _Function) -> Any:
    return dumper.represent_scalar("!function", str(value))


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, _function_representer)


def export_tasks(
    tasks: Sequence[TaskSpec], out: Path, *, limit: int | None = None, max_new_tokens: int | None = None, prompt: str | None = None
) -> list[Path]:
    """Write every task's YAML, JSONL and spec, then one utils.py; returns the YAML paths."""
    from harness.data import load_examples

    out = out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    aggregations: list[str] = []
    for task in tasks:
        examples = load_examples(task, limit=limit)
        data_file = out / f"{task.name}.jsonl"
        data_file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in doc_rows(task, examples, prompt)), encoding="utf-8")
        (out / f"{task.name}.harness.json").write_text(task.model_dump_json(indent=1), encoding="utf-8")
        path = out / f"{task.name}.yaml"
        path.write_text(yaml.dump(task_yaml(task, data_file, max_new_tokens), Dumper=_Dumper, sort_keys=False, allow_unicode=True), encoding="utf-8")
        written.append(path)
        aggregations += [f'{aggregation_name(task.name, key)} = aggregator(HERE, "{task.name}", "{key}")' for key in metric_keys(task)]
    (out / "utils.py").write_text(UTILS_HEADER + "\n" + "\n".join(aggregations) + "\n", encoding="utf-8")
    return written


def doc_rows(task: TaskSpec, examples: Sequence[Example], prompt: str | None = None) -> list[dict[str, Any]]:
    """One lm-eval doc per example: the prompt exactly as harness renders it (no tokenizer: plain text)."""
    from harness.data import load_examples
    from harness.prompts import render, target_text

    shots = load_examples(task, task.few_shot_split, limit=task.few_shot) if task.few_shot else []
    return [
        {
            "id": example.id,
            "task": task.name,
            "prompt": render(task, example, prompt, None, shots),
            "target": target_text(task, example).strip(),
            "references": list(example.references),
            "label": example.label,
        }
        for example in examples
    ]


def task_yaml(task: TaskSpec, data_file: Path, max_new_tokens: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "task": task.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "doc_to_text": "prompt",
    }
    if task.output_type == "generate_until":
        settings = task.generation
        generation: dict[str, Any] = {"until": list(settings.stop), "max_gen_toks": max_new_tokens or settings.max_new_tokens, "do_sample": settings.do_sample}
        if settings.do_sample:
            generation |= {"temperature": settings.temperature, "top_p": settings.top_p}
        config |= {"output_type": "generate_until", "doc_to_target": "target", "generation_kwargs": generation}
    else:
        # our engine scores prompt + choice text as given, so lm-eval must not insert a space
        config |= {"output_type": "multiple_choice", "doc_to_target": "label", "doc_to_choice": list(task.choices), "target_delimiter": ""}
    config["process_results"] = _Function("utils.process_results")
    config["metric_list"] = [
        {"metric": key, "aggregation": _Function(f"utils.{aggregation_name(task.name, key)}"), "higher_is_better": True}
        for key in metric_keys(task)
    ]
    config["metadata"] = {"version": 1.0, "exported_from": "harness"}
    return config


def metric_keys(task: TaskSpec) -> list[str]:
    """Every score key the task's metrics produce (an evaluate: plugin names its keys only when run)."""
    from harness.metrics import get_metric

    keys: list[str] = []
    for name in task.metrics:
        metric = get_metric(name, task.folder)
        if not metric.names:
            raise HarnessError(f"Metric '{name}' of task '{task.name}' names its score keys only when run; export tasks with built-in metrics.")
        keys += [key for key in metric.names if key not in keys]
    # with output filters, scoring stores the raw text's scores beside the filtered ones (metrics/filters.py)
    return keys + [key + RAW_SUFFIX for key in keys] if task.filters else keys


def aggregation_name(task: str, key: str) -> str:
    return "agg__" + re.sub(r"\W", "_", f"{task}__{key}")


# ---------------------------------------------------------------- called by the exported utils.py


@functools.lru_cache(maxsize=64)
def load_spec(folder: str, task: str) -> TaskSpec:
    return TaskSpec.model_validate_json((Path(folder) / f"{task}.harness.json").read_text(encoding="utf-8"))


def results_processor(folder: Path) -> Callable[[dict[str, Any], list[Any]], dict[str, str]]:
    """lm-eval's process_results: every metric key gets the same item (the doc's id, answer and gold)."""

    def process_results(doc: dict[str, Any], results: list[Any]) -> dict[str, str]:
        task = load_spec(str(folder), doc["task"])
        item = json.dumps({"id": doc["id"], "prediction": answer_text(results), "references": doc["references"], "label": doc["label"]})
        return dict.fromkeys(metric_keys(task), item)

    return process_results


def answer_text(results: list[Any]) -> str:
    """The generated text, or the index of the most likely choice (what our engine stores)."""
    if results and isinstance(results[0], str):
        return results[0]
    scores = [float(r[0]) if isinstance(r, (tuple, list)) else float(r) for r in results]
    return str(max(range(len(scores)), key=scores.__getitem__))


def aggregator(folder: Path, task: str, key: str) -> Callable[[list[str]], float]:
    def aggregate(items: list[str]) -> float:
        return corpus_scores(str(folder), task, tuple(items))[key]

    aggregate.__name__ = aggregation_name(task, key)
    return aggregate


@functools.lru_cache(maxsize=16)
def corpus_scores(folder: str, task: str, items: tuple[str, ...]) -> dict[str, float]:
    """All of a task's corpus metrics at once (each key's aggregation asks; computed once)."""
    from harness.scoring import score_examples

    spec = load_spec(folder, task)
    rows = [json.loads(item) for item in items]
    examples = [Example(id=row["id"], inputs={}, references=tuple(row["references"]), label=row["label"]) for row in rows]
    report = score_examples(spec, examples, [row["prediction"] for row in rows])
    return {name: value.value for name, value in report.corpus.items()}
