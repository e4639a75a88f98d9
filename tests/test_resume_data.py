"""The resume data: the seeded synthetic generator (resume_json) and the real-set converter (resume_json_real).

The real set holds real people's resumes: assertions here compare counts and ids, never resume
text, so a failure cannot print personal data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.errors import HarnessError

PROJECT = Path(__file__).resolve().parent.parent
GOLD_KEYS = ["name", "email", "phone", "experience", "education", "skills"]
# Measured with the SmolLM2 tokenizer on these texts: ~0.33 tokens per character for resumes and
# ~0.34 for the gold JSON (words*1.3 undercounts them by ~1.7x: e-mails, phones, dates, punctuation).
RESUME_CHARS_PER_TOKEN = 3.0
JSON_CHARS_PER_TOKEN = 2.9


def load_module(relative: str, name: str) -> ModuleType:
    """Imports a task file by path, the way harness/data.py does (its siblings load through harness.data.import_task_file)."""
    spec = importlib.util.spec_from_file_location(name, PROJECT / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return load_module("tasks/resume_json/generate.py", "test_resume_data_generate")


@pytest.fixture(scope="module")
def conv() -> ModuleType:
    return load_module("tasks/resume_json_real/convert.py", "test_resume_data_convert")


@pytest.fixture(scope="module")
def splits(gen: ModuleType) -> dict[str, list[dict[str, str]]]:
    return {split: gen.load_split(split, None) for split in ("train", "dev", "test")}


@pytest.fixture(scope="module")
def real_rows(conv: ModuleType) -> list[dict[str, str]]:
    data_dir = Path(os.environ.get("HARNESS_DATA_DIR", PROJECT.parent / "shared" / "data"))
    return conv.load_split("test", data_dir)


def gold(row: dict[str, str]) -> dict[str, Any]:
    return json.loads(row["json"])


# ------------------------------------------------------------------------------------------------
# Synthetic generator
# ------------------------------------------------------------------------------------------------


def test_split_sizes_and_ids(splits: dict[str, list[dict[str, str]]]) -> None:
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 2000, "dev": 200, "test": 200}
    assert [row["id"] for row in splits["test"][:2]] == ["resume-test-0000", "resume-test-0001"]
    assert splits["train"][-1]["id"] == "resume-train-1999"
    for rows in splits.values():
        assert all(set(row) == {"id", "resume", "json"} for row in rows)


def test_generation_is_deterministic_and_order_independent(gen: ModuleType,
                                                           splits: dict[str, list[dict[str, str]]]) -> None:
    gen._all_splits.cache_clear()
    # Asking for train first must not change test: splits are always generated in a fixed order.
    assert gen.load_split("train") == splits["train"]
    assert gen.load_split("test") == splits["test"]
    fresh = load_module("tasks/resume_json/generate.py", "test_resume_data_generate_again")
    assert fresh.load_split("dev") == splits["dev"]


def test_no_duplicate_texts_within_or_across_splits(splits: dict[str, list[dict[str, str]]]) -> None:
    texts = [row["resume"] for rows in splits.values() for row in rows]
    assert len(set(texts)) == len(texts) == 2400


def test_gold_json_is_compact_with_six_typed_keys(splits: dict[str, list[dict[str, str]]]) -> None:
    for rows in splits.values():
        for row in rows:
            record = gold(row)
            assert list(record) == GOLD_KEYS
            assert all(isinstance(record[key], str) for key in GOLD_KEYS[:5])
            assert isinstance(record["skills"], list) and all(isinstance(s, str) and s for s in record["skills"])
            assert row["json"] == json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            assert record["name"]


def test_contact_facts_appear_exactly_as_written(splits: dict[str, list[dict[str, str]]]) -> None:
    phone_like = re.compile(r"\(?\+?\d[\d ().-]{8,}\d")
    for row in splits["train"] + splits["test"]:
        record, text = gold(row), row["resume"]
        assert record["name"] in text
        assert (record["email"] in text) if record["email"] else "@" not in text
        if record["phone"]:
            assert record["phone"] in text
        else:
            assert not phone_like.search(text), row["id"]


def test_experience_education_skills_are_stated_in_text(gen: ModuleType) -> None:
    for resume in gen.generate_split("test") + gen.generate_split("dev"):
        text, record = resume.text, resume.record
        for job in record.jobs:
            assert job.title in text and job.company in text and str(job.start) in text
            assert job.end is None or str(job.end) in text
        for degree in record.degrees:
            assert degree.university in text and str(degree.year) in text
            assert degree.short in text or degree.long in text or degree.level[0] in text
        assert all(skill in text for skill in record.skills)
        # The gold is derived from the same record the text was rendered from.
        assert json.loads(resume.gold_json())["skills"] == list(record.skills)


def test_gold_experience_and_education_formats(splits: dict[str, list[dict[str, str]]]) -> None:
    job = re.compile(r"^.+ at .+ \((\d{4})-(\d{4}|present)\)$")
    degree = re.compile(r"^.+, .+, \d{4}$")
    for row in splits["train"]:
        record = gold(row)
        for entry in filter(None, record["experience"].split("; ")):
            match = job.match(entry)
            assert match, row["id"]
            assert match.group(2) == "present" or int(match.group(1)) < int(match.group(2))
        assert all(degree.match(entry) for entry in filter(None, record["education"].split("; "))), row["id"]


def test_missing_field_rates(splits: dict[str, list[dict[str, str]]]) -> None:
    records = [gold(row) for row in splits["train"]]
    rate = {key: sum(1 for r in records if not r[key]) / len(records) for key in GOLD_KEYS}
    for key in ("email", "phone", "education"):
        assert 0.08 <= rate[key] <= 0.18, (key, rate[key])
    assert 0.01 <= rate["experience"] <= 0.10
    assert 0.01 <= rate["skills"] <= 0.10
    assert rate["name"] == 0


def test_surface_variety(splits: dict[str, list[dict[str, str]]]) -> None:
    rows = splits["train"]
    phones = [gold(row)["phone"] for row in rows]
    phone_formats = {
        "parens": r"^\(\d{3}\) \d{3}-\d{4}$", "dashes": r"^\d{3}-\d{3}-\d{4}$",
        "plus_spaces": r"^\+1 \d{3} \d{3} \d{4}$", "dots": r"^\d{3}\.\d{3}\.\d{4}$",
    }
    for name, pattern in phone_formats.items():
        assert sum(1 for phone in phones if re.match(pattern, phone)) >= 50, name
    texts = [row["resume"] for row in rows]
    markers = {
        "pipe header": r"^[^\n]+ \| [^\n]+ \| ",
        "contacts at the bottom": r"\nContact: [^\n]+$",
        "prose": r"^[^\n]+ is an? [^\n]+ based in ",
        "month dates": r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4}",
        "numeric dates": r"\d{2}/\d{4}",
        "to present": r"\d{4} to present",
        "bullet skills": r"\n[-•*] [A-Za-z]+\n",
        "Work History": r"Work History", "Qualifications": r"Qualifications", "Abilities": r"Abilities",
    }
    for name, pattern in markers.items():
        assert sum(1 for text in texts if re.search(pattern, text, re.MULTILINE)) >= 20, name


def test_length_distribution(splits: dict[str, list[dict[str, str]]]) -> None:
    resume_tokens = sorted(len(row["resume"]) / RESUME_CHARS_PER_TOKEN for row in splits["test"])
    json_tokens = sorted(len(row["json"]) / JSON_CHARS_PER_TOKEN for row in splits["test"])
    n = len(resume_tokens)
    assert sum(1 for t in resume_tokens if t < 300) >= 0.9 * n
    assert 120 <= resume_tokens[n // 2] <= 250  # a realistic extraction task, not one-liners
    assert sum(1 for t in resume_tokens if t >= 80) >= 0.9 * n
    assert sum(1 for t in json_tokens if t < 150) >= 0.9 * n


def test_unknown_split_is_a_harness_error(gen: ModuleType) -> None:
    with pytest.raises(HarnessError, match="validation"):
        gen.load_split("validation")


# ------------------------------------------------------------------------------------------------
# Real set converter: rules on hand-made annotations (no personal data)
# ------------------------------------------------------------------------------------------------


def span(label: str, start: int, text: str) -> dict[str, Any]:
    return {"label": [label], "points": [{"start": start, "end": start + len(text) - 1, "text": text}]}


def test_experience_pairs_adjacent_spans_in_document_order(conv: ModuleType) -> None:
    annotation = [
        span("Companies worked at", 120, "Beta Ltd"), span("Designation", 100, "Analyst"),  # listed out of order
        span("Designation", 10, "Senior Engineer"), span("Companies worked at", 30, "Acme Corp"),
        span("Designation", 200, "Intern"),  # followed by another designation: stands alone
        span("Designation", 300, "Senior Engineer "), span("Companies worked at", 330, "Acme Corp"),  # repeat
        span("Companies worked at", 400, "Acme Corp"),  # lone repeat of a paired company: dropped
        span("Companies worked at", 450, "Gamma Inc"),  # lone company: kept
    ]
    assert conv.gold_record(annotation)["experience"] == (
        "Senior Engineer at Acme Corp; Analyst at Beta Ltd; Intern; Gamma Inc")


def test_education_pairs_degree_college_and_following_year(conv: ModuleType) -> None:
    annotation = [
        span("College Name", 10, "State University"), span("Degree", 40, "B.E. Computer Science"),
        span("Graduation Year", 70, "2016"),
        span("Degree", 100, "M.Tech"), span("College Name", 110, "Tech Institute"),
        span("College Name", 200, "City School"), span("Graduation Year", 220, "2010"),
    ]
    assert conv.gold_record(annotation)["education"] == (
        "B.E. Computer Science, State University, 2016; M.Tech, Tech Institute; City School, 2010")


def test_name_email_skills_and_no_phone(conv: ModuleType) -> None:
    annotation = [
        span("Name", 50, "Second Name"), span("Name", 0, "First  Name"),
        span("Email Address", 20, "indeed.com/r/First-Name/abc123"),
        span("Skills", 600, "Java (Less than 1 year), SQL (10+ years), PYTHON\n(1 year)\n• Git, java"),
        span("Skills", 700, "TECHNICAL SKILLS\nLanguages: C++, Node.js."),
        span("UNKNOWN", 800, "x"), {"label": [], "points": [{"start": 5, "end": 6, "text": "ab"}]},
    ]
    record = conv.gold_record(annotation)
    assert list(record) == GOLD_KEYS
    assert record["name"] == "First Name"
    assert record["email"] == "indeed.com/r/First-Name/abc123"
    assert record["phone"] == ""
    assert record["skills"] == ["Java", "SQL", "PYTHON", "Git", "C++", "Node.js"]
    assert conv.gold_record(None) == dict.fromkeys(GOLD_KEYS[:5], "") | {"skills": []}


def test_missing_data_is_one_sentence_naming_the_file(conv: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="HARNESS_DATA_DIR") as no_dir:
        conv.load_split("test", None)
    with pytest.raises(HarnessError, match="Entity Recognition in Resumes.jsonl") as missing:
        conv.load_split("test", tmp_path)
    for error in (no_dir.value, missing.value):
        assert str(error).count(". ") == 0 and "HARNESS_DATA_DIR" in str(error)
    with pytest.raises(HarnessError, match="test"):
        conv.load_split("train", tmp_path)


# ------------------------------------------------------------------------------------------------
# Real set converter on the mirrored data
# ------------------------------------------------------------------------------------------------


def test_real_set_has_220_rows_in_order(real_rows: list[dict[str, str]]) -> None:
    assert len(real_rows) == 220
    assert [row["id"] for row in real_rows] == [f"real-{index:04d}" for index in range(220)]
    assert all(set(row) == {"id", "resume", "json"} and len(row["resume"]) > 100 for row in real_rows)


def test_real_gold_has_documented_fields(real_rows: list[dict[str, str]]) -> None:
    records = [gold(row) for row in real_rows]
    assert all(list(record) == GOLD_KEYS for record in records)
    assert all(record["phone"] == "" for record in records)
    assert all(isinstance(record[key], str) for record in records for key in GOLD_KEYS[:5])
    # Fixed data: 2 resumes have no Name span, 30 no e-mail (SOURCE.md: 224 Name, 252 e-mail spans).
    empty = Counter(key for record in records for key in GOLD_KEYS if not record[key])
    assert (empty["name"], empty["email"]) == (2, 30)
    assert empty["experience"] <= 20 and empty["education"] <= 20 and empty["skills"] <= 40
    for record in records:
        skills = record["skills"]
        assert all(skill == " ".join(skill.split()) and skill for skill in skills)
        assert len({skill.casefold() for skill in skills}) == len(skills)
        assert not any(re.search(r"\(\s*(less than )?\d+\+? years?\)", s, re.IGNORECASE) for s in skills)


def test_real_names_and_emails_come_from_the_text(real_rows: list[dict[str, str]]) -> None:
    # Span texts are quoted from the content; compare on normalised whitespace, report ids only.
    def absent(key: str) -> list[str]:
        return [row["id"] for row in real_rows
                if gold(row)[key] and gold(row)[key] not in " ".join(row["resume"].split())]

    assert absent("name") == []
    assert absent("email") == []


def test_job_dates_do_not_overlap(gen: ModuleType) -> None:
    for resume in gen.generate_split("train"):
        jobs = resume.record.jobs
        for newer, older in zip(jobs, jobs[1:]):
            assert older.end is not None
            assert (older.end, older.end_month) <= (newer.start, newer.start_month)
