"""Degenerate results: constant predictions and scores a majority-class answer matches."""

from __future__ import annotations

from harness.metrics.base import MetricValue
from harness.report.degenerate import constant_output, degenerate_flags, majority_rate, task_is_private


def test_constant_output_needs_two_equal_predictions() -> None:
    assert constant_output(["1", " 1", "1\n"]) == "1"
    assert constant_output(["1", "0"]) is None
    assert constant_output(["1"]) is None


def test_all_one_class_with_majority_accuracy_is_flagged_twice() -> None:
    # the MRPC case: always "1" on data that is 68% "1" scores 0.68
    gold = ["1"] * 17 + ["0"] * 8
    assert majority_rate(gold) == ("1", 0.68)
    flags = degenerate_flags(["1"] * 25, gold, {"accuracy": MetricValue(0.68, 0.48, 0.83)})
    assert [flag.kind for flag in flags] == ["constant", "majority"]
    assert "0.680" in flags[1].text


def test_a_clear_win_over_the_majority_is_not_flagged() -> None:
    gold = ["1"] * 13 + ["0"] * 12
    predictions = gold[:-2] + ["1", "1"]
    assert degenerate_flags(predictions, gold, {"accuracy": MetricValue(0.92, 0.75, 0.98), "mcc": MetricValue(0.85, 0.6, 0.95)}) == []


def test_mcc_interval_holding_zero_is_flagged_and_unknown_gold_only_checks_constants() -> None:
    flags = degenerate_flags(["1", "0", "1"], ["1", "1", "0"], {"mcc": MetricValue(0.1, -0.3, 0.5)})
    assert [flag.kind for flag in flags] == ["majority"]
    assert degenerate_flags(["x", "y"], None, {"accuracy": MetricValue(0.5, 0.1, 0.9)}) == []


def test_a_private_task_s_constant_answer_is_flagged_without_quoting_it() -> None:
    answer = '{"name": "A Real Person", "email": "a@example.org"}'
    (flag,) = degenerate_flags([answer] * 3, None, {}, show_text=False)
    assert flag.kind == "constant" and "A Real Person" not in flag.text and "private" in flag.text
    assert "A Real Person" in degenerate_flags([answer] * 3, None, {})[0].text
    # a task the registry does not know may have held private data: its text is kept out too
    assert task_is_private("resume_json_real") and task_is_private("lm_eval:not_a_known_task")
    assert not task_is_private("glue_sst2")
