"""`--task lm_eval:NAME`: any lm-evaluation-harness task, run by lm-eval's own evaluator on OUR model.

The runner hands these tasks to `run_lm_eval_cells` after its own tasks, inside the same
`GroupRunner`, so an adapter sweep over lm-eval tasks still loads the base once: every cell wraps
the already-loaded module in `lm_eval.models.huggingface.HFLM(pretrained=<module>)` — the untouched
base model for the base row, the host's PeftModel with that adapter made the active one otherwise —
and calls `lm_eval.simple_evaluate` with lm-eval's default seeds, so the numbers are the ones
`lm_eval --model hf --model_args pretrained=...,peft=...` prints.

Results go to our store like any other cell: lm-eval's metrics (value and a normal 95% interval
from its stderr), and one prediction per logged sample (`log_samples`), keyed by a hash of the base
and adapter weights, lm-eval's task config and the settings, so two adapters never share an answer.
A re-run whose samples are all stored (one task, no filters: the sample keys are knowable before
evaluating) makes no model call: lm-eval's own aggregation and stderr functions are applied to the
stored per-sample metric values. The Ray executor skips done cells before sending any work.

Task lookup: `--include-path` folders are indexed alone first (`include_defaults=False`); lm-eval's
~14,000 built-in tasks (about 8 s to index) are indexed only when the name is not found there.
lm_eval is imported inside functions: the CLI imports the runner at startup.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import CellError, HarnessError, first_line
from harness.run.cells import BASE_LABEL, CellOutcome, cell_key, folder_bytes, record_failed_cell
from harness.spec import AdapterSpec, stable_hash

LM_EVAL_PREFIX = "lm_eval:"
Z95 = 1.959964  # normal quantile for a 95% interval from lm-eval's standard error


@dataclass(frozen=True)
class LmEvalTask:
    """An lm-eval task as a column of our matrix; `name` ("lm_eval:NAME") is what cells are stored under."""

    name: str
    task: str
    include_paths: tuple[str, ...] = ()
    local: bool = False  # found in include_paths: lm-eval's built-in tasks are not indexed
    eval_split: str = "lm_eval"  # the split cells record when they fail before lm-eval names one


def is_lm_eval_name(name: str) -> bool:
    return name.startswith(LM_EVAL_PREFIX)


@functools.lru_cache(maxsize=8)
def task_manager(include_paths: tuple[str, ...], include_defaults: bool) -> Any:
    """lm-eval's TaskManager; cached because indexing the built-in tasks takes seconds."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths) or None, include_defaults=include_defaults)


def resolve_lm_eval_task(name: str, include_paths: Sequence[Path] = ()) -> LmEvalTask:
    """Check that lm-eval knows the task, looking in the include paths before its built-in tasks."""
    bare = name.removeprefix(LM_EVAL_PREFIX).strip()
    if not bare:
        raise HarnessError(f"Task '{name}' names no lm-eval task; write lm_eval:NAME, e.g. lm_eval:hellaswag.")
    folders = tuple(str(Path(p).expanduser().resolve()) for p in include_paths if Path(p).is_dir())
    if folders and bare in task_manager(folders, False).all_tasks:
        return LmEvalTask(LM_EVAL_PREFIX + bare, bare, folders, local=True)
    manager = task_manager(folders, True)
    if bare not in manager.all_tasks:
        from harness.registry import suggest

        raise HarnessError(
            f"lm-eval has no task '{bare}'.{suggest(bare, manager.all_tasks)} Add its YAML folder with --include-path, or run `lm_eval ls tasks`."
        )
    return LmEvalTask(LM_EVAL_PREFIX + bare, bare, folders, local=False)


def split_lm_eval(tasks: Sequence[Any]) -> tuple[list[Any], list[LmEvalTask]]:
    """(our TaskSpecs, the lm-eval tasks), each in the order given."""
    return [t for t in tasks if not isinstance(t, LmEvalTask)], [t for t in tasks if isinstance(t, LmEvalTask)]


# ---------------------------------------------------------------- running cells


def run_lm_eval_cells(runner: Any, host: Any, attached: dict[str, Any], tasks: Sequence[LmEvalTask]) -> list[Any]:
    """Every (lm-eval task x variant) cell of one GroupRunner, on its already-loaded host."""
    outcomes: list[Any] = []
    variants: list[AdapterSpec | None] = ([None] if runner.spec.include_base else [])
    variants += [adapter for adapter in runner.spec.adapters if adapter.name in attached]
    for task in tasks:
        for adapter in variants:
            try:
                outcomes.append(_run_cell(runner, host, attached, task, adapter))
            except HarnessError as error:  # lm-eval refusing a task fails its cells, not the run
                outcomes.append(record_failed_cell(runner.store, runner.run_id, runner.spec.model.name, task, adapter, str(error)))
    return outcomes


def _run_cell(runner: Any, host: Any, attached: dict[str, Any], task: LmEvalTask, adapter: AdapterSpec | None) -> Any:

    base = host.base
    info = attached.get(adapter.name) if adapter else None
    fields = _cell_fields(runner, base, info, task, adapter)
    content = stable_hash({"base": base.weights_hash, "adapter": fields["adapter_hash"], "settings": fields["settings_json"]})
    label = adapter.name if adapter else BASE_LABEL
    cell_id = runner.store.upsert_cell(runner.run_id, cell_key(task.name, label), fields)
    keys = expected_samples(task, content, runner.spec.limit)
    if keys and len(runner.store.existing_keys(key for _, key in keys)) == len(keys):
        # every sample is stored: aggregate them as lm-eval does, no model call
        runner.store.set_cell_examples(cell_id, keys)
        predictions = runner.store.cell_predictions(cell_id)
        metrics, computed = reaggregate(task, predictions), 0
        timing = runner.store.timing(cell_id) or {}  # what the run that made them measured
    else:
        predictions, metrics, wall = _evaluate_cell(runner, host, task, adapter, content)
        timing = cell_timing(wall, len(predictions))
        runner.store.set_cell_examples(cell_id, [(p.example_id, p.key) for p in predictions])
        for prediction in predictions:
            runner.store.add_prediction(prediction, task=task.name, base_hash=base.weights_hash, adapter_hash=fields["adapter_hash"])
        computed = len(predictions)
    # the sample count is known only now; the Ray driver's cache check compares it with the stored predictions
    runner.store.upsert_cell(runner.run_id, cell_key(task.name, label), fields | {"n_examples": len(predictions)})
    runner.store.set_metrics(cell_id, metrics)
    runner.store.set_example_scores(cell_id, [(p.example_id, _numeric(p.details.get("metrics", {}))) for p in predictions])
    runner.store.set_timing(cell_id, timing)
    runner.store.set_cell_status(cell_id, "done")
    values = {name: {"value": v.value, "low": v.low, "high": v.high} for name, v in metrics.items()}
    return CellOutcome(cell_id, task.name, label, "done", None, values, timing, computed)


def _evaluate_cell(runner: Any, host: Any, task: LmEvalTask, adapter: AdapterSpec | None, content: str) -> tuple[list[Any], dict[str, Any], float]:
    """lm-eval on this variant: its logged samples as predictions, its metrics, the wall time."""
    started = time.perf_counter()
    results = evaluate(module_for(host, adapter.name if adapter else None), host.base.tokenizer, task, runner.spec)
    wall = time.perf_counter() - started
    samples = results.get("samples", {}).get(task.task, [])
    predictions = [sample_prediction(content, sample, wall / len(samples)) for sample in samples]
    return predictions, metric_values(results["results"].get(task.task, {})), wall


def cell_timing(wall: float, samples: int) -> dict[str, Any]:
    """lm-eval batches and times internally, so a cell has its wall time and rate only."""
    return {"wall_seconds": wall, "examples": samples, "examples_per_s": samples / wall if wall > 0 else None}


def _cell_fields(runner: Any, base: Any, info: Any, task: LmEvalTask, adapter: AdapterSpec | None) -> dict[str, Any]:

    return {
        "base": runner.spec.model.name, "base_hash": base.weights_hash,
        "adapter": adapter.name if adapter else None, "adapter_path": str(adapter.path) if adapter else None,
        "adapter_hash": info.weights_hash if info else None, "method": info.method if info else None,
        "rank": info.rank if info else None, "trainable_params": info.trainable_params if info else None,
        "adapter_bytes": folder_bytes(adapter.path) if adapter else None, "task": task.name,
        "split": _split(task), "settings_json": _settings(runner.spec, task, base), "status": "running", "error": None,
    }


def expected_samples(task: LmEvalTask, content: str, limit: int | None) -> list[tuple[str, str]] | None:
    """(doc id, key) of every sample lm-eval will log, where that is knowable: one task, no filters."""
    leaves = leaf_tasks(task)
    if len(leaves) != 1 or task_config(task)[leaves[0][0]].get("filter_list"):
        return None
    count = len(leaves[0][1].eval_docs)
    count = count if limit is None else min(limit, count)
    return [(str(doc), sample_key(content, str(doc), "none")) for doc in range(count)]


def reaggregate(task: LmEvalTask, predictions: Sequence[Any]) -> dict[str, Any]:
    """lm-eval's own aggregation and stderr functions over the stored per-sample metric values."""
    from lm_eval.api.metrics import stderr_for_metric

    results: dict[str, Any] = {}
    for metric, aggregate in leaf_tasks(task)[0][1].aggregation().items():
        items = [p.details.get("metrics", {}).get(metric) for p in predictions]
        if not items or any(item is None for item in items):
            continue
        results[f"{metric},none"] = aggregate(items)
        stderr = stderr_for_metric(aggregate, bootstrap_iters=100000)  # lm-eval's default
        results[f"{metric}_stderr,none"] = stderr(items) if stderr and len(items) > 1 else "N/A"
    return metric_values(results)


def _settings(spec: Any, task: LmEvalTask, base: Any) -> dict[str, Any]:
    """What changes lm-eval's answers: its task config and version, limit, generation override, dtype."""
    import lm_eval

    config = task_config(task)
    return {
        "lm_eval_task": task.task,
        "lm_eval_version": lm_eval.__version__,
        "task_config_hash": stable_hash(config),
        "limit": spec.limit,
        "max_gen_toks": spec.max_new_tokens,
        "dtype": str(base.dtype).removeprefix("torch."),
        "load_in_4bit": spec.model.load_in_4bit,
    }


@functools.lru_cache(maxsize=32)
def leaf_tasks(task: LmEvalTask) -> tuple[tuple[str, Any], ...]:
    """lm-eval's Task objects under this name (a group has several), built once per process."""
    from lm_eval.tasks import get_task_dict

    return tuple(_leaf_tasks(get_task_dict([task.task], task_manager(task.include_paths, not task.local))))


@functools.lru_cache(maxsize=32)
def task_config(task: LmEvalTask) -> dict[str, Any]:
    """lm-eval's resolved config of every task under this name, as JSON data (hashed into the keys)."""
    configs = {name: obj.dump_config() for name, obj in leaf_tasks(task)}
    return json.loads(json.dumps(configs, default=_stable_text, sort_keys=True))


def _stable_text(value: Any) -> str:
    """Config values JSON cannot hold (functions from `!function`), without their memory address,
    so the hash, hence the prediction keys, are the same in every process."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(value))


def _split(task: LmEvalTask) -> str:
    """The split lm-eval evaluates (test, else validation), or the group marker for a group of tasks."""
    configs = list(task_config(task).values())
    if len(configs) != 1:
        return task.eval_split
    return str(configs[0].get("test_split") or configs[0].get("validation_split") or task.eval_split)


def _leaf_tasks(tree: dict[Any, Any]) -> list[tuple[str, Any]]:
    """lm-eval nests groups of tasks in dicts; flatten to (name, Task) pairs."""
    leaves: list[tuple[str, Any]] = []
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves += _leaf_tasks(value)
        else:
            leaves.append((str(getattr(key, "group_name", key)), value))
    return leaves


def module_for(host: Any, adapter: str | None) -> Any:
    """The torch module that answers as `adapter` (None: the untouched base model)."""
    if host.base.kind == "encoder":
        raise CellError("lm-eval tasks need a causal or seq2seq model, not an encoder; pick a generative --model.")
    if adapter is None:
        return host.base.model
    route = host.route_alone(adapter)
    if route.prefix is not None:
        raise CellError(f"Adapter '{adapter}' is a prompt-tuning adapter, which lm-eval's HFLM cannot run on a shared base; evaluate it with our own tasks.")
    return route.module


def evaluate(module: Any, tokenizer: Any, task: LmEvalTask, spec: Any) -> dict[str, Any]:
    """lm-eval's simple_evaluate on an already-loaded module, with lm-eval's default seeds."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=module, tokenizer=tokenizer, batch_size=spec.batch_size)
    gen_kwargs = {"max_gen_toks": spec.max_new_tokens} if spec.max_new_tokens else None
    try:
        results = lm_eval.simple_evaluate(
            model=lm, tasks=[task.task], task_manager=task_manager(task.include_paths, not task.local),
            limit=spec.limit, log_samples=True, gen_kwargs=gen_kwargs,
        )
    except (ValueError, KeyError, FileNotFoundError) as error:  # lm-eval's answer to a bad task or dataset
        raise CellError(f"lm-eval could not run task '{task.task}' ({first_line(error)}); check its YAML and dataset.") from error
    if results is None:
        raise CellError(f"lm-eval returned no results for task '{task.task}'; run it with lm_eval directly to see why.")
    return results


def sample_prediction(content: str, sample: dict[str, Any], seconds: float) -> Any:
    """One logged lm-eval sample as our Prediction: the filtered response as text, the rest as details."""
    from harness.store import Prediction

    doc_id = str(sample.get("doc_id"))
    response = sample.get("filtered_resps")
    if isinstance(response, list) and len(response) == 1 and isinstance(response[0], str):
        text = response[0]  # generate_until: the generated text
    else:
        text = json.dumps(response, default=str)  # log-likelihoods: [(logprob, is_greedy), ...]
    metrics = {name: sample[name] for name in sample.get("metrics", []) if name in sample}
    details = {
        "target": str(sample.get("target")),
        "metrics": json.loads(json.dumps(metrics, default=str)),
        "doc_hash": sample.get("doc_hash"),
        "prompt_hash": sample.get("prompt_hash"),
        "filter": sample.get("filter"),
    }
    return Prediction(sample_key(content, doc_id, str(sample.get("filter"))), doc_id, text, details, 0, 0, seconds)


def sample_key(content: str, doc_id: str, filter_name: str) -> str:
    """A logged sample's prediction key: the cell's content hash (weights, task config, settings) and the doc."""
    return stable_hash({"cell": content, "doc": doc_id, "filter": filter_name})


def metric_values(task_results: dict[str, Any]) -> dict[str, Any]:
    """lm-eval's "acc,none" / "acc_stderr,none" pairs as our MetricValues ("acc"; "acc,FILTER" if filtered)."""
    from harness.metrics.base import MetricValue

    values: dict[str, MetricValue] = {}
    for key, value in task_results.items():
        if "," not in key or "_stderr," in key or not _is_number(value):
            continue
        metric, filter_name = key.split(",", 1)
        stderr = task_results.get(f"{metric}_stderr,{filter_name}")
        name = metric if filter_name == "none" else key
        if _is_number(stderr):
            values[name] = MetricValue(float(value), float(value) - Z95 * float(stderr), float(value) + Z95 * float(stderr))
        else:
            values[name] = MetricValue(float(value), float(value), float(value))
    return values


def _numeric(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items() if _is_number(value)}


def _is_number(value: Any) -> bool:
    """Numbers and booleans (per-sample acc may be a bool); lm-eval writes "N/A" for a missing stderr."""
    return isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value))
