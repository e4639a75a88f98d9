"""The structured record a resume is rendered from, its exact gold JSON, and its seeded sampling.

Every resume is rendered from a record (person, jobs, degrees, skills), so the gold JSON is exact by
construction; `ResumeRecord.gold()` is the canonical gold format described in generate.py. Sampling
draws from one `random.Random`, in a fixed order, so a seed gives the same records on every call.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import random
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from harness.data import import_task_file

# Task folders are not packages: siblings are loaded by path, once per process (shared classes).
vocabulary = import_task_file(Path(__file__).with_name("vocabulary.py"))


# Probability that a resume leaves a field out (the brief asks for ~10-15% on phone/email/education).
P_MISSING = {"phone": 0.13, "email": 0.12, "education": 0.12, "experience": 0.05, "skills": 0.05}


@dataclass(frozen=True)
class Job:
    title: str
    company: str
    start: int
    end: int | None  # None: the person still works there
    start_month: int  # 1..12, only used by surface forms that show months
    end_month: int
    achievements: tuple[str, ...] = ()

    def gold(self) -> str:
        end = "present" if self.end is None else str(self.end)
        return f"{self.title} at {self.company} ({self.start}-{end})"


@dataclass(frozen=True)
class Degree:
    level: tuple[str, str]  # (abbreviation, spelled out)
    field: str  # "" for an MBA
    university: str
    year: int

    @property
    def short(self) -> str:
        return f"{self.level[0]} {self.field}".strip()

    @property
    def long(self) -> str:
        return f"{self.level[1]} in {self.field}" if self.field else self.level[1]

    def gold(self) -> str:
        return f"{self.short}, {self.university}, {self.year}"


@dataclass(frozen=True)
class Person:
    name: str
    first: str
    city: str
    email: str  # "" when the resume leaves it out
    phone: str  # as written; "" when left out


@dataclass(frozen=True)
class ResumeRecord:
    person: Person
    domain: vocabulary.Domain
    jobs: tuple[Job, ...]  # most recent first, the order every layout lists them in
    degrees: tuple[Degree, ...]
    skills: tuple[str, ...]  # in the order the text lists them

    def gold(self) -> dict[str, object]:
        return {
            "name": self.person.name,
            "email": self.person.email,
            "phone": self.person.phone,
            "experience": "; ".join(job.gold() for job in self.jobs),
            "education": "; ".join(degree.gold() for degree in self.degrees),
            "skills": list(self.skills),
        }


def _ascii(text: str) -> str:
    """Drop accents and apostrophes so names fit in an e-mail address (Zoë -> zoe, O'Brien -> obrien)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isascii() and (ch.isalnum() or ch == "-")).lower()


def sample_email(rng: random.Random, first: str, last: str) -> str:
    given, family = _ascii(first), _ascii(last)
    local = rng.choice((f"{given}.{family}", f"{given[0]}{family}", f"{given}_{family}{rng.randint(1, 99)}",
                        f"{family}.{given}", f"{given}{family}", f"{given}.{family[0]}{rng.randint(10, 999)}"))
    return f"{local}@{rng.choice(vocabulary.EMAIL_DOMAINS)}"


def sample_phone(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    formats = (
        f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}", f"+1 {area} {exchange} {line:04d}",
        f"{area}.{exchange}.{line:04d}", f"+1-{area}-{exchange}-{line:04d}",
        f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        f"+91 9{rng.randint(1000, 9999)} {rng.randint(10000, 99999)}",
    )
    weights = (5, 5, 4, 4, 2, 1, 1)
    return rng.choices(formats, weights=weights)[0]


def sample_person(rng: random.Random) -> Person:
    first, last = rng.choice(vocabulary.FIRST_NAMES), rng.choice(vocabulary.LAST_NAMES)
    # A middle initial now and then: the gold name is always exactly what the resume shows.
    name = f"{first} {chr(rng.randint(65, 90))}. {last}" if rng.random() < 0.1 else f"{first} {last}"
    email = "" if rng.random() < P_MISSING["email"] else sample_email(rng, first, last)
    phone = "" if rng.random() < P_MISSING["phone"] else sample_phone(rng)
    return Person(name=name, first=first, city=rng.choice(vocabulary.CITIES), email=email, phone=phone)


def sample_title(rng: random.Random, domain: vocabulary.Domain) -> str:
    title = rng.choice(domain.titles)
    if rng.random() < 0.2 and not title.startswith(("Senior", "Staff", "Lead")):
        return rng.choice(vocabulary.TITLE_PREFIXES) + title
    return title


def sample_jobs(rng: random.Random, domain: vocabulary.Domain) -> tuple[Job, ...]:
    """1-3 jobs, most recent first; each older job ends the year the next one starts, or a year before."""
    count = rng.choices((1, 2, 3), weights=(35, 45, 20))[0]
    end: int | None = None if rng.random() < 0.4 else rng.randint(2019, vocabulary.CURRENT_YEAR)
    companies = rng.sample(vocabulary.COMPANIES, count)
    # Achievement lines are not gold facts; they set the length: more for a lone job, fewer when there are three.
    min_bullets, max_bullets = ((1, 2), (0, 1), (0, 1))[count - 1]
    jobs: list[Job] = []
    newer_start: tuple[int, int] | None = None  # (year, month) the next-newer job started
    for company in companies:
        top = vocabulary.CURRENT_YEAR if end is None else end
        start = top - rng.randint(1, 5)
        # Months never overlap: a job that ends the year the next one starts ends by that month.
        last_month = newer_start[1] if newer_start and newer_start[0] == end else 12
        start_month, end_month = rng.randint(1, 12), rng.randint(1, last_month)
        bullets = tuple(rng.sample(domain.achievements, rng.randint(min_bullets, max_bullets)))
        jobs.append(Job(sample_title(rng, domain), company, start, end, start_month, end_month, bullets))
        newer_start = (start, start_month)
        end = start - rng.choice((0, 0, 0, 1))
    return tuple(jobs)


def level_fits(level: tuple[str, str], field: str) -> bool:
    if level[0] in vocabulary.ENGINEERING_LEVELS:
        return field in vocabulary.ENGINEERING_FIELDS
    if level[0] in vocabulary.COMMERCE_LEVELS:
        return field in vocabulary.COMMERCE_FIELDS
    return True


def sample_level(rng: random.Random, prefixes: tuple[str, ...], field: str) -> tuple[str, str]:
    return rng.choice([level for level in vocabulary.DEGREE_LEVELS if level[0].startswith(prefixes) and level_fits(level, field)])


def sample_degrees(rng: random.Random, domain: vocabulary.Domain, first_job_start: int) -> tuple[Degree, ...]:
    """One degree (sometimes two: a bachelor's then a master's/MBA), most recent first."""
    universities = rng.sample(vocabulary.UNIVERSITIES, 2)
    year = first_job_start - rng.choice((0, 0, 1))
    bachelor_field = rng.choice(domain.fields)
    if rng.random() < 0.25:
        if rng.random() < 0.2:
            master = Degree(vocabulary.MBA, "", universities[0], year)
        else:
            master_field = rng.choice(domain.fields)
            master = Degree(sample_level(rng, ("M", "P"), master_field), master_field, universities[0], year)
        study_years = rng.randint(4, 6) if master.level[0] == "Ph.D." else rng.randint(1, 3)
        bachelor = Degree(sample_level(rng, ("B",), bachelor_field), bachelor_field, universities[1],
                          year - study_years)
        return (master, bachelor)
    return (Degree(sample_level(rng, ("B",), bachelor_field), bachelor_field, universities[0], year),)


def sample_record(rng: random.Random) -> ResumeRecord:
    domain = rng.choice(vocabulary.DOMAINS)
    person = sample_person(rng)
    jobs = sample_jobs(rng, domain)
    degrees = sample_degrees(rng, domain, jobs[-1].start)
    # Missing sections are decided after sampling so that the rest of the record does not depend on them.
    if rng.random() < P_MISSING["experience"]:
        jobs = ()
    if rng.random() < P_MISSING["education"]:
        degrees = ()
    skills: tuple[str, ...] = ()
    if rng.random() >= P_MISSING["skills"]:
        skills = tuple(rng.sample(domain.skills, rng.randint(3, 8)))
    return ResumeRecord(person, domain, jobs, degrees, skills)
