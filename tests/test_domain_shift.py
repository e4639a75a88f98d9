"""The domain-shift gap: real resumes (resume_json_real) against the synthetic ones the adapters learnt from."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_report import build_demo_store

from harness.data import load_examples
from harness.metrics import get_metric
from harness.metrics.filters import apply_filters
from harness.registry import task_registry
from harness.report import domain_shift
from harness.report.leaderboard import build
from harness.report.site import task_page, write_report
from harness.scoring import scoring_input
from harness.spec import TaskSpec


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("shift")
    return build_demo_store(folder / "results.sqlite", folder / "adapters")


def test_the_in_domain_side_is_scored_as_the_shifted_task_scores(demo) -> None:
    boards, _ = build(demo.store)
    shifts = domain_shift.board_shifts(demo.store, boards)
    assert shifts["resume_json"] == [] and shifts["glue_sst2"] == []  # neither names a task it shifts from
    found = {shift.adapter: shift for shift in shifts["resume_json_real"]}
    assert sorted(found) == ["base", "lora_r16"]  # the adapters finished on both tasks
    real, synthetic = task_registry().get("resume_json_real"), task_registry().get("resume_json")
    rows = {(b.task, r.adapter): r for b in boards for r in b.rows}
    for shift in found.values():
        assert shift.source == "resume_json" and shift.n_in_domain == 4 and shift.n_shifted == 3
        assert "f1_phone" not in shift.values  # resume_json_real scores no phone, so neither side may
        for value in shift.values.values():
            assert value.gap == pytest.approx(value.shifted - value.in_domain)
            assert value.low is not None and value.high is not None and value.low <= value.gap <= value.high
    # the synthetic side, re-scored by hand with the real task's fields and filters
    predictions = demo.store.cell_predictions(rows[("resume_json", "lora_r16")].cell_id)
    examples = {e.id: e for e in load_examples(synthetic, limit=4)}
    texts = [apply_filters(real.filters, p.prediction) for p in predictions]
    data = scoring_input(real, [examples[p.example_id] for p in predictions], texts)
    expected = get_metric(real.metrics[0]).corpus(data)["field_f1"]
    assert found["lora_r16"].values["field_f1"].in_domain == pytest.approx(expected)
    # the shifted side is the stored score of the resume_json_real cell
    stored = demo.store.metrics(rows[("resume_json_real", "lora_r16")].cell_id)
    assert found["lora_r16"].values["field_f1"].shifted == pytest.approx(stored["field_f1"].value)


def test_the_task_page_and_the_export_show_the_gap(demo, tmp_path: Path) -> None:
    out = write_report(demo.store, tmp_path / "html").parent
    page = (out / task_page("resume_json_real")).read_text(encoding="utf-8")
    assert "Domain shift from resume_json" in page and "field_f1: in-domain → here" in page
    assert "Domain shift" not in (out / task_page("resume_json")).read_text(encoding="utf-8")
    table = (out / "domain_shift.md").read_text(encoding="utf-8")
    assert "| smollm2-135m | lora_r16 | 4 / 3 |" in table


def test_shift_of_is_checked_and_leaves_prediction_keys_alone() -> None:
    real = task_registry().get("resume_json_real")
    with pytest.raises(ValueError, match="names the task itself"):
        TaskSpec.model_validate(real.model_dump() | {"shift_of": "resume_json_real", "folder": None})
    # only reports read shift_of: the stored predictions stay valid
    assert real.model_copy(update={"shift_of": None}).content_hash() == real.content_hash()
