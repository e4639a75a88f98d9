"""`--task lm_eval:NAME` on SmolLM2 with two LoRA adapters: one base load, lm-eval's own numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_lm_eval import lm_eval_model_folder
from helpers_models import make_adapter

from harness.interop import lm_eval_tasks as lm_eval_bridge
from harness.run import loading
from harness.run.bases import smollm2_folder
from harness.zoo.adapters import resolve_adapters
from harness.interop.lm_eval_tasks import LM_EVAL_PREFIX, metric_values, resolve_lm_eval_task
from harness.run.matrix import execute
from harness.spec import ModelSpec, RunSpec
from harness.store import Store

QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("What colour is the sky on a clear day?", "blue"),
    ("How many legs does a dog have?", "four"),
    ("What is 2 plus 2?", "4"),
    ("Which animal says meow?", "a cat"),
]
TASK_YAML = """task: tiny_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: " {{{{answer}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def lm_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lm_tasks")
    data = folder / "tiny_qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS), encoding="utf-8")
    (folder / "tiny_qa.yaml").write_text(TASK_YAML.format(data=data), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def smollm2_adapters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = smollm2_folder()
    return [make_adapter(base, tmp_path_factory.mktemp(f"smol_lora{seed}"), "causal", "lora", seed=seed) for seed in (1, 2)]


def loglikelihoods(texts: list[str]) -> list[float]:
    return [json.loads(text)[0][0] for text in texts]  # filtered_resps of a loglikelihood sample: [[logprob, is_greedy]]


def test_lm_eval_task_on_our_model_matches_lm_eval_with_peft(lm_tasks, smollm2_adapters, tmp_path, monkeypatch) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    loads: list[str] = []
    real_load = loading.load_base
    monkeypatch.setattr(loading, "load_base", lambda spec, **kw: loads.append(spec.name) or real_load(spec, **kw))
    spec = RunSpec(tasks=("lm_eval:tiny_qa",), model=ModelSpec(name="smollm2-135m"), adapters=tuple(resolve_adapters(smollm2_adapters)), limit=4, batch_size=4)
    store = Store(tmp_path / "s.sqlite")
    result = execute(spec, store, include_paths=[lm_tasks])
    assert loads == ["smollm2-135m"], "the base must be loaded once for the whole sweep"
    assert [(o.adapter, o.status) for o in result.outcomes] == [("base", "done"), (smollm2_adapters[0].name, "done"), (smollm2_adapters[1].name, "done")]

    folder = lm_eval_model_folder(tmp_path / "smollm2")
    manager = TaskManager(include_path=[str(lm_tasks)], include_defaults=False)
    cells = {cell.label: cell for cell in store.cells(run_id=result.run_id)}
    answers = {"base": loglikelihoods([p.prediction for p in store.cell_predictions(cells["base"].cell_id)])}
    for adapter in smollm2_adapters:
        args = f"pretrained={folder},peft={adapter}"
        direct = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=["tiny_qa"], task_manager=manager, limit=4, batch_size=4, device="cpu")
        cell = cells[adapter.name]
        ours = store.metrics(cell.cell_id)["acc"]
        assert ours.value == direct["results"]["tiny_qa"]["acc,none"]
        stored = loglikelihoods([p.prediction for p in store.cell_predictions(cell.cell_id)])
        theirs = [s["filtered_resps"][0][0] for s in sorted(direct["samples"]["tiny_qa"], key=lambda s: s["doc_id"])]
        assert stored == pytest.approx(theirs, abs=1e-4)
        answers[cell.label] = stored
    assert answers["base"] != answers[smollm2_adapters[0].name] != answers[smollm2_adapters[1].name], "adapters must change the answers"

    def no_model_call(*args, **kwargs):
        raise AssertionError("lm-eval was run although every sample is stored")

    monkeypatch.setattr(lm_eval_bridge, "evaluate", no_model_call)
    again = execute(spec, store, include_paths=[lm_tasks])
    assert [o.computed for o in again.outcomes] == [0, 0, 0]
    assert [o.metrics for o in again.outcomes] == [o.metrics for o in result.outcomes]


def test_include_path_tasks_are_found_without_lm_eval_builtins(lm_tasks) -> None:
    task = resolve_lm_eval_task(LM_EVAL_PREFIX + "tiny_qa", [lm_tasks])
    assert task.local and task.task == "tiny_qa" and task.name == "lm_eval:tiny_qa"


def test_lm_eval_results_become_metric_values_with_intervals() -> None:
    values = metric_values({"alias": "x", "acc,none": 0.5, "acc_stderr,none": 0.1, "exact_match,strict": 1.0, "exact_match_stderr,strict": "N/A"})
    assert values["acc"].value == 0.5 and values["acc"].low == pytest.approx(0.5 - 0.196, abs=1e-3)
    assert values["exact_match,strict"].low == values["exact_match,strict"].high == 1.0
    assert set(values) == {"acc", "exact_match,strict"}
