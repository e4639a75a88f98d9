"""Evaluation-only `resume_json_real` set: the DataTurks resume NER annotations turned into gold JSON.

Source: HARNESS_DATA_DIR/resume_ner_dataturks/"Entity Recognition in Resumes.jsonl" (220 real
resumes; see its SOURCE.md). One row per resume, in file order, ids "real-0000".."real-0219":
{"id", "resume": the full content text, "json": compact gold JSON with the keys of resume_json}.

How the gold is built from the spans (span text = points[].text stripped; the file's offsets are
only used to put spans in document order, because some offsets are misaligned):
- name: the first "Name" span in document order ("" when none).
- email: the first "Email Address" span in document order, as written (often an indeed.com handle).
- phone: always "" - the data set has no phone label, and the task does not score phone here.
- experience: "Designation" and "Companies worked at" spans in document order are paired when
  adjacent and of different labels ("Designation at Company", whichever came first in the text);
  a span with no partner stands alone. Entries are joined by "; " after dropping repeats (resumes
  often repeat the current job in a summary line). Unlike the synthetic set there are no years:
  the data set labels no job dates.
- education: "Degree" and "College Name" spans are paired the same way ("Degree, College"); a
  "Graduation Year" span that comes right after an entry (before the next degree or college) is
  appended (", 2017"), matching the synthetic format "Degree Field, University, Year".
- skills: every "Skills" span split on commas, newlines and bullet characters; indeed.com
  experience tags such as "(Less than 1 year)" or "(10+ years)" removed; whitespace normalised;
  repeats dropped (case-insensitive), first spelling kept.

The texts are real people's resumes: nothing here logs or prints them.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

DATA_FILE = Path("resume_ner_dataturks") / "Entity Recognition in Resumes.jsonl"
SPLITS: tuple[str, ...] = ("test",)

DESIGNATION, COMPANY = "Designation", "Companies worked at"
DEGREE, COLLEGE, GRAD_YEAR = "Degree", "College Name", "Graduation Year"

# "(Less than 1 year)", "(1 year)", "(10+ years)": indeed.com's self-reported experience per skill.
_EXPERIENCE_TAG = re.compile(r"\(\s*(?:less\s+than\s+)?\d+\+?\s*years?\s*\)", re.IGNORECASE)
_SKILL_SEPARATORS = re.compile(r"[,\n•·▪●]")
# Bullet glyphs and dashes around an item; a trailing full stop ends a sentence, not a skill name.
_EDGE_MARKS = re.compile(r"^[\s\-*–—:❖➢►✓✔○■◆→>]+|[\s\-*–—:❖➢►✓✔○■◆→>.]+$")
# "Programming Languages: C", "Database Tool: SQL Server": a short label before a colon is not the skill.
_LABEL_PREFIX = re.compile(r"^(?:[^:]{1,40}?:)+\s*(?=\S)")
# Section headings that annotators swept into "Skills" spans.
SECTION_HEADINGS = frozenset({
    "additional information", "technical skills", "skills", "it skills", "key skills", "software skills",
    "skill set", "technical skill set", "core competencies", "personal skills", "soft skills", "education",
    "certifications", "technical proficiency", "areas of expertise",
})


@dataclass(frozen=True)
class Span:
    label: str
    start: int
    text: str  # stripped span text


def normalize_space(text: str) -> str:
    return " ".join(text.split())


def read_spans(annotation: list[dict[str, Any]] | None) -> list[Span]:
    """All labelled spans with non-empty text, in document order, exact repeats removed."""
    spans: set[Span] = set()
    for entry in annotation or []:
        labels = entry.get("label") or []
        for point in entry.get("points") or []:
            text = str(point.get("text", "")).strip()
            if text and labels:
                spans.add(Span(label=labels[0], start=int(point.get("start", 0)), text=text))
    return sorted(spans, key=lambda span: (span.start, span.label, span.text))


def first_text(spans: list[Span], label: str) -> str:
    return next((normalize_space(span.text) for span in spans if span.label == label), "")


def dedupe(items: Iterable[str]) -> list[str]:
    """Drops case-insensitive repeats, keeping the first spelling and the order."""
    seen: set[str] = set()
    kept: list[str] = []
    for item in items:
        key = item.casefold()
        if item and key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


@dataclass(frozen=True)
class Entry:
    """One experience or education entry: one span, or two adjacent spans of the two labels."""

    parts: tuple[str, ...]  # (lead, partner) for a pair, (text,) for a lone span
    text: str
    last_index: int  # index in the span list of the entry's last span (to look for a year after it)


def pair_adjacent(spans: list[Span], lead: str, partner: str, join: Callable[[str, str], str]) -> list[Entry]:
    """Pairs adjacent spans of the two labels in document order; a span with no partner stands alone."""
    positions = [index for index, span in enumerate(spans) if span.label in (lead, partner)]
    entries: list[Entry] = []
    cursor = 0
    while cursor < len(positions):
        here = spans[positions[cursor]]
        nxt = spans[positions[cursor + 1]] if cursor + 1 < len(positions) else None
        if nxt is not None and nxt.label != here.label:
            lead_span, partner_span = (here, nxt) if here.label == lead else (nxt, here)
            parts = (normalize_space(lead_span.text), normalize_space(partner_span.text))
            entries.append(Entry(parts, join(*parts), positions[cursor + 1]))
            cursor += 2
        else:
            text = normalize_space(here.text)
            entries.append(Entry((text,), text, positions[cursor]))
            cursor += 1
    return drop_repeated_parts(entries)


def drop_repeated_parts(entries: list[Entry]) -> list[Entry]:
    """Drops a lone span that repeats part of a pair ("SAP Labs" after "Developer at SAP Labs")."""
    paired = {part.casefold() for entry in entries if len(entry.parts) == 2 for part in entry.parts}
    return [entry for entry in entries if len(entry.parts) == 2 or entry.text.casefold() not in paired]


def experience_gold(spans: list[Span]) -> str:
    entries = pair_adjacent(spans, DESIGNATION, COMPANY, lambda title, company: f"{title} at {company}")
    return "; ".join(dedupe(entry.text for entry in entries))


def _year_after(spans: list[Span], index: int) -> str:
    """The Graduation Year span right after spans[index], before any other degree or college span."""
    for span in spans[index + 1:]:
        if span.label == GRAD_YEAR:
            return normalize_space(span.text)
        if span.label in (DEGREE, COLLEGE):
            return ""
    return ""


def education_gold(spans: list[Span]) -> str:
    entries = pair_adjacent(spans, DEGREE, COLLEGE, lambda degree, college: f"{degree}, {college}")
    texts = []
    for entry in entries:
        year = _year_after(spans, entry.last_index)
        texts.append(f"{entry.text}, {year}" if year else entry.text)
    return "; ".join(dedupe(texts))


def clean_skill(item: str) -> str:
    """One skill item without bullets, a "Label:" prefix, or a trailing full stop; "" for a heading."""
    cleaned = normalize_space(_LABEL_PREFIX.sub("", _EDGE_MARKS.sub("", item)))
    cleaned = _EDGE_MARKS.sub("", cleaned)
    return "" if cleaned.casefold() in SECTION_HEADINGS else cleaned


def split_skills(text: str) -> list[str]:
    items = _SKILL_SEPARATORS.split(_EXPERIENCE_TAG.sub(" ", text))
    return [cleaned for cleaned in (clean_skill(item) for item in items) if cleaned]


def skills_gold(spans: list[Span]) -> list[str]:
    return dedupe(skill for span in spans if span.label == "Skills" for skill in split_skills(span.text))


def gold_record(annotation: list[dict[str, Any]] | None) -> dict[str, object]:
    spans = read_spans(annotation)
    return {
        "name": first_text(spans, "Name"),
        "email": first_text(spans, "Email Address"),
        "phone": "",
        "experience": experience_gold(spans),
        "education": education_gold(spans),
        "skills": skills_gold(spans),
    }


def data_path(data_dir: Path | None) -> Path:
    if data_dir is None:
        raise HarnessError(f"resume_json_real needs the data mirror: set HARNESS_DATA_DIR to the folder that "
                           f"holds {DATA_FILE.as_posix()}.")
    path = Path(data_dir) / DATA_FILE
    if not path.is_file():
        raise HarnessError(f"The resume_json_real data file {path} is missing; set HARNESS_DATA_DIR to the "
                           f"folder that holds {DATA_FILE.as_posix()}.")
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    """The annotated resumes, one JSON object per line (the harness's shared JSONL reader)."""
    from harness.data import read_jsonl

    return read_jsonl(path)


def load_split(split: str, data_dir: Path | None = None) -> list[dict[str, str]]:
    """Rows {"id", "resume", "json"} for the only split, "test" (all 220 resumes, file order)."""
    if split not in SPLITS:
        raise HarnessError(f"resume_json_real has only a 'test' split, not {split!r}; ask for split 'test'.")
    rows = []
    for index, record in enumerate(read_records(data_path(data_dir))):
        gold = json.dumps(gold_record(record.get("annotation")), ensure_ascii=False, separators=(",", ":"))
        rows.append({"id": f"real-{index:04d}", "resume": str(record.get("content", "")), "json": gold})
    return rows
