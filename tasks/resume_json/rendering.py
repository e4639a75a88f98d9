"""Surface forms: a record rendered as resume text in varied layouts.

Each renderer states exactly the facts of the record, nothing that contradicts it: header layouts,
prose or bullet sections, phone and date formats, missing fields. Renderers draw from the same
`random.Random` as the sampling, after it, so the text is as reproducible as the record.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import random
from pathlib import Path

from harness.data import import_task_file

# Task folders are not packages: siblings are loaded by path, once per process (shared classes).
vocabulary = import_task_file(Path(__file__).with_name("vocabulary.py"))
records = import_task_file(Path(__file__).with_name("records.py"))


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _and_list(items: tuple[str, ...] | list[str]) -> str:
    """"A", "A and B", "A, B and C" (prose keeps the gold order)."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def render_span(rng: random.Random, job: records.Job) -> str:
    """The job's dates in one of several formats; the gold always reduces them to years."""
    style = rng.randrange(5)
    if style == 0:
        end = "present" if job.end is None else str(job.end)
        return f"{job.start}-{end}"
    if style == 1:
        end = rng.choice(("Present", "present", "now")) if job.end is None else str(job.end)
        return f"{job.start} – {end}"
    if style == 2:
        start = f"{vocabulary.MONTHS[job.start_month - 1][0]} {job.start}"
        end = "Present" if job.end is None else f"{vocabulary.MONTHS[job.end_month - 1][0]} {job.end}"
        return f"{start} – {end}"
    if style == 3:
        start = f"{vocabulary.MONTHS[job.start_month - 1][1]} {job.start}"
        end = "present" if job.end is None else f"{vocabulary.MONTHS[job.end_month - 1][1]} {job.end}"
        return f"{start} to {end}"
    end = "Present" if job.end is None else f"{job.end_month:02d}/{job.end}"
    return f"{job.start_month:02d}/{job.start} - {end}"


def render_job_entry(rng: random.Random, job: records.Job, bullet: str) -> str:
    span = render_span(rng, job)
    style = rng.randrange(5)
    if style == 0:
        head = f"{job.title}, {job.company} ({span})"
    elif style == 1:
        head = f"{job.company} — {job.title}\n{span}"
    elif style == 2:
        head = f"{span}: {job.title} at {job.company}"
    elif style == 3:
        head = f"{job.title} | {job.company} | {span}"
    else:
        head = f"{job.title}\n{job.company}, {span}"
    lines = [bullet + head.replace("\n", "\n" + " " * len(bullet))]
    lines += [f"  {bullet or '- '}{line}" for line in job.achievements]
    return "\n".join(lines)


def render_degree_entry(rng: random.Random, degree: records.Degree) -> str:
    style = rng.randrange(6)
    if style == 0:
        return degree.gold()
    if style == 1:
        return f"{degree.short} — {degree.university} ({degree.year})"
    if style == 2:
        return f"{degree.university}\n{degree.short}, {degree.year}"
    if style == 3:
        return f"{degree.year} | {degree.university} | {degree.short}"
    if style == 4:
        return f"{degree.long}, {degree.university}, graduated {degree.year}"
    return f"{degree.university}, Class of {degree.year} – {degree.short}"


def render_skills_block(rng: random.Random, skills: tuple[str, ...], bullet: str) -> str:
    style = rng.randrange(5)
    if style == 0:
        return ", ".join(skills)
    if style == 1:
        return "\n".join(f"{bullet or '- '}{skill}" for skill in skills)
    if style == 2:
        return rng.choice((" · ", " | ", " / ", "; ")).join(skills)
    if style == 3 and len(skills) >= 4:
        cut = len(skills) // 2
        label_a, label_b = rng.choice((("Core", "Tools"), ("Primary", "Also"), ("Expert", "Familiar")))
        return f"{label_a}: {', '.join(skills[:cut])}\n{label_b}: {', '.join(skills[cut:])}"
    return f"Proficient in {_and_list(skills)}."


HEADINGS: dict[str, tuple[str, ...]] = {
    "experience": ("Experience", "Work History", "Professional Experience", "Background", "Employment History",
                   "Career"),
    "education": ("Education", "Qualifications", "Academic Background", "Education & Training"),
    "skills": ("Skills", "Abilities", "Technical Skills", "Core Skills", "Competencies", "Tools & Technologies"),
    "summary": ("Summary", "Profile", "About Me", "Objective"),
}


def render_heading(rng: random.Random, section: str, style: int) -> str:
    word = rng.choice(HEADINGS[section])
    return (word, word.upper(), f"{word}:", f"== {word} ==")[style]


def _contacts(person: records.Person) -> list[str]:
    return [value for value in (person.email, person.phone) if value]


def render_header(rng: random.Random, person: records.Person) -> tuple[str, str]:
    """Returns (text above the sections, text below them): some resumes put contacts at the bottom."""
    style = rng.randrange(4)
    if style == 0:
        return " | ".join([person.name, person.city, *_contacts(person)]), ""
    if style == 1:
        sep = rng.choice((" · ", " | ", ", ", "  "))
        return f"{person.name}\n{sep.join([person.city, *_contacts(person)])}", ""
    if style == 2:
        lines = [person.name]
        lines += [f"Email: {person.email}"] if person.email else []
        lines += [f"{rng.choice(('Phone', 'Tel', 'Mobile'))}: {person.phone}"] if person.phone else []
        lines += [f"Location: {person.city}"]
        return "\n".join(lines), ""
    contacts = _contacts(person)
    return f"{person.name}\n{person.city}", f"Contact: {' / '.join(contacts)}" if contacts else ""


SUMMARY_TRAITS: tuple[str, ...] = ("eager to take on new challenges", "known for reliable delivery",
                                   "who enjoys working across teams", "with a habit of documenting everything")


def render_summary(rng: random.Random, record: records.ResumeRecord) -> str:
    """A one-line profile; mentions only skills that are in the listed skills, so the gold stays true."""
    years = vocabulary.CURRENT_YEAR - record.jobs[-1].start if record.jobs else 0
    noun = record.domain.noun
    focus = _and_list(list(record.skills[:2])) if record.skills and rng.random() < 0.7 else ""
    if years:
        lead = f"{noun.capitalize()} with {years} year{'s' if years > 1 else ''} of experience"
        return f"{lead} in {focus}." if focus else f"{lead}, {rng.choice(SUMMARY_TRAITS)}."
    return f"Motivated {noun} focused on {focus}." if focus else f"Motivated {noun}, {rng.choice(SUMMARY_TRAITS)}."


def render_sectioned(rng: random.Random, record: records.ResumeRecord) -> str:
    heading_style = rng.randrange(4)
    bullet = rng.choice(("- ", "• ", "* ", ""))
    top, bottom = render_header(rng, record.person)
    blocks = [top]
    if rng.random() < 0.6:
        summary = render_summary(rng, record)
        blocks.append(f"{render_heading(rng, 'summary', heading_style)}\n{summary}" if rng.random() < 0.5 else summary)
    sections: list[str] = []
    if record.jobs:
        entries = "\n".join(render_job_entry(rng, job, bullet) for job in record.jobs)
        sections.append(f"{render_heading(rng, 'experience', heading_style)}\n{entries}")
    if record.degrees:
        entries = "\n".join(f"{bullet}{render_degree_entry(rng, d)}".replace("\n", f"\n{' ' * len(bullet)}")
                            for d in record.degrees)
        sections.append(f"{render_heading(rng, 'education', heading_style)}\n{entries}")
    if record.skills:
        sections.append(f"{render_heading(rng, 'skills', heading_style)}\n{render_skills_block(rng, record.skills, bullet)}")
    if rng.random() < 0.3:
        sections.reverse()  # education-first resumes (new graduates) and skills-first ones
    blocks += sections
    if bottom:
        blocks.append(bottom)
    return "\n\n".join(blocks)


def render_prose_jobs(rng: random.Random, first: str, jobs: tuple[records.Job, ...]) -> list[str]:
    sentences: list[str] = []
    for index, job in enumerate(jobs):
        a = _article(job.title)
        if job.end is None:
            sentences.append(rng.choice((
                f"Since {job.start}, {first} has worked as {a} {job.title} at {job.company}.",
                f"{first} is currently {a} {job.title} at {job.company}, a role held from {job.start} to present.",
            )))
        elif index == 0:
            sentences.append(f"From {job.start} to {job.end}, {first} worked as {a} {job.title} at {job.company}.")
        else:
            sentences.append(rng.choice((
                f"Before that, {first} was {a} {job.title} at {job.company} ({render_span(rng, job)}).",
                f"Earlier, from {job.start} to {job.end}, {first} served as {a} {job.title} at {job.company}.",
            )))
        if job.achievements and rng.random() < 0.5:
            sentences.append(f"Highlights there: {job.achievements[0][0].lower()}{job.achievements[0][1:]}.")
    return sentences


def render_prose_degrees(rng: random.Random, first: str, degrees: tuple[records.Degree, ...]) -> list[str]:
    sentences: list[str] = []
    for degree in degrees:
        university = f"the {degree.university}" if degree.university.startswith("University") else degree.university
        if degree.field and rng.random() < 0.5:
            sentences.append(f"{first} studied {degree.field} at {university}, earning the {degree.level[0]} "
                             f"in {degree.year}.")
        else:
            sentences.append(f"{first} holds {_article(degree.long)} {degree.long} from {university} ({degree.year}).")
    return sentences


def render_prose(rng: random.Random, record: records.ResumeRecord) -> str:
    """A paragraph resume: "Jane Doe is a data engineer with ..."."""
    person, first = record.person, record.person.first
    role = record.jobs[0].title if record.jobs else record.domain.noun
    opening = f"{person.name} is {_article(role)} {role} based in {person.city}."
    sentences = [opening, *render_prose_jobs(rng, first, record.jobs), *render_prose_degrees(rng, first, record.degrees)]
    if record.skills:
        sentences.append(rng.choice((
            f"{first}'s toolkit includes {_and_list(record.skills)}.",
            f"Key skills: {', '.join(record.skills)}.",
            f"{first} is skilled in {_and_list(record.skills)}.",
        )))
    contacts = _contacts(person)
    paragraph = " ".join(sentences)
    if not contacts:
        return paragraph
    if len(contacts) == 2:
        contact = f"You can reach {first} at {person.email} or by phone at {person.phone}."
    else:
        contact = f"Contact: {contacts[0]}."
    # Contacts as the last line, or a title line above the paragraph.
    if rng.random() < 0.5:
        return f"{paragraph}\n\n{contact}"
    return f"{person.name} — {' · '.join(contacts)}\n\n{paragraph}"


def render(rng: random.Random, record: records.ResumeRecord) -> str:
    return render_prose(rng, record) if rng.random() < 0.2 else render_sectioned(rng, record)
