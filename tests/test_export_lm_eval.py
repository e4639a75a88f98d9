"""`harness export-lm-eval`: our resume_json under lm_eval makes the predictions `harness run` makes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from helpers_lm_eval import lm_eval_model_folder

from harness.interop.lm_eval_export import aggregation_name, export_tasks
from harness.registry import task_registry
from harness.run.matrix import execute
from harness.spec import ModelSpec, RunSpec
from harness.store import Store

LIMIT, MAX_NEW_TOKENS = 4, 24


def _tagged_loader() -> type[yaml.SafeLoader]:
    """A YAML loader that reads lm-eval's `!function` tag as plain text."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: "!function " + loader.construct_scalar(node))
    return Loader


def test_export_command_writes_lm_eval_yaml_data_and_utils(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    args = ["export-lm-eval", "--out", str(tmp_path / "out"), "--task", "resume_json", "--limit", "2", "--max-new-tokens", str(MAX_NEW_TOKENS)]
    printed = CliRunner().invoke(app, args)
    assert printed.exit_code == 0, printed.output
    path = tmp_path / "out" / "resume_json.yaml"
    assert str(path) in printed.output and "lm_eval --model hf" in printed.output
    config = yaml.load(path.read_text(), Loader=_tagged_loader())
    assert config["dataset_path"] == "json" and config["doc_to_text"] == "prompt"
    assert config["generation_kwargs"] == {"until": ["###"], "max_gen_toks": MAX_NEW_TOKENS, "do_sample": False}
    assert config["process_results"] == "!function utils.process_results"
    data = Path(config["dataset_kwargs"]["data_files"]["test"])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["prompt"].startswith("###resume: ") and rows[0]["prompt"].endswith("###json:")
    assert data.parent == path.parent, "the data is written into the export folder, never read from the shared mirror"
    assert f"{aggregation_name('resume_json', 'field_f1')} = aggregator(" in (path.parent / "utils.py").read_text()


def test_exported_resume_json_under_lm_eval_predicts_what_harness_run_predicts(tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = tmp_path / "export"
    export_tasks([task_registry().get("resume_json")], out, limit=LIMIT, max_new_tokens=MAX_NEW_TOKENS)
    store = Store(tmp_path / "s.sqlite")
    spec = RunSpec(tasks=("resume_json",), model=ModelSpec(name="smollm2-135m"), limit=LIMIT, max_new_tokens=MAX_NEW_TOKENS, batch_size=4)
    result = execute(spec, store)
    [cell] = store.cells(run_id=result.run_id)
    ours = [p.prediction for p in store.cell_predictions(cell.cell_id)]

    direct = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={lm_eval_model_folder(tmp_path / 'smollm2')}", tasks=["resume_json"],
        task_manager=TaskManager(include_path=[str(out)], include_defaults=False), limit=LIMIT, batch_size=4, device="cpu",
    )
    samples = sorted(direct["samples"]["resume_json"], key=lambda s: s["doc_id"])
    assert [s["filtered_resps"][0] for s in samples] == ours
    theirs = direct["results"]["resume_json"]
    for name, value in store.metrics(cell.cell_id).items():
        assert theirs[f"{name},none"] == value.value, name
