"""The results store: content-hash keys, no doubled predictions, WAL mode, round trips."""

from __future__ import annotations

from pathlib import Path

from harness.metrics.base import MetricValue
from harness.store import Prediction, Store, prediction_key

KEY_ARGS = dict(base_hash="b", adapter_hash="a", task_hash="t", example_id="e1", prompt="p", settings={"max_new_tokens": 8}, prompt_version=1)


def test_key_changes_with_every_ingredient() -> None:
    reference = prediction_key(**KEY_ARGS)
    assert prediction_key(**KEY_ARGS) == reference
    for name, other in [("base_hash", "b2"), ("adapter_hash", None), ("task_hash", "t2"), ("example_id", "e2"),
                        ("prompt", "p2"), ("settings", {"max_new_tokens": 9}), ("prompt_version", 2)]:
        assert prediction_key(**{**KEY_ARGS, name: other}) != reference, name


def test_predictions_are_never_doubled(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    prediction = Prediction("k1", "e1", "text", {}, 3, 4, 0.1)
    store.add_prediction(prediction, task="t", base_hash="b", adapter_hash=None)
    store.add_prediction(Prediction("k1", "e1", "other", {}, 3, 4, 0.1), task="t", base_hash="b", adapter_hash=None)
    assert store.count_predictions() == 1
    assert store.existing_keys(["k1", "k2"]) == {"k1"}
    assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cell_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.start_run("r1", {"tasks": ["t"]})
    cell_id = store.upsert_cell("r1", "c1", {"base": "m", "adapter": "lora", "task": "t", "split": "test", "settings_json": {"x": 1}, "status": "running"})
    assert store.upsert_cell("r1", "c1", {"base": "m", "adapter": "lora", "task": "t", "split": "test", "settings_json": {"x": 1}, "status": "running"}) == cell_id
    store.add_prediction(Prediction("k1", "e1", "hello", {"scores": [1.0]}, 3, 4, 0.5), task="t", base_hash="m", adapter_hash="h")
    store.set_cell_examples(cell_id, [("e1", "k1")])
    store.set_metrics(cell_id, {"bleu": MetricValue(10.0, 5.0, 15.0)})
    store.set_example_scores(cell_id, [("e1", {"bleu": 10.0})])
    store.set_timing(cell_id, {"wall_seconds": 1.5})
    store.set_cell_status(cell_id, "done")
    store.finish_run("r1", "done")

    reopened = Store(tmp_path / "s.sqlite")
    cell = reopened.cells(run_id="r1")[0]
    assert (cell.status, cell.adapter, cell.settings) == ("done", "lora", {"x": 1})
    assert reopened.cell_predictions(cell_id)[0].details == {"scores": [1.0]}
    assert reopened.metrics(cell_id)["bleu"] == MetricValue(10.0, 5.0, 15.0)
    assert reopened.example_scores(cell_id) == {"e1": {"bleu": 10.0}}
    assert reopened.timing(cell_id) == {"wall_seconds": 1.5}
    assert reopened.run("r1")["status"] == "done"
