"""The nine tasks load with the row counts their SOURCE.md files state; quirks are honoured."""

from __future__ import annotations

import pytest

from harness.data import load_examples, split_sizes
from harness.errors import HarnessError
from harness.prompts import render
from harness.registry import task_registry

# Row counts from ../shared/data/*/SOURCE.md (hcm_related: related rows of each split + the
# unrelated questions split 70/10/20 by sha256(id); resume_json: the generator's fixed sizes).
EXPECTED_SIZES = {
    "glue_sst2": {"train": 67349, "test": 872},
    "glue_mrpc": {"train": 3668, "test": 408},
    "glue_rte": {"train": 2490, "test": 277},
    "glue_cola": {"train": 8551, "test": 1043},
    "dialogsum": {"train": 12460, "dev": 500, "test": 500},
    "hcm_qa": {"train": 289, "dev": 41, "test": 83},
    "hcm_related": {"train": 289 + 43, "dev": 41 + 7, "test": 83 + 12},
    "resume_json": {"train": 2000, "dev": 200, "test": 200},
    "resume_json_real": {"test": 220},
}

LABEL_COUNTS = {  # dev splits, from the GLUE SOURCE.md table
    "glue_sst2": {1: 444, 0: 428},
    "glue_mrpc": {1: 279, 0: 129},
    "glue_rte": {0: 146, 1: 131},
    "glue_cola": {1: 721, 0: 322},
}


def test_registry_lists_the_nine_tasks() -> None:
    assert task_registry().names() == sorted(EXPECTED_SIZES)


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_split_sizes_equal_the_sources(name: str) -> None:
    assert split_sizes(task_registry().get(name)) == EXPECTED_SIZES[name]


@pytest.mark.parametrize("name", sorted(LABEL_COUNTS))
def test_glue_label_counts(name: str) -> None:
    examples = load_examples(task_registry().get(name))
    counts = {label: sum(e.label == label for e in examples) for label in (0, 1)}
    assert counts == LABEL_COUNTS[name]


def test_sst2_reversed_columns_give_sentence_text() -> None:
    first = load_examples(task_registry().get("glue_sst2"), limit=1)[0]
    assert first.inputs["sentence"].startswith("it 's a charming")
    assert first.label == 1


def test_mrpc_bom_and_unbalanced_quotes() -> None:
    first = load_examples(task_registry().get("glue_mrpc"), limit=1)[0]
    # the BOM would otherwise glue itself to the "Quality" header and the label would be missing
    assert first.label == 1
    assert first.inputs["sentence2"].startswith('"The foodservice pie business')


def test_rte_hf_export_labels() -> None:
    first = load_examples(task_registry().get("glue_rte"), limit=1)[0]
    assert first.id == "0" and first.label == 1  # GLUE's not_entailment
    assert first.inputs["sentence2"] == "Christopher Reeve had an accident."


def test_dialogsum_test_has_three_references() -> None:
    examples = load_examples(task_registry().get("dialogsum"))
    assert all(len(e.references) == 3 for e in examples)
    assert examples[0].id == "test_0"


def test_prompt_renders_braces_in_data_safely() -> None:
    task = task_registry().get("resume_json")
    example = load_examples(task, limit=1)[0]
    text = render(task, example)
    assert text.startswith("###resume: ") and text.endswith(" ###json:")
    assert example.inputs["resume"] in text


def test_missing_mirror_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    task = task_registry().get("hcm_qa")
    with pytest.raises(HarnessError, match="HARNESS_DATA_DIR"):
        load_examples(task)


@pytest.mark.parametrize("name", ["dialogsum", "hcm_qa", "resume_json", "resume_json_real"])
def test_no_stop_string_cuts_a_reference(name: str) -> None:
    # A stop string inside a gold answer would end a perfect prediction early: DialogSum's
    # summaries say "#Person1# asks ...", so stopping on "#Person" emptied every summary.
    task = task_registry().get(name)
    cut = [(e.id, stop) for e in load_examples(task) for ref in e.references for stop in task.generation.stop
           if stop in ref]
    assert cut == []
