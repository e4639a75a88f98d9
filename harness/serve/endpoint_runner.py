"""`harness run --endpoint URL`: evaluate what an OpenAI-compatible server returns, into the same store.

Each cell is (task, served model): the base's id and one per `--adapter NAME[=DIR]`. Predictions are
keyed like in-process ones (harness.store.prediction_key) but on what an endpoint can tell us:

- base: the base's weights hash from the server's /v1/models metadata (harness serve publishes it),
  else the endpoint URL and the served base id;
- adapter: the hash of DIR's weights when DIR is given, else the hash the server publishes for NAME,
  else the endpoint URL and NAME (then a different adapter behind the same name cannot be told apart);
- settings: the endpoint URL, the served model id, the generation settings and the prompt.

So a re-run is served from the store, and a different adapter behind the same name is not. When DIR
and the server both give a hash and they differ, the cell fails: the server serves other weights.
Requests run concurrently (bounded), each answer is stored the moment it arrives, and a cell whose
requests could not be answered fails with the client's one sentence; re-running resumes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import load_examples
from harness.errors import HarnessError
from harness.prompts import render
from harness.run.adapter_checks import WEIGHT_FILES, sha256_file
from harness.run.cells import CellOutcome, Progress, RunResult, cell_key, folder_bytes
from harness.serve.client import Answer, EndpointClient, EndpointError, EndpointOptions
from harness.spec import PROMPT_VERSION, Frozen, TaskSpec, stable_hash
from harness.store import Prediction, Store, prediction_key


class ServedAdapter(Frozen):
    name: str  # the served model id
    path: Path | None = None  # its folder, when the caller has it (card, hash)


class EndpointRunSpec(Frozen):
    """Everything one endpoint run was asked to do (its hash names the run, as for RunSpec)."""

    endpoint: str
    tasks: tuple[str, ...]
    adapters: tuple[ServedAdapter, ...] = ()
    base_model: str | None = None  # served id of the base (default: from /v1/models)
    include_base: bool = True
    limit: int | None = None
    max_new_tokens: int | None = None
    prompt: str | None = None
    seed: int = 0


def parse_served_adapters(values: Sequence[str]) -> tuple[ServedAdapter, ...]:
    """`NAME` or `NAME=DIR` per --adapter; a bare existing adapter folder is served under its folder name."""
    adapters: list[ServedAdapter] = []
    for value in values:
        name, sep, folder = value.partition("=")
        path = Path(folder).expanduser() if sep else Path(value)
        if sep and not (path / "adapter_config.json").is_file():
            raise HarnessError(f"Adapter folder '{folder}' (for '{name}') has no adapter_config.json; pass NAME=FOLDER with a PEFT folder.")
        if not sep and not (path / "adapter_config.json").is_file():
            adapters.append(ServedAdapter(name=value))
            continue
        adapters.append(ServedAdapter(name=name if sep else path.resolve().name, path=path.resolve()))
    return tuple(adapters)


def execute_endpoint(spec: EndpointRunSpec, options: EndpointOptions, store: Store, include_paths: Sequence[Path] = (),
                     progress: Progress | None = None, results_dir: Path | None = None) -> RunResult:
    from harness.registry import task_registry
    from harness.run.matrix import write_results

    registry = task_registry(list(include_paths))
    tasks = [registry.get(name) for name in spec.tasks]
    for task in tasks:
        if task.output_type != "generate_until":
            raise HarnessError(f"Task '{task.name}' is a {task.output_type} task; the endpoint backend runs tasks that generate text.")
        load_examples(task, limit=1)  # bad data fails before any request
    run_id = stable_hash(spec.model_dump(mode="json"))[:12]
    store.start_run(run_id, spec.model_dump(mode="json"))
    outcomes = asyncio.run(_run(spec, options, store, run_id, tasks, progress))
    store.finish_run(run_id, "done" if all(o.status == "done" for o in outcomes) else "failed")
    result = RunResult(run_id, outcomes)
    result.results_file = write_results(result, spec, results_dir or store.path.parent / "runs")  # type: ignore[arg-type]
    return result


# ---------------------------------------------------------------- what is served


@dataclass(frozen=True)
class _Variant:
    """One served model a cell runs against, with the identities its predictions are keyed on."""

    label: str  # the served model id
    adapter: ServedAdapter | None
    base_id: str  # the served base's id
    base_key: str
    adapter_key: str | None
    meta: dict[str, Any]
    problem: str | None = None  # why its cells cannot run


async def _variants(spec: EndpointRunSpec, client: EndpointClient) -> list[_Variant]:
    entries = {str(e.get("id")): e for e in await client.models()}
    if not entries:
        raise HarnessError(f"Endpoint {spec.endpoint} serves no models; start it with a model.")
    base_id = spec.base_model or _base_id(entries)
    base_meta = (entries.get(base_id) or {}).get("metadata") or {}
    base_key = base_meta.get("weights_hash") or f"endpoint:{spec.endpoint}|{base_id}"
    variants = []
    if spec.include_base:
        problem = None if base_id in entries else _unknown(spec.endpoint, base_id, entries)
        variants.append(_Variant(base_id, None, base_id, base_key, None, base_meta, problem))
    for adapter in spec.adapters:
        meta = (entries.get(adapter.name) or {}).get("metadata") or {}
        variants.append(_adapter_variant(spec.endpoint, adapter, base_id, base_key, meta, entries))
    return variants


def _base_id(entries: dict[str, dict[str, Any]]) -> str:
    """The entry harness serve marks as the base, else one that names no parent, else the first."""
    for name, entry in entries.items():
        if (entry.get("metadata") or {}).get("kind") == "base":
            return name
    for name, entry in entries.items():
        if entry.get("parent") in (None, name):
            return name
    return next(iter(entries))


def _adapter_variant(endpoint: str, adapter: ServedAdapter, base_id: str, base_key: str, meta: dict[str, Any],
                     entries: dict[str, Any]) -> _Variant:
    if adapter.name not in entries:
        return _Variant(adapter.name, adapter, base_id, base_key, None, meta, _unknown(endpoint, adapter.name, entries))
    served_hash = meta.get("adapter_hash")
    local_hash = adapter_weights_hash(adapter.path) if adapter.path else None
    problem = None
    if served_hash and local_hash and served_hash != local_hash:
        problem = (f"Endpoint {endpoint} serves other weights as '{adapter.name}' than {adapter.path} holds "
                   f"(hash {served_hash[:12]} vs {local_hash[:12]}); serve that folder or drop =DIR.")
    key = local_hash or served_hash or f"endpoint:{endpoint}|{adapter.name}"
    return _Variant(adapter.name, adapter, base_id, base_key, key, meta, problem)


def _unknown(endpoint: str, name: str, entries: dict[str, Any]) -> str:
    return f"Endpoint {endpoint} does not serve '{name}'; it serves: {', '.join(entries)}."


def adapter_weights_hash(folder: Path) -> str:
    """sha256 of the adapter's weights file: the same hash `harness run` and `harness serve` use."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return sha256_file(folder / name)
    raise HarnessError(f"Adapter folder '{folder}' has no adapter_model.safetensors; pass a saved PEFT adapter folder.")


# ---------------------------------------------------------------- the run


@dataclass
class _Cell:
    cell_id: int
    variant: _Variant
    keys: list[str]
    example_ids: list[str]
    answers: dict[str, Answer] = field(default_factory=dict)  # made in this run, by key
    error: str | None = None


async def _run(spec: EndpointRunSpec, options: EndpointOptions, store: Store, run_id: str, tasks: list[TaskSpec],
               progress: Progress | None) -> list[CellOutcome]:
    client = EndpointClient(options)
    try:
        try:
            variants = await _variants(spec, client)
        except EndpointError as error:
            raise HarnessError(str(error)) from None
        outcomes: list[CellOutcome] = []
        for task in tasks:
            outcomes += await _run_task(spec, options, client, store, run_id, task, variants, progress)
        return outcomes
    finally:
        await client.close()


async def _run_task(spec: EndpointRunSpec, options: EndpointOptions, client: EndpointClient, store: Store, run_id: str,
                    task: TaskSpec, variants: list[_Variant], progress: Progress | None) -> list[CellOutcome]:
    examples = load_examples(task, limit=spec.limit)
    prompt_name = spec.prompt or task.default_prompt
    chat = prompt_name in task.chat_prompts
    prompts = [render(task, example, prompt_name) for example in examples]  # no tokenizer: the server applies its chat template
    outcomes, cells = [], []
    for variant in variants:
        if variant.problem:
            outcomes.append(_failed_cell(store, run_id, task, variant))
            continue
        cells.append(_open_cell(spec, store, run_id, task, variant, examples, prompts, chat))
    start = time.perf_counter()
    await _ask_missing(spec, options, client, store, task, cells, prompts, chat, progress)
    wall = time.perf_counter() - start
    return outcomes + [_close_cell(store, task, cell, examples, wall, options.stream, spec.seed) for cell in cells]


def _failed_cell(store: Store, run_id: str, task: TaskSpec, variant: _Variant) -> CellOutcome:
    """A cell that cannot run (model not served, other weights behind the name), stored with its reason."""
    fields = {"base": variant.base_id, "adapter": variant.label if variant.adapter else None,
              "adapter_path": str(variant.adapter.path) if variant.adapter and variant.adapter.path else None,
              "task": task.name, "split": task.eval_split, "settings_json": {}, "status": "failed", "error": variant.problem}
    cell_id = store.upsert_cell(run_id, cell_key(task.name, variant.label), fields)
    return CellOutcome(cell_id, task.name, variant.label, "failed", variant.problem)


def _settings(spec: EndpointRunSpec, task: TaskSpec, variant: _Variant, prompt_name: str, chat: bool) -> dict[str, Any]:
    return {
        "output_type": "generate_until", "backend": "endpoint", "endpoint": spec.endpoint, "served_model": variant.label,
        "prompt": prompt_name, "chat": chat, "few_shot": task.few_shot, "seed": spec.seed,
        "generation": {"max_new_tokens": spec.max_new_tokens or task.generation.max_new_tokens, "stop": list(task.generation.stop),
                       "do_sample": False},
    }


def _request_settings(settings: dict[str, Any]) -> dict[str, Any]:
    generation = settings["generation"]
    body: dict[str, Any] = {"max_tokens": generation["max_new_tokens"], "temperature": 0, "top_p": 1, "seed": settings["seed"]}
    if generation["stop"]:
        body["stop"] = generation["stop"]
    return body


def _open_cell(spec: EndpointRunSpec, store: Store, run_id: str, task: TaskSpec, variant: _Variant, examples: Sequence[Any],
               prompts: Sequence[str], chat: bool) -> _Cell:
    settings = _settings(spec, task, variant, spec.prompt or task.default_prompt, chat)
    keys = [prediction_key(base_hash=variant.base_key, adapter_hash=variant.adapter_key, task_hash=task.content_hash(),
                           example_id=e.id, prompt=p, settings=settings, prompt_version=PROMPT_VERSION)
            for e, p in zip(examples, prompts)]
    path = variant.adapter.path if variant.adapter else None
    fields = {
        "base": variant.base_id,
        "base_hash": variant.base_key, "adapter": variant.label if variant.adapter else None,
        "adapter_path": str(path) if path else None, "adapter_hash": variant.adapter_key,
        "method": variant.meta.get("method") or _config(path).get("peft_type"),
        "rank": variant.meta.get("rank") or _config(path).get("r"),
        "trainable_params": None, "adapter_bytes": folder_bytes(path) if path else None,
        "task": task.name, "split": task.eval_split, "settings_json": settings, "status": "running", "error": None,
        "n_examples": len(examples),
    }
    cell_id = store.upsert_cell(run_id, cell_key(task.name, variant.label), fields)
    store.set_cell_examples(cell_id, [(e.id, k) for e, k in zip(examples, keys)])
    return _Cell(cell_id, variant, keys, [e.id for e in examples])


def _config(path: Path | None) -> dict[str, Any]:
    try:
        return json.loads((path / "adapter_config.json").read_text()) if path else {}
    except (OSError, ValueError):
        return {}


async def _ask_missing(spec: EndpointRunSpec, options: EndpointOptions, client: EndpointClient, store: Store, task: TaskSpec,
                       cells: list[_Cell], prompts: Sequence[str], chat: bool, progress: Progress | None) -> None:
    existing = store.existing_keys(k for cell in cells for k in cell.keys)
    todo = [(cell, i) for cell in cells for i, key in enumerate(cell.keys) if key not in existing]
    if not todo:
        return
    advance = progress(f"{task.name}: {len(cells)} cells via {spec.endpoint}", len(todo)) if progress else None
    gate = asyncio.Semaphore(max(1, options.concurrency))
    body = {id(cell): _request_settings(_settings(spec, task, cell.variant, spec.prompt or task.default_prompt, chat)) for cell in cells}

    async def ask(cell: _Cell, index: int) -> None:
        async with gate:
            if cell.error:  # the endpoint already failed this cell: do not hammer a dead server
                return
            try:
                answer = await client.complete(cell.variant.label, prompts[index], body[id(cell)], chat)
            except EndpointError as error:
                cell.error = cell.error or str(error)
                return
        key = cell.keys[index]
        cell.answers[key] = answer
        details = {"finish_reason": answer.finish_reason, "ttft_s": answer.ttft_s}
        prediction = Prediction(key, cell.example_ids[index], answer.text, details, answer.prompt_tokens or 0,
                                answer.completion_tokens or 0, answer.latency_s)
        store.add_prediction(prediction, task=task.name, base_hash=cell.variant.base_key, adapter_hash=cell.variant.adapter_key)
        if advance:
            advance(1)

    await asyncio.gather(*(ask(cell, i) for cell, i in todo))


def _close_cell(store: Store, task: TaskSpec, cell: _Cell, examples: Sequence[Any], wall: float, streamed: bool, seed: int) -> CellOutcome:
    from harness.scoring import score_examples

    predictions = store.cell_predictions(cell.cell_id)
    label = cell.variant.label
    if len(predictions) != len(examples):
        missing = len(examples) - len(predictions)
        error = f"{cell.error or 'Some requests were not answered.'} ({missing} of {len(examples)} predictions missing.)"
        store.set_cell_status(cell.cell_id, "failed", error)
        return CellOutcome(cell.cell_id, task.name, label, "failed", error, computed=len(cell.answers))
    report = score_examples(task, examples, [p.prediction for p in predictions], seed=seed)
    store.set_metrics(cell.cell_id, report.corpus)
    store.set_example_scores(cell.cell_id, [(e.id, s) for e, s in zip(examples, report.per_example)])
    timing = endpoint_timing(list(cell.answers.values()), wall, streamed) if cell.answers else (
        store.timing(cell.cell_id) or store.earlier_timing(cell.cell_id) or {})
    store.set_timing(cell.cell_id, timing)
    store.set_cell_status(cell.cell_id, "done")
    metrics = {name: {"value": v.value, "low": v.low, "high": v.high} for name, v in report.corpus.items()}
    return CellOutcome(cell.cell_id, task.name, label, "done", None, metrics, timing, len(cell.answers))


def endpoint_timing(answers: list[Answer], wall: float, streamed: bool) -> dict[str, Any]:
    """What a client sees: latency percentiles, time to first token (streaming), tokens/s from usage.

    `wall` is the task's whole request phase, shared by every cell that ran in it concurrently, so
    `generated_tokens_per_s` is this cell's tokens over that shared time (a lower bound per cell).
    """
    from harness.diagnostics.recorder import percentile

    latencies = [a.latency_s for a in answers]
    ttfts = [a.ttft_s for a in answers if a.ttft_s is not None]
    generated = sum(a.completion_tokens or 0 for a in answers)
    with_usage = [a for a in answers if a.completion_tokens]
    return {
        "backend": "endpoint",
        "examples": len(answers),
        "wall_seconds": wall,
        "prompt_tokens": sum(a.prompt_tokens or 0 for a in answers),
        "generated_tokens": generated,
        "examples_per_s": len(answers) / wall if wall > 0 else None,
        "generated_tokens_per_s": generated / wall if wall > 0 and generated else None,
        "request_tokens_per_s_p50": percentile([a.completion_tokens / a.latency_s for a in with_usage], 50) if with_usage else None,
        "latency_p50": percentile(latencies, 50),
        "latency_p95": percentile(latencies, 95),
        "ttft_p50": percentile(ttfts, 50) if streamed and ttfts else None,
        "ttft_p95": percentile(ttfts, 95) if streamed and ttfts else None,
    }
