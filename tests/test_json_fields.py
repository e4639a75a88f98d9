"""json_fields: extraction edge cases and hand-computed field F1 values."""

from __future__ import annotations

import json

import pytest

from harness.errors import HarnessError
from harness.metrics import get_metric
from harness.metrics.base import ScoringInput
from harness.metrics.json_fields import JsonFieldsMetric, extract_json_object, first_balanced_object

GOLD = {
    "name": "Jane  Doe",
    "email": "Jane.Doe@Example.com",
    "phone": "(555) 123-4567",
    "experience": "Software engineer at Acme 2019-2023",
    "education": "BSc Computer Science, MIT",
    "skills": ["Python", "SQL", "Docker"],
}
GOLD_TEXT = json.dumps(GOLD, separators=(",", ":"))
METRIC = JsonFieldsMetric()


def score(prediction: object, gold: dict[str, object] = GOLD) -> dict[str, float]:
    text = prediction if isinstance(prediction, str) else json.dumps(prediction)
    return METRIC.per_example(text, [json.dumps(gold)], None)


def test_exact_copy_scores_one_everywhere() -> None:
    result = score(GOLD)
    assert result == dict.fromkeys(METRIC.names, 1.0)


def test_prose_around_the_json_is_stripped() -> None:
    result = score(f"Sure! Here is the JSON:\n{json.dumps(GOLD)}\nHope this helps {{:)}}")
    assert result["json_valid"] == 1.0 and result["schema_valid"] == 1.0 and result["field_f1"] == 1.0


@pytest.mark.parametrize(
    "output",
    [
        "",  # empty output
        GOLD_TEXT[1:],  # missing opening brace
        GOLD_TEXT[:-12],  # truncated: the object never closes
        "no json here at all",
        "{'name': 'Jane Doe'}",  # python dict, not JSON
    ],
)
def test_invalid_output_scores_zero_and_never_raises(output: str) -> None:
    assert score(output) == dict.fromkeys(METRIC.names, 0.0)


def test_invalid_output_makes_every_gold_item_a_false_negative() -> None:
    totals = METRIC.sufficient_stats(ScoringInput([""], [[GOLD_TEXT]])).sum(axis=0)
    per_field = totals[3:].reshape(6, 3)
    # name, email, phone, experience, education: one item each; skills: three items
    assert per_field[:, 0].sum() == 0 and per_field[:, 1].sum() == 0
    assert per_field[:, 2].tolist() == [1, 1, 1, 1, 1, 3]


def test_braces_inside_strings_do_not_end_the_object() -> None:
    gold = dict(GOLD, name="Jane {JD} Doe", experience='Built a "{parser}" } at Acme')
    text = "prefix " + json.dumps(gold) + " suffix }"
    assert first_balanced_object(text) == json.dumps(gold)
    assert extract_json_object(text) == gold
    assert score(text, gold)["field_f1"] == 1.0


def test_only_the_first_balanced_object_counts() -> None:
    assert score("{not json} " + json.dumps(GOLD))["json_valid"] == 0.0


def test_extra_keys_are_allowed_and_ignored() -> None:
    result = score(dict(GOLD, linkedin="jane", age=33))
    assert result["schema_valid"] == 1.0 and result["field_f1"] == 1.0


def test_schema_needs_all_keys_with_the_right_types() -> None:
    missing = {key: value for key, value in GOLD.items() if key != "education"}
    assert score(missing)["schema_valid"] == 0.0
    as_string = dict(GOLD, skills="python, SQL ,docker")
    result = score(as_string)
    # a skills string breaks the schema but is still read as comma-separated items
    assert result["schema_valid"] == 0.0 and result["f1_skills"] == 1.0
    assert score(dict(GOLD, phone=5551234567))["schema_valid"] == 0.0


def test_skills_ignore_order_case_and_spacing() -> None:
    assert score(dict(GOLD, skills=[" docker", "sql", "PYTHON  "]))["f1_skills"] == 1.0


@pytest.mark.parametrize("phone", ["555.123.4567", "555 123 4567", "+1 (555) 123-4567", "15551234567"])
def test_phone_formats_compare_by_digits(phone: str) -> None:
    assert score(dict(GOLD, phone=phone))["f1_phone"] == 1.0


def test_other_phone_or_name_is_wrong() -> None:
    result = score(dict(GOLD, phone="555.123.4568", name="jane   DOE"))
    assert result["f1_phone"] == 0.0 and result["f1_name"] == 1.0


def test_email_is_case_insensitive() -> None:
    assert score(dict(GOLD, email="  jane.doe@example.COM "))["f1_email"] == 1.0


def test_free_text_is_squad_token_f1() -> None:
    # gold tokens: software engineer at acme 2019 2023 (6); predicted 3, all in gold: P=1, R=1/2
    result = score(dict(GOLD, experience="software engineer, Acme"))
    assert result["f1_experience"] == pytest.approx(2 / 3)


def test_hand_computed_micro_field_f1() -> None:
    gold = dict(GOLD, phone="", education="")
    prediction = dict(
        gold,
        email="jane@other.com",  # wrong: FP 1, FN 1
        experience="software engineer, Acme",  # TP 0.5, FN 0.5 (gold-length units)
        skills=["python", "sql", "java"],  # TP 2, FP 1, FN 1
    )  # name right (TP 1); phone and education empty on both sides: not counted
    result = score(prediction, gold)
    tp, fp, fn = 1 + 0.5 + 2, 1 + 1, 1 + 0.5 + 1
    assert result["field_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 7 / 11.5
    assert result["f1_phone"] == 1.0 and result["f1_education"] == 1.0  # nothing to find, nothing found


def test_predicting_a_field_gold_lacks_is_a_false_positive() -> None:
    gold = dict(GOLD, phone="")
    assert score(dict(GOLD), gold)["f1_phone"] == 0.0


def test_corpus_field_f1_is_micro_over_the_corpus() -> None:
    good = json.dumps(GOLD)
    data = ScoringInput([good, ""], [[GOLD_TEXT], [GOLD_TEXT]])
    corpus = METRIC.corpus(data)
    assert corpus["json_valid"] == 0.5
    # items per example: 5 scalar/text fields + 3 skills = 8; first all TP, second all FN
    assert corpus["field_f1"] == pytest.approx(2 * 8 / (2 * 8 + 8))
    assert corpus["f1_skills"] == pytest.approx(2 * 3 / (2 * 3 + 3))


def test_field_subsets_by_option() -> None:
    no_phone = get_metric("json_fields:no_phone")
    assert "f1_phone" not in no_phone.names and "f1_email" in no_phone.names
    subset = get_metric("json_fields(fields=name, skills)")
    assert subset.names == ("json_valid", "schema_valid", "field_f1", "f1_name", "f1_skills")
    # a wrong phone no longer matters
    assert no_phone.per_example(json.dumps(dict(GOLD, phone="0")), [GOLD_TEXT], None)["field_f1"] == 1.0
    with pytest.raises(HarnessError, match="address"):
        get_metric("json_fields(fields=name,address)")


def test_gold_that_is_not_json_is_a_harness_error() -> None:
    with pytest.raises(HarnessError, match="not a JSON object"):
        METRIC.per_example("{}", ["not json"], None)
