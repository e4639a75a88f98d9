"""GroupRunner: one base, its adapters, its tasks: load the base once, swap adapters in place.

Predictions go to the store the moment they are made, so a killed run resumes where it stopped;
a cell whose predictions are all cached makes no model call at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.data import load_examples
from harness.errors import CellError, HarnessError
from harness.run.cells import BASE_LABEL, CellOutcome, CellPlan, Progress, cell_key, folder_bytes, record_failed_cell
from harness.spec import PROMPT_VERSION, AdapterSpec, Example, RunSpec, TaskSpec
from harness.store import Prediction, Store, prediction_key

# The probe only has to show that an adapter changes the logits at all: two short prompts do,
# and cost little next to the run (every adapter pays for its own probe forward).
PROBE_SIZE = 2
PROBE_CHARS = 256


def settings_for(spec: RunSpec, task: TaskSpec, base_facts: dict[str, Any]) -> dict[str, Any]:
    """Everything besides weights, prompt and example that changes an answer (batch size does not)."""
    generation = task.generation.model_dump(mode="json")
    if spec.max_new_tokens:
        generation["max_new_tokens"] = spec.max_new_tokens
    return {
        "output_type": output_type_for(task, base_facts["kind"]),
        "prompt": spec.prompt or task.default_prompt,
        "few_shot": task.few_shot,
        "generation": generation,
        "seed": spec.seed,
        "dtype": base_facts["dtype"],
        "load_in_4bit": base_facts["load_in_4bit"],
    }


def output_type_for(task: TaskSpec, model_kind: str) -> str:
    """Classification tasks run through an encoder's head, or by log-likelihood on generative models."""
    if task.output_type in ("multiple_choice", "classify"):
        return "classify" if model_kind == "encoder" else "multiple_choice"
    if model_kind == "encoder":
        raise HarnessError(f"Task '{task.name}' generates text and needs a causal or seq2seq model, not an encoder.")
    return task.output_type


@dataclass(frozen=True)
class BaseFacts:
    """What a prediction key and the settings need of the base: the same whether it was loaded or not."""

    kind: str
    dtype: str
    load_in_4bit: bool
    weights_hash: str
    tokenizer: Any

    @classmethod
    def of(cls, known: Any, spec: RunSpec) -> BaseFacts:
        """From a LoadedBase or a loading.KnownBase (both have kind, dtype, weights_hash, tokenizer)."""
        dtype = str(known.dtype).removeprefix("torch.")
        return cls(known.kind, dtype, spec.model.load_in_4bit, known.weights_hash, known.tokenizer)

    def as_settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "dtype": self.dtype, "load_in_4bit": self.load_in_4bit}


@dataclass
class TaskPlan:
    """One task's share of the group: its settings, examples, rendered prompts and cells."""

    task: TaskSpec
    settings: dict[str, Any]
    examples: list[Example]
    prompts: list[str]
    cells: list[CellPlan]


class GroupRunner:
    """Runs every cell of one base: loads it once, attaches the adapters, feeds the engine.

    The steps, in order (`run`):
    1. check each adapter's files (no model needed); a bad adapter fails its own cells only;
    2. plan every cell and compute its prediction keys without loading the base; when the store holds
       every key, score the cells from it and stop: a cached re-run loads no weights;
    3. otherwise load the base, attach and probe the adapters, and per task: prepare the cells, ask the
       engine for the missing predictions (all cells of a task in one stream), score and time each cell.
    """

    def __init__(self, spec: RunSpec, run_id: str, store: Store, progress: Progress | None = None) -> None:
        self.spec = spec
        self.run_id = run_id
        self.store = store
        self.progress = progress

    def run(self, tasks: Sequence[Any]) -> list[CellOutcome]:
        from harness.interop.lm_eval_tasks import split_lm_eval

        tasks, lm_eval_tasks = split_lm_eval(tasks)  # hook: `lm_eval:NAME` cells run through lm-eval's evaluator
        usable, outcomes = self._check_adapters([*tasks, *lm_eval_tasks])
        cached = None if lm_eval_tasks else self._from_store(tasks, usable)
        if cached is not None:
            return outcomes + cached
        return outcomes + self._with_model(tasks, lm_eval_tasks, usable)

    # ------------------------------------------------------------ step 1: adapter files

    def _check_adapters(self, tasks: Sequence[Any]) -> tuple[list[AdapterSpec], list[CellOutcome]]:
        """Adapters whose folders are readable PEFT adapters; every other one fails its cells here."""
        from harness.run.adapter_checks import check_folder

        usable: list[AdapterSpec] = []
        failures: list[CellOutcome] = []
        for adapter in self.spec.adapters:
            try:
                check_folder(adapter)
                usable.append(adapter)
            except CellError as error:
                failures += [self.fail_cell(task, adapter, str(error)) for task in tasks]
        return usable, failures

    # ------------------------------------------------------------ step 2: everything cached?

    def _from_store(self, tasks: Sequence[TaskSpec], usable: Sequence[AdapterSpec]) -> list[CellOutcome] | None:
        """Every cell scored from the store without loading a weight; None when some prediction is missing.

        Exact: the keys are computed from the same facts loading would give (the base's cached weights
        hash, the adapters' file hashes); when a fact is unknown without loading, the model path runs.
        """
        from harness.run.adapter_checks import adapter_facts
        from harness.run.loading import known_base

        if not tasks or self.spec.spectral:  # spectra need the base's weights
            return None
        chat = any((self.spec.prompt or task.default_prompt) in task.chat_prompts for task in tasks)
        known = known_base(self.spec.model, num_labels=self._num_labels(tasks), with_tokenizer=chat)
        facts = {adapter.name: adapter_facts(adapter) for adapter in usable}
        if known is None or any(info is None for info in facts.values()):
            return None
        base = BaseFacts.of(known, self.spec)
        try:
            plans = [self._plan_task(task, base, facts) for task in tasks]
        except HarnessError:
            return None  # the model path records the failure with its reason
        keys = {key: None for plan in plans for cell in plan.cells for key in self._keys(cell, plan, base, facts)}
        if len(self.store.existing_keys(keys)) != len(keys):
            return None
        outcomes: list[CellOutcome] = []
        for plan in plans:
            for cell in plan.cells:
                job = self._prepare_cell(cell, plan, base, facts)
                outcomes.append(self._finish_cell(job, plan, computed=0, stream=None, cost=None, share=0.0))
        return outcomes

    # ------------------------------------------------------------ step 3: with the model

    def _with_model(self, tasks: Sequence[TaskSpec], lm_eval_tasks: Sequence[Any], usable: Sequence[AdapterSpec]) -> list[CellOutcome]:
        from harness.interop.lm_eval_tasks import run_lm_eval_cells
        from harness.run.adapter_host import AdapterHost
        from harness.run.loading import load_base

        loaded = load_base(self.spec.model, num_labels=self._num_labels(tasks))
        host = AdapterHost(loaded, multi_lora=self.spec.multi_lora)
        base = BaseFacts.of(loaded, self.spec)
        attached, outcomes = self._attach(host, [*tasks, *lm_eval_tasks], usable)
        if self.spec.spectral:
            self._store_spectra(loaded, attached)
        for task in tasks:
            outcomes += self._run_task(host, base, task, attached)
        outcomes += run_lm_eval_cells(self, host, attached, lm_eval_tasks)
        return outcomes

    @staticmethod
    def _num_labels(tasks: Sequence[TaskSpec]) -> int | None:
        """Encoders get a classifier head as wide as the widest task's choices."""
        return max((len(task.choices) for task in tasks), default=0) or None

    def _attach(self, host: Any, tasks: Sequence[Any], usable: Sequence[AdapterSpec]) -> tuple[dict[str, Any], list[CellOutcome]]:
        """Attach and probe every adapter; a bad one fails its own cells only."""
        from harness.run.adapter_checks import CONFIG_FILE, check_peft_type

        attached: dict[str, Any] = {}
        failures: list[CellOutcome] = []
        probe_prompts = self._probe_prompts(host, [task for task in tasks if isinstance(task, TaskSpec)])
        for adapter in usable:
            try:
                check_peft_type(adapter, adapter.path / CONFIG_FILE)
                info = host.add(adapter)
                if probe_prompts is not None:
                    _check_probe(adapter, host.probe(adapter.name, probe_prompts))
                attached[adapter.name] = info
            except CellError as error:
                if adapter.name in host.adapters:
                    host.remove(adapter.name)
                failures += [self.fail_cell(task, adapter, str(error)) for task in tasks]
        return attached, failures

    def _store_spectra(self, base: Any, attached: dict[str, Any]) -> None:
        """Spectral diagnostics of every attached adapter against this base (exact, from the factors).

        Intruder dimensions are left to `harness diagnose --intruders`: they need a top-k SVD of every
        merged layer (about half a second per layer on 2 cores), which would dwarf a small run.
        """
        from harness.diagnostics.spectral import diagnose
        from harness.diagnostics.spectral_output import to_records
        from harness.run.base_weights import dense_state_dict

        weights = dense_state_dict(base.model)
        for info in attached.values():
            if not self.store.spectra(info.weights_hash):
                records = to_records(diagnose(info.path, base_weights=weights, intruder_k=0))
                self.store.set_spectra(info.weights_hash, records)

    def _probe_prompts(self, host: Any, tasks: Sequence[TaskSpec]) -> list[str] | None:
        if not tasks:
            return None
        from harness.prompts import classify_texts, render

        task = tasks[0]
        examples = load_examples(task, limit=PROBE_SIZE)
        if host.base.kind == "encoder":
            return [classify_texts(task, example)[0][:PROBE_CHARS] for example in examples]
        return [render(task, example, self.spec.prompt, host.base.tokenizer)[-PROBE_CHARS:] for example in examples]

    def fail_cell(self, task: Any, adapter: AdapterSpec | None, error: str) -> CellOutcome:
        return record_failed_cell(self.store, self.run_id, self.spec.model.name, task, adapter, error)

    def _run_task(self, host: Any, base: BaseFacts, task: TaskSpec, attached: dict[str, Any]) -> list[CellOutcome]:
        try:
            plan = self._plan_task(task, base, attached)
        except HarnessError as error:
            variants = ([None] if self.spec.include_base else []) + [a for a in self.spec.adapters if a.name in attached]
            return [self.fail_cell(task, adapter, str(error)) for adapter in variants]
        jobs = [self._prepare_cell(cell, plan, base, attached) for cell in plan.cells]
        if self.spec.cost_profile:  # each adapter alone on a probe set, once per weights and settings
            from harness.run.cost_profile import ProbeTarget, profile_adapters

            targets = [ProbeTarget(job.cell.adapter.name if job.cell.adapter else None, job.adapter_hash) for job in jobs]
            profile_adapters(self.store, host, plan.task, plan.settings, plan.prompts, base.weights_hash, targets, self.spec.batch_size, self.progress)
        computed, stream = self._compute_missing(host, plan, jobs)
        costs = self._costs(host, attached)
        work = {job.cell_id: _work(self._fresh(job)) for job in jobs}
        total = sum(work.values())
        return [
            self._finish_cell(job, plan, computed.get(job.cell_id, 0), stream, costs.get(job.cell.label), work[job.cell_id] / total if total else 0.0)
            for job in jobs
        ]

    # ------------------------------------------------------------ planning (shared by steps 2 and 3)

    def _plan_task(self, task: TaskSpec, base: BaseFacts, adapters: dict[str, Any]) -> TaskPlan:
        """Settings, examples, prompts and cells of one task; HarnessError on bad data or templates."""
        settings = settings_for(self.spec, task, base.as_settings())
        examples = load_examples(task, limit=self.spec.limit)
        cells = [CellPlan(task, None)] if self.spec.include_base else []
        cells += [CellPlan(task, adapter) for adapter in self.spec.adapters if adapter.name in adapters]
        prompts = self._render_all(task, examples, base.tokenizer, settings["output_type"])
        return TaskPlan(task, settings, examples, prompts, cells)

    def _render_all(self, task: TaskSpec, examples: Sequence[Example], tokenizer: Any, output_type: str) -> list[str]:
        from harness.prompts import classify_texts, render

        if output_type == "classify":
            return [json.dumps(classify_texts(task, example)) for example in examples]
        shots = load_examples(task, task.few_shot_split, limit=task.few_shot) if task.few_shot else []
        return [render(task, example, self.spec.prompt, tokenizer, shots) for example in examples]

    @staticmethod
    def _keys(cell: CellPlan, plan: TaskPlan, base: BaseFacts, adapters: dict[str, Any]) -> list[str]:
        info = adapters.get(cell.adapter.name) if cell.adapter else None
        return [
            prediction_key(
                base_hash=base.weights_hash,
                adapter_hash=info.weights_hash if info else None,
                task_hash=cell.task.content_hash(),
                example_id=example.id,
                prompt=prompt,
                settings=plan.settings,
                prompt_version=PROMPT_VERSION,
            )
            for example, prompt in zip(plan.examples, plan.prompts)
        ]

    def _prepare_cell(self, cell: CellPlan, plan: TaskPlan, base: BaseFacts, adapters: dict[str, Any]) -> _CellJob:
        """Record the cell as running with its planned prediction keys (what resuming and the gate read)."""
        info = adapters.get(cell.adapter.name) if cell.adapter else None
        keys = self._keys(cell, plan, base, adapters)
        adapter_hash = info.weights_hash if info else None
        fields = {
            "base": self.spec.model.name,
            "base_hash": base.weights_hash,
            "adapter": cell.adapter.name if cell.adapter else None,
            "adapter_path": str(cell.adapter.path) if cell.adapter else None,
            "adapter_hash": adapter_hash,
            "method": info.recorded_method if info else None,
            "rank": info.rank if info else None,
            "trainable_params": info.trainable_params if info else None,
            "adapter_bytes": folder_bytes(cell.adapter.path) if cell.adapter else None,
            "task": cell.task.name,
            "split": cell.task.eval_split,
            # filters change only how answers are scored, so they are recorded here and kept out of the key
            "settings_json": plan.settings | ({"filters": list(plan.task.filters)} if plan.task.filters else {}),
            "status": "running",
            "error": None,
            "n_examples": len(plan.examples),
        }
        cell_id = self.store.upsert_cell(self.run_id, cell_key(cell.task.name, cell.label), fields)
        self.store.set_cell_examples(cell_id, [(example.id, key) for example, key in zip(plan.examples, keys)])
        return _CellJob(cell_id, cell, keys, list(plan.prompts), [e.id for e in plan.examples], adapter_hash, base.weights_hash)

    # ------------------------------------------------------------ computing, scoring, timing

    def _compute_missing(self, host: Any, plan: TaskPlan, jobs: Sequence[_CellJob]) -> tuple[dict[int, int], Any]:
        """Ask the engine for every prediction the store lacks, all cells of the task in one stream."""
        task, settings = plan.task, plan.settings
        existing = self.store.existing_keys(key for job in jobs for key in job.keys)
        owners: dict[str, tuple[_CellJob, str]] = {}
        requests: list[Any] = []
        for job in jobs:
            adapter = job.cell.adapter.name if job.cell.adapter else None
            for key, prompt, example_id in zip(job.keys, job.prompts, job.example_ids):
                if key in existing or key in owners:
                    continue
                owners[key] = (job, example_id)
                requests.append(_request(settings["output_type"], key, prompt, adapter, task))
        computed: dict[int, int] = {}
        if not requests:
            return computed, None
        advance = self.progress(f"{task.name}: {len(jobs)} cells", len(requests)) if self.progress else None

        def on_result(result: Any) -> None:
            job, example_id = owners[result.key]
            self.store.add_prediction(_prediction(result, example_id), task=task.name, base_hash=job.base_hash, adapter_hash=job.adapter_hash)
            job.computed_keys.add(result.key)
            computed[job.cell_id] = computed.get(job.cell_id, 0) + 1
            if advance:
                advance(1)

        return computed, self._stream(host, settings, requests, on_result)

    def _stream(self, host: Any, settings: dict[str, Any], requests: list[Any], on_result: Any) -> Any:
        """Run the engine over `requests` under a TimingRecorder; return its summary."""
        import torch

        from harness.diagnostics.peak_flops import measure_peak_flops
        from harness.diagnostics.recorder import TimingRecorder
        from harness.run import engine

        torch.manual_seed(self.spec.seed)
        output_type = settings["output_type"]
        base = host.base
        recorder = TimingRecorder(base.device, base.dtype, peak_flops=measure_peak_flops(base.device, base.dtype))
        with recorder:
            if output_type == "generate_until":
                from harness.spec import GenerationSettings

                generation = GenerationSettings(**settings["generation"])
                engine.generate_until(host, requests, generation, self.spec.batch_size, on_result, recorder=recorder)
            elif output_type == "multiple_choice":
                engine.multiple_choice(host, requests, self.spec.batch_size, on_result, recorder=recorder)
            else:
                engine.classify(host, requests, self.spec.batch_size, on_result, recorder=recorder)
        return recorder.summary()

    def _costs(self, host: Any, attached: dict[str, Any]) -> dict[str, Any]:
        """FLOPs per token of the base and of each adapter (unmerged: the adapter's extra matmuls)."""
        from harness.diagnostics.flops import ModelCost, model_cost

        bare = model_cost(host.base.model)
        costs = {BASE_LABEL: bare}
        for name, info in attached.items():
            costs[name] = ModelCost(bare.params, info.trainable_params, False, bare.num_layers, bare.hidden_size)
        return costs

    def _fresh(self, job: _CellJob) -> list[Prediction]:
        """The cell's predictions made by this run (cached ones cost no time)."""
        predictions = self.store.cell_predictions(job.cell_id)
        return [p for p in predictions if p.key in job.computed_keys]

    def _cell_timing(self, job: _CellJob, stream: Any, cost: Any, share: float) -> dict[str, Any]:
        from harness.diagnostics.cell_share import cell_share

        fresh = self._fresh(job)
        return cell_share(
            stream,
            prompt_lengths=[p.prompt_tokens for p in fresh],
            new_lengths=[p.new_tokens for p in fresh],
            latencies=[p.seconds for p in fresh],
            cost=cost,
            share=share,
        )

    def _finish_cell(self, job: _CellJob, plan: TaskPlan, computed: int, stream: Any, cost: Any, share: float) -> CellOutcome:
        from harness.scoring import score_examples

        task, examples = plan.task, plan.examples
        predictions = self.store.cell_predictions(job.cell_id)
        label = job.cell.label
        if len(predictions) != len(examples):
            error = f"{len(examples) - len(predictions)} of {len(examples)} predictions are missing; re-run to resume."
            self.store.set_cell_status(job.cell_id, "failed", error)
            return CellOutcome(job.cell_id, task.name, label, "failed", error, computed=computed)
        report = score_examples(task, examples, [p.prediction for p in predictions], seed=self.spec.seed)
        self.store.set_metrics(job.cell_id, report.corpus)
        self.store.set_example_scores(job.cell_id, [(e.id, s) for e, s in zip(examples, report.per_example)])
        if computed:
            timing = self._cell_timing(job, stream, cost, share)
        else:  # every answer came from the store: keep the timing of the run that made them
            timing = self.store.timing(job.cell_id) or self.store.earlier_timing(job.cell_id) or {}
        self.store.set_timing(job.cell_id, timing)
        self.store.set_cell_status(job.cell_id, "done")
        metrics = {name: {"value": v.value, "low": v.low, "high": v.high} for name, v in report.corpus.items()}
        return CellOutcome(job.cell_id, task.name, label, "done", None, metrics, timing, computed)


def _check_probe(adapter: AdapterSpec, difference: float) -> None:
    """A probe with non-finite logits fails the cell: a NaN adapter must never be scored."""
    if not math.isfinite(difference):
        raise CellError(
            f"Adapter '{adapter.name}' yields non-finite logits (NaN or inf) on the probe batch although its weights are finite; "
            "its scaling or config overflows this base: retrain or re-save it."
        )


@dataclass
class _CellJob:
    cell_id: int
    cell: CellPlan
    keys: list[str]
    prompts: list[str]
    example_ids: list[str]
    adapter_hash: str | None
    base_hash: str
    computed_keys: set[str] = field(default_factory=set)


def _request(output_type: str, key: str, prompt: str, adapter: str | None, task: TaskSpec) -> Any:
    from harness.run import engine

    if output_type == "generate_until":
        return engine.GenRequest(key=key, prompt=prompt, adapter=adapter)
    if output_type == "multiple_choice":
        return engine.ChoiceRequest(key=key, prompt=prompt, choices=tuple(task.choices), adapter=adapter)
    text, pair = json.loads(prompt)
    return engine.ClassifyRequest(key=key, text=text, text_pair=pair, adapter=adapter)


def _prediction(result: Any, example_id: str) -> Prediction:
    if hasattr(result, "text"):
        return Prediction(result.key, example_id, result.text, {}, result.prompt_tokens, result.new_tokens, result.seconds)
    details = {"scores": [float(score) for score in result.scores]}
    return Prediction(result.key, example_id, str(result.choice), details, 0, 0, result.seconds)


def _work(predictions: Sequence[Prediction]) -> float:
    """Tokens processed for these predictions; classification rows (no token counts) count one each."""
    tokens = sum(p.prompt_tokens + p.new_tokens for p in predictions)
    return float(tokens) if tokens else float(len(predictions))
