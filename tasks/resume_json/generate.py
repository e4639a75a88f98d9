"""Seeded generator of synthetic resumes with exact gold JSON for the `resume_json` task.

Every resume is rendered from a structured record (person, jobs, degrees, skills), so the gold
JSON is exact by construction while the text states the same facts in varied surface forms:
header layouts, prose or bullet sections, phone and date formats, missing fields.

Canonical gold format (keys in this order, compact JSON):
- name: the name as written.
- email, phone: as written in the resume ("" when the resume does not state them); the metric
  compares phone digits only, so "(555) 123-4567" and "555.123.4567" are the same number.
- experience: "Title at Company (2019-2023); Title at Company (2016-2019)" in the order the
  resume lists the jobs (most recent first); years only; an ongoing job is "(2019-present)".
- education: "Degree Field, University, Year" joined by "; " (degree abbreviated, e.g. "B.Sc.",
  even where the text spells it out as "Bachelor of Science").
- skills: list of strings in the order the resume lists them (possibly empty).

Pure Python: `random.Random(seed)` per split. The generator is four files: vocabulary.py (the
pools), records.py (the record, its gold JSON and its sampling), rendering.py (the surface forms)
and this file (the splits); a task folder is not a package, so they load one another by path
through harness.data.import_task_file. Splits are generated in the order test, dev, train with a
shared set of seen texts, so no text appears in two splits and each split is identical on every call.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.data import import_task_file
from harness.errors import HarnessError

# Task folders are not packages: siblings are loaded by path, once per process (shared classes).
records = import_task_file(Path(__file__).with_name("records.py"))
rendering = import_task_file(Path(__file__).with_name("rendering.py"))


SPLIT_SIZES: dict[str, int] = {"test": 200, "dev": 200, "train": 2000}
# Generation order matters for cross-split uniqueness: earlier splits claim texts first, so the
# evaluation splits never change when the train split is resized.
SPLIT_ORDER: tuple[str, ...] = ("test", "dev", "train")
SPLIT_SEEDS: dict[str, int] = {"test": 7_301, "dev": 7_302, "train": 7_303}
GOLD_KEYS: tuple[str, ...] = ("name", "email", "phone", "experience", "education", "skills")


@dataclass(frozen=True)
class Resume:
    """One generated example: the rendered text and its exact gold record."""

    record: records.ResumeRecord
    text: str

    def gold_json(self) -> str:
        return json.dumps(self.record.gold(), ensure_ascii=False, separators=(",", ":"))

    def row(self, row_id: str) -> dict[str, str]:
        return {"id": row_id, "resume": self.text, "json": self.gold_json()}


def generate_resume(rng: random.Random) -> Resume:
    record = records.sample_record(rng)
    return Resume(record, rendering.render(rng, record))


def _generate_split(split: str, seen: set[str]) -> list[Resume]:
    rng = random.Random(SPLIT_SEEDS[split])
    resumes: list[Resume] = []
    while len(resumes) < SPLIT_SIZES[split]:
        resume = generate_resume(rng)
        if resume.text in seen:  # a repeat of an earlier row (or an earlier split): draw again
            continue
        seen.add(resume.text)
        resumes.append(resume)
    return resumes


@lru_cache(maxsize=1)
def _all_splits() -> dict[str, tuple[Resume, ...]]:
    seen: set[str] = set()
    return {split: tuple(_generate_split(split, seen)) for split in SPLIT_ORDER}


def generate_split(split: str) -> list[Resume]:
    """The structured resumes of one split (for analysis and tests); load_split gives rows."""
    if split not in SPLIT_SIZES:
        raise HarnessError(f"Unknown split {split!r} for resume_json; use one of {', '.join(SPLIT_ORDER)}.")
    return list(_all_splits()[split])


def load_split(split: str, data_dir: Path | None = None) -> list[dict[str, str]]:
    """Rows {"id", "resume", "json"} of one split; data_dir is unused (the data is generated)."""
    return [resume.row(f"resume-{split}-{index:04d}") for index, resume in enumerate(generate_split(split))]


if __name__ == "__main__":  # print one example of a split: python generate.py [split] [index]
    import sys

    chosen_split = sys.argv[1] if len(sys.argv) > 1 else "test"
    chosen_index = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    chosen = load_split(chosen_split)[chosen_index]
    print(chosen["resume"], "\n\n", chosen["json"], sep="")
