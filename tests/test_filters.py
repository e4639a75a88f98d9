"""Output filters (task.yaml `filters`): each filter, the order they run in, raw and filtered scores."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.metrics.filters import apply_filters, first_json_object, strip_code_fences, unwrap_single_key_list
from harness.registry import task_registry
from harness.scoring import score_examples
from harness.spec import Example

GOLD = {"name": "Jane Doe", "email": "jane@example.com", "phone": "555 123 4567", "experience": "Engineer at Acme",
        "education": "BSc, MIT", "skills": ["Python", "SQL"]}
RESUME_FILTERS = ("strip_code_fences", "first_json_object", "unwrap_single_key_list")


def test_strip_code_fences_keeps_the_fence_body_and_leaves_plain_text_alone() -> None:
    assert strip_code_fences('Here:\n```json\n{"a": 1}\n```\nbye') == '{"a": 1}'
    assert strip_code_fences('```\n{"a": 1}') == '{"a": 1}'  # a fence cut off by max_new_tokens
    assert strip_code_fences('{"a": 1}') == '{"a": 1}'


def test_first_json_object_takes_the_first_balanced_object_or_leaves_the_text() -> None:
    assert first_json_object('x {"a": "}"} {"b": 2}') == '{"a": "}"}'
    assert first_json_object('{"a": 1') == '{"a": 1'  # truncated: nothing to extract, the text stays


def test_unwrap_single_key_list_unwraps_exactly_one_object() -> None:
    inner = {"name": "Jane"}
    assert json.loads(unwrap_single_key_list(json.dumps({"resumes": [inner]}))) == inner
    assert json.loads(unwrap_single_key_list(json.dumps([inner]))) == inner
    two = json.dumps({"resumes": [inner, inner]})
    assert unwrap_single_key_list(two) == two  # several objects: picking one would be guessing
    plain = json.dumps(GOLD)
    assert unwrap_single_key_list(plain) == plain
    assert unwrap_single_key_list("not json") == "not json"


def test_the_resume_filters_recover_the_thesis_output_shape() -> None:
    wrapped = "```json\n" + json.dumps({"resumes": [GOLD]}) + "\n```"
    assert json.loads(apply_filters(RESUME_FILTERS, wrapped)) == GOLD


def test_a_task_with_filters_stores_filtered_scores_and_raw_scores_beside_them() -> None:
    task = task_registry().get("resume_json")
    assert task.filters == RESUME_FILTERS
    example = Example(id="x", inputs={"resume": "..."}, references=(json.dumps(GOLD),))
    wrapped = json.dumps({"resumes": [GOLD]})
    report = score_examples(task, [example, example], [wrapped, json.dumps(GOLD)])
    assert report.corpus["field_f1"].value == pytest.approx(1.0)
    assert report.corpus["schema_valid"].value == pytest.approx(1.0)
    assert report.corpus["schema_valid_raw"].value == pytest.approx(0.5)  # the wrapper fails the raw schema
    assert report.per_example[0]["field_f1"] == 1.0 and report.per_example[0]["field_f1_raw"] == 0.0


def test_filters_are_not_part_of_the_prediction_key() -> None:
    task = task_registry().get("resume_json")
    assert task.content_hash() == task.model_copy(update={"filters": ()}).content_hash()


def test_an_unknown_filter_name_is_refused_with_the_file(tmp_path) -> None:
    folder = tmp_path / "bad_filter"
    folder.mkdir()
    (folder / "task.yaml").write_text(
        'name: bad_filter\ndataset: {format: jsonl, local: {test: rows.jsonl}}\nfields: {id: id, inputs: [text], references: [answer]}\n'
        'prompts: {default: "{text}"}\nmetrics: [bleu]\nfilters: [first_json_objct]\n',
        encoding="utf-8",
    )
    with pytest.raises(HarnessError, match="first_json_objct"):
        task_registry([tmp_path]).get("bad_filter")
