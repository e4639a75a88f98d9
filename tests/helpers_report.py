"""A small, plausible results store for the report tests, written through the Store API.

One run over real task names and real example ids: resume_json (base, LoRA r4/r8/r16, IA3 and
a failed r32), glue_sst2 (base, LoRA r8/r16) and the private resume_json_real (base, LoRA r16).
Predictions are made from the gold answers with adapter-specific damage and scored by the real
scorers, so metrics, intervals and per-example scores agree with each other. One prediction and
one error message carry script injections; every page must show them as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.data import load_examples
from harness.registry import task_registry
from harness.scoring import score_examples
from harness.spec import Example
from harness.store import Prediction, Store

RUN_ID = "run-report-demo-0001"
BASE = "smollm2-135m"
SCRIPT_INJECTION = "<script>window.__pwned = 1;</script>"
ATTRIBUTE_INJECTION = '"><img src=x onerror="window.__pwned = 2">'
ERROR_INJECTION = '<img src=x onerror="window.__pwned = 3">'


@dataclass(frozen=True)
class AdapterFacts:
    name: str
    method: str | None
    rank: int | None
    params: int | None


ADAPTERS = {
    "base": AdapterFacts("base", None, None, None),
    "lora_r4": AdapterFacts("lora_r4", "LORA", 4, 230_400),
    "lora_r8": AdapterFacts("lora_r8", "LORA", 8, 460_800),
    "lora_r16": AdapterFacts("lora_r16", "LORA", 16, 921_600),
    "ia3": AdapterFacts("ia3", "IA3", None, 27_648),
    "lora_r32": AdapterFacts("lora_r32", "LORA", 32, 1_843_200),
}


@dataclass(frozen=True)
class DemoRun:
    store: Store
    run_id: str
    adapters_dir: Path
    private_texts: tuple[str, ...]  # substrings of real people's resumes that must never be shown


def _resume_prediction(adapter: str, example: Example, index: int) -> str:
    gold = json.loads(example.references[0])
    if adapter == "base":
        return "Here is the resume: " + gold["name"] + " works as " + gold["experience"][:30]
    if adapter == "lora_r4" and index == 1:
        return SCRIPT_INJECTION + ATTRIBUTE_INJECTION + " {not json"
    if adapter == "lora_r4":
        gold = {**gold, "skills": gold["skills"][:1], "phone": "", "name": ATTRIBUTE_INJECTION}
    elif adapter == "lora_r8":
        gold = {**gold, "skills": gold["skills"][:-1], "education": gold["education"].split(";")[0]}
    elif adapter == "ia3":
        gold = {**gold, "skills": [], "experience": gold["experience"].split(" ")[0]}
    return json.dumps(gold)


def _sst2_prediction(adapter: str, example: Example, index: int) -> str:
    label = int(example.label or 0)
    wrong = {"base": index % 2 == 0, "lora_r8": index == 3, "lora_r16": False}[adapter]
    return str(1 - label if wrong else label)


def _timing(facts: AdapterFacts, n: int) -> dict[str, float]:
    rank = facts.rank or 1
    latency = 0.40 + 0.01 * rank
    return {
        "wall_seconds": latency * n,
        "examples": n,
        "examples_per_s": 1 / latency,
        "generated_tokens_per_s": 120.0 / latency,
        "latency_mean": latency,
        "latency_p50": latency,
        "latency_p95": latency * 1.3,
        "peak_memory_bytes": 600_000_000 + (facts.params or 0) * 4,
    }


def _spectrum(facts: AdapterFacts) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for block in range(4):
        for module in ("q_proj", "v_proj"):
            rank = facts.rank or 1
            records.append({
                "record": "layer", "layer": f"model.layers.{block}.self_attn.{module}", "module": module,
                "rank": rank, "primary": True, "stable_rank": 1.0 + 0.3 * rank / (1 + block),
                "spectral_norm": 0.1 * (block + 1), "relative_update": 0.002 * rank * (block + 1),
                "intruders": (rank // 8) + (block % 2), "effective_rank": rank * (0.9 - 0.1 * block) + 0.1,
                "singular_values": json.dumps([1.0 / (i + 1) ** (1 + block / 4) for i in range(rank)]),
            })  # fmt: skip
    records.append({"record": "summary", "layers": 8, "median_stable_rank": 2.0})
    return records


def _write_card(folder: Path, facts: AdapterFacts) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if facts.rank in (8, 16):
        steps = list(range(0, 200, 20))
        card = {
            "recipe": facts.name,  # the keys harness.zoo.train writes
            "steps": steps[-1],
            "train_loss": [[s, 2.5 / (1 + s / (40 + facts.rank))] for s in steps],
            "dev_loss": [[s, 2.6 / (1 + s / (50 + facts.rank))] for s in steps[::3]],
            "final_dev_loss": 0.61,
        }
        (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")


def _add_cell(store: Store, task: str, facts: AdapterFacts, examples: list[Example], predictions: list[str], adapters_dir: Path) -> None:
    is_base = facts.name == "base"
    folder = adapters_dir / facts.name
    if not is_base:
        _write_card(folder, facts)
    adapter_hash = None if is_base else f"hash-{facts.name}"
    cell_id = store.upsert_cell(RUN_ID, f"{task}/{facts.name}", {
        "base": BASE, "base_hash": "base-hash", "adapter": None if is_base else facts.name,
        "adapter_path": None if is_base else str(folder), "adapter_hash": adapter_hash,
        "method": facts.method, "rank": facts.rank, "trainable_params": facts.params,
        "adapter_bytes": None if is_base else (facts.params or 0) * 4 + 1024,
        "task": task, "split": "test", "settings_json": {"max_new_tokens": 32}, "status": "running",
        "n_examples": len(examples),
    })  # fmt: skip
    if facts.name == "lora_r32":
        store.set_cell_status(cell_id, "failed", f"Adapter 'lora_r32' was trained for another base {ERROR_INJECTION}; pick an adapter of {BASE}.")
        return
    pairs = []
    for example, text in zip(examples, predictions):
        key = f"{task}/{facts.name}/{example.id}"
        store.add_prediction(Prediction(key, example.id, text, {}, 50, 20, 0.4), task=task, base_hash="base-hash", adapter_hash=adapter_hash)
        pairs.append((example.id, key))
    store.set_cell_examples(cell_id, pairs)
    report = score_examples(task_registry().get(task), examples, predictions)
    store.set_metrics(cell_id, report.corpus)
    store.set_example_scores(cell_id, [(e.id, s) for e, s in zip(examples, report.per_example)])
    store.set_timing(cell_id, _timing(facts, len(examples)))
    if adapter_hash and facts.method:
        store.set_spectra(adapter_hash, _spectrum(facts))
    store.set_cell_status(cell_id, "done")


def build_demo_store(path: Path, adapters_dir: Path) -> DemoRun:
    """Write the demo run into a fresh store at `path` (adapter folders and cards under adapters_dir)."""
    store = Store(path)
    store.start_run(RUN_ID, {"tasks": ["resume_json", "glue_sst2", "resume_json_real"]})
    registry = task_registry()
    resumes = load_examples(registry.get("resume_json"), limit=4)
    for name in ("base", "lora_r4", "lora_r8", "lora_r16", "ia3", "lora_r32"):
        predictions = [_resume_prediction(name, example, i) for i, example in enumerate(resumes)]
        _add_cell(store, "resume_json", ADAPTERS[name], resumes, predictions, adapters_dir)
    reviews = load_examples(registry.get("glue_sst2"), limit=6)
    for name in ("base", "lora_r8", "lora_r16"):
        predictions = [_sst2_prediction(name, example, i) for i, example in enumerate(reviews)]
        _add_cell(store, "glue_sst2", ADAPTERS[name], reviews, predictions, adapters_dir)
    real = load_examples(registry.get("resume_json_real"), limit=3)
    for name in ("base", "lora_r16"):
        predictions = [_resume_prediction(name, example, i) for i, example in enumerate(real)]
        _add_cell(store, "resume_json_real", ADAPTERS[name], real, predictions, adapters_dir)
    store.finish_run(RUN_ID, "failed")
    private = tuple(json.loads(e.references[0])["name"] for e in real) + tuple(e.inputs["resume"][40:90] for e in real)
    return DemoRun(store, RUN_ID, adapters_dir, private)


def add_constant_private_cell(run: DemoRun) -> str:
    """A finished resume_json_real cell (lora_r8) whose every prediction is one real person's gold
    answer: the constant-output flag would quote it. Returns that text, which nothing may show."""
    real = load_examples(task_registry().get("resume_json_real"), limit=3)
    text = real[0].references[0]
    _add_cell(run.store, "resume_json_real", ADAPTERS["lora_r8"], real, [text] * len(real), run.adapters_dir)
    return text
