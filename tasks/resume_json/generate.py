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

Pure Python: `random.Random(seed)` per split and no dependencies besides harness.errors, so the
harness can import this file by path. Splits are generated in the order test, dev, train with a
shared set of seen texts, so no text appears in two splits and each split is identical on every call.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
import json
import random
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.errors import HarnessError

SPLIT_SIZES: dict[str, int] = {"test": 200, "dev": 200, "train": 2000}
# Generation order matters for cross-split uniqueness: earlier splits claim texts first, so the
# evaluation splits never change when the train split is resized.
SPLIT_ORDER: tuple[str, ...] = ("test", "dev", "train")
SPLIT_SEEDS: dict[str, int] = {"test": 7_301, "dev": 7_302, "train": 7_303}
GOLD_KEYS: tuple[str, ...] = ("name", "email", "phone", "experience", "education", "skills")
CURRENT_YEAR = 2024

# Probability that a resume leaves a field out (the brief asks for ~10-15% on phone/email/education).
P_MISSING = {"phone": 0.13, "email": 0.12, "education": 0.12, "experience": 0.05, "skills": 0.05}

# ---------------------------------------------------------------------------------------------
# Pools. Names come from many origins; companies are fictional so no real employer is implied.
# ---------------------------------------------------------------------------------------------

FIRST_NAMES: tuple[str, ...] = (
    "Jane", "Michael", "Aisha", "Carlos", "Mei", "Olusegun", "Priya", "Lukas", "Fatima", "Hiroshi",
    "Sofia", "Dmitri", "Amara", "Mateo", "Ananya", "Kwame", "Chloé", "Tomasz", "Leila", "Diego",
    "Ngozi", "Arjun", "Ingrid", "Yusuf", "Camille", "Min-jun", "Zanele", "Rafael", "Elif", "Oskar",
    "Thandiwe", "Ravi", "Beatriz", "Kenji", "Nadia", "Samuel", "Isabela", "Wei", "Emeka", "Hannah",
    "Omar", "Astrid", "Tariq", "Lucía", "Jamal", "Freya", "Anh", "Daniel", "Keisha", "Marco",
    "Siddharth", "Yasmin", "Pavel", "Grace", "Haruto", "Zoë", "Ibrahim", "Maya", "Santiago", "Ayesha",
    "Nikolai", "Adaeze", "Liam", "Rania", "Tenzin", "Valentina", "Chen", "Kofi", "Emily", "Javier",
)

LAST_NAMES: tuple[str, ...] = (
    "Doe", "Okafor", "Nguyen", "García", "Kowalski", "Patel", "Müller", "Haddad", "Tanaka", "Silva",
    "Ivanov", "Mensah", "Rossi", "Kim", "Fernández", "Chowdhury", "Johansson", "Adeyemi", "O'Brien",
    "Yilmaz", "Dubois", "Zhang", "Mbeki", "Santos", "Novak", "Singh", "Schmidt", "Abdullah", "Park",
    "Moreno", "Eriksson", "Mwangi", "Kapoor", "Lindqvist", "Costa", "Hassan", "Watanabe", "Brown",
    "Popescu", "Reyes", "Nakamura", "Osei", "Jensen", "Khan", "Lopez", "Petrov", "Wong", "Ndlovu",
    "Murphy", "Iyer", "Castillo", "Bauer", "Sato", "Ahmed", "Fischer", "Chukwu", "Alvarez", "Liu",
    "Smith", "Das", "Horvath", "Morales", "Kaur", "Walker", "Suzuki", "Nasser", "Oliveira", "Larsen",
)

COMPANIES: tuple[str, ...] = (
    "Acme Corp", "Northwind Traders", "Globex Inc.", "Initech", "Bluefin Analytics", "Harbor Logistics",
    "Stellar Systems", "Pinecrest Health", "Quantum Ledger LLC", "Redwood Software", "Lumen Labs",
    "Cobalt Media Group", "Silverline Bank", "Orbital Dynamics", "Greenfield Foods", "Nimbus Cloud Ltd",
    "Helix Biotech", "Vertex Consulting", "Meridian Insurance", "Atlas Retail", "Brightpath Education",
    "Ironbridge Capital", "Sunrise Telecom", "Crescent Energy", "Polar Robotics GmbH", "Tidewater Shipping",
    "Kestrel Security", "Maple Leaf Data", "Sapphire Hotels", "Copperfield Manufacturing", "Everest Pharma",
    "Nova Fintech S.A.", "Riverbend Hospital", "Summit Marketing", "Zenith Games", "Arcadia Motors",
    "Beacon Labs Pvt Ltd", "Cedar & Co.", "Driftwood Studios", "Falcon Aerospace", "Granite Partners",
    "Horizon Mobility", "Indigo Apparel", "Juniper Networks Lab", "Keystone Utilities", "Lighthouse Media",
    "Monarch Payments", "Nexus Health Systems", "Oakridge Realty", "Pioneer Agritech", "Quasar AI",
    "Radiant Solar", "Sequoia Learning", "Terra Mining Ltd", "Union Freight", "Vantage Point Research",
    "Willow Care", "Yellowstone Outdoors", "Zephyr Airlines", "Emberly Foods", "Tessellate Design",
)

UNIVERSITIES: tuple[str, ...] = (
    "University of Toronto", "University of Lagos", "Universidad de Buenos Aires", "IIT Bombay",
    "National University of Singapore", "Tsinghua University", "University of Nairobi", "ETH Zurich",
    "University of Melbourne", "McGill University", "Seoul National University", "University of Cape Town",
    "Technical University of Munich", "University of São Paulo", "Ohio State University",
    "Georgia Institute of Technology", "University of Michigan", "University of Texas at Austin",
    "Arizona State University", "University of Manchester", "University College Dublin",
    "Delft University of Technology", "University of Warsaw", "Cairo University", "American University of Beirut",
    "University of the Philippines", "University of Ghana", "Kyoto University", "University of British Columbia",
    "Boston University", "Rutgers University", "Purdue University", "University of Edinburgh",
    "Sapienza University of Rome", "University of Helsinki", "Monash University", "Anna University",
    "University of Washington", "Carnegie Mellon University", "Istanbul Technical University",
)

CITIES: tuple[str, ...] = (
    "Austin, TX", "Toronto, ON", "London, UK", "Bengaluru, India", "Lagos, Nigeria", "Berlin, Germany",
    "Seattle, WA", "Chicago, IL", "Nairobi, Kenya", "Singapore", "São Paulo, Brazil", "Madrid, Spain",
    "Dublin, Ireland", "Sydney, Australia", "Boston, MA", "Denver, CO", "Warsaw, Poland", "Seoul, South Korea",
    "Mexico City, Mexico", "Cape Town, South Africa", "Atlanta, GA", "Vancouver, BC", "Amsterdam, Netherlands",
    "Manila, Philippines", "New York, NY", "Cairo, Egypt", "Stockholm, Sweden", "Pune, India",
)

EMAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "outlook.com", "yahoo.com", "proton.me", "mail.com", "fastmail.com", "icloud.com",
    "hotmail.com", "example.org", "inbox.eu",
)

# (abbreviation used in gold, spelled-out form some resumes use instead)
DEGREE_LEVELS: tuple[tuple[str, str], ...] = (
    ("B.Sc.", "Bachelor of Science"), ("B.A.", "Bachelor of Arts"), ("B.Eng.", "Bachelor of Engineering"),
    ("B.Tech", "Bachelor of Technology"), ("M.Sc.", "Master of Science"), ("M.A.", "Master of Arts"),
    ("M.Eng.", "Master of Engineering"), ("Ph.D.", "Doctor of Philosophy"), ("B.Com", "Bachelor of Commerce"),
)
MBA = ("MBA", "Master of Business Administration")  # has no field: the gold degree is just "MBA"
# Degrees that only go with some fields, so no resume claims a "B.Eng. Marketing".
ENGINEERING_LEVELS = frozenset({"B.Eng.", "B.Tech", "M.Eng."})
COMMERCE_LEVELS = frozenset({"B.Com"})
ENGINEERING_FIELDS = frozenset({"Computer Science", "Software Engineering", "Computer Engineering",
                                "Information Technology", "Electrical Engineering", "Network Engineering",
                                "Industrial Engineering", "Artificial Intelligence"})
COMMERCE_FIELDS = frozenset({"Finance", "Accounting", "Economics", "Business Administration", "Marketing",
                             "Management"})

MONTHS: tuple[tuple[str, str], ...] = (
    ("Jan", "January"), ("Feb", "February"), ("Mar", "March"), ("Apr", "April"), ("May", "May"),
    ("Jun", "June"), ("Jul", "July"), ("Aug", "August"), ("Sep", "September"), ("Oct", "October"),
    ("Nov", "November"), ("Dec", "December"),
)


@dataclass(frozen=True)
class Domain:
    """A job family: titles, skills, study fields and achievement lines that belong together."""

    noun: str  # used in summaries: "a data professional"
    titles: tuple[str, ...]
    skills: tuple[str, ...]
    fields: tuple[str, ...]
    achievements: tuple[str, ...]


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "data professional",
        ("Data Analyst", "Data Engineer", "Senior Data Engineer", "Data Scientist", "Analytics Engineer", "BI Developer"),
        ("SQL", "Python", "Spark", "Airflow", "dbt", "Tableau", "Power BI", "Pandas", "Snowflake", "Kafka",
         "Excel", "R", "Looker", "BigQuery", "Statistics"),
        ("Computer Science", "Statistics", "Mathematics", "Data Science", "Economics"),
        ("Built batch pipelines that load two terabytes a day", "Cut dashboard refresh time by 60%",
         "Designed the company-wide metrics layer", "Automated weekly revenue reporting",
         "Migrated the warehouse to a columnar store", "Mentored three junior analysts"),
    ),
    Domain(
        "software engineer",
        ("Software Engineer", "Senior Software Engineer", "Backend Developer", "Java Developer", "Staff Engineer",
         "Software Developer"),
        ("Java", "Go", "C++", "Python", "PostgreSQL", "Docker", "REST APIs", "gRPC", "Git", "Linux", "Redis",
         "Microservices", "Kotlin", "Rust", "Unit Testing"),
        ("Computer Science", "Software Engineering", "Computer Engineering", "Information Technology"),
        ("Rewrote the billing service, halving p99 latency", "Led the move from a monolith to services",
         "Raised test coverage from 40% to 85%", "Owned on-call for the payments API",
         "Shipped an offline sync feature used by a million users", "Reviewed code for a team of eight"),
    ),
    Domain(
        "web developer",
        ("Frontend Developer", "Full Stack Developer", "Web Developer", "UI Engineer", "JavaScript Developer"),
        ("JavaScript", "TypeScript", "React", "Vue.js", "Node.js", "HTML", "CSS", "Next.js", "GraphQL", "Webpack",
         "Figma", "Accessibility", "Jest"),
        ("Computer Science", "Information Systems", "Interactive Media", "Software Engineering"),
        ("Rebuilt the checkout flow in React", "Improved Lighthouse scores from 55 to 95",
         "Introduced a shared design system", "Made the customer portal WCAG compliant",
         "Cut bundle size by a third", "Built an internal admin dashboard"),
    ),
    Domain(
        "cloud engineer",
        ("DevOps Engineer", "Site Reliability Engineer", "Cloud Engineer", "Systems Administrator", "Platform Engineer"),
        ("AWS", "Azure", "GCP", "Kubernetes", "Terraform", "Ansible", "Docker", "Jenkins", "Prometheus", "Bash",
         "Linux", "CI/CD", "Helm"),
        ("Computer Science", "Information Technology", "Computer Engineering", "Network Engineering"),
        ("Moved 40 services to Kubernetes", "Reduced cloud spend by 25%", "Wrote the incident response runbooks",
         "Automated server provisioning end to end", "Kept uptime above 99.95%", "Built the deployment pipeline"),
    ),
    Domain(
        "machine learning engineer",
        ("Machine Learning Engineer", "Research Scientist", "NLP Engineer", "Computer Vision Engineer", "AI Engineer"),
        ("PyTorch", "TensorFlow", "scikit-learn", "Transformers", "NumPy", "CUDA", "MLflow", "LLM fine-tuning",
         "Computer Vision", "NLP", "Python", "ONNX"),
        ("Computer Science", "Artificial Intelligence", "Mathematics", "Electrical Engineering"),
        ("Trained a ranking model that lifted click-through by 8%", "Served models with sub-20 ms latency",
         "Fine-tuned language models for support ticket routing", "Built the feature store",
         "Published two papers on efficient training", "Set up experiment tracking for the team"),
    ),
    Domain(
        "product specialist",
        ("Product Manager", "UX Designer", "Product Designer", "Product Owner", "UX Researcher"),
        ("Figma", "User Research", "Roadmapping", "Jira", "A/B Testing", "Wireframing", "Agile", "Scrum",
         "Prototyping", "Stakeholder Management", "SQL"),
        ("Human-Computer Interaction", "Design", "Psychology", "Business Administration"),
        ("Launched a mobile app rated 4.7 stars", "Ran forty user interviews per quarter",
         "Defined the product roadmap for two teams", "Raised onboarding completion by 30%",
         "Ran the company's first pricing experiment", "Redesigned the search experience"),
    ),
    Domain(
        "finance professional",
        ("Financial Analyst", "Accountant", "Senior Accountant", "Auditor", "Controller", "Investment Analyst"),
        ("Excel", "Financial Modeling", "SAP", "QuickBooks", "IFRS", "GAAP", "Budgeting", "Forecasting", "VBA",
         "Bloomberg", "Risk Analysis"),
        ("Finance", "Accounting", "Economics", "Business Administration"),
        ("Closed the books five days faster each month", "Built the three-statement forecasting model",
         "Led the annual external audit", "Found savings of half a million in vendor contracts",
         "Prepared board reporting packs", "Standardised expense policies across regions"),
    ),
    Domain(
        "marketing professional",
        ("Marketing Specialist", "Digital Marketing Manager", "Content Strategist", "SEO Specialist",
         "Marketing Analyst", "Brand Manager"),
        ("SEO", "Google Analytics", "HubSpot", "Copywriting", "Social Media", "Google Ads", "Content Marketing",
         "Salesforce", "Email Marketing", "Canva", "Market Research"),
        ("Marketing", "Communications", "Journalism", "Business Administration"),
        ("Grew organic traffic by 120%", "Ran campaigns with a budget of two million",
         "Doubled the newsletter audience", "Relaunched the brand website", "Managed four agencies",
         "Cut cost per lead by 35%"),
    ),
    Domain(
        "healthcare professional",
        ("Registered Nurse", "Clinical Research Coordinator", "Medical Assistant", "Pharmacist",
         "Health Data Analyst"),
        ("Patient Care", "Epic EHR", "Phlebotomy", "BLS Certification", "Clinical Trials", "HIPAA Compliance",
         "Medication Administration", "Triage", "Medical Terminology"),
        ("Nursing", "Pharmacy", "Public Health", "Biology"),
        ("Cared for up to twelve patients per shift", "Coordinated three multi-site trials",
         "Trained new staff on the records system", "Improved discharge documentation accuracy",
         "Led the ward's infection control audit", "Supported vaccination clinics"),
    ),
    Domain(
        "operations professional",
        ("HR Generalist", "Recruiter", "Operations Manager", "Project Manager", "Office Manager",
         "Supply Chain Analyst"),
        ("Recruiting", "Onboarding", "Workday", "Payroll", "Employee Relations", "Project Management",
         "Logistics", "Vendor Management", "Six Sigma", "MS Office"),
        ("Human Resources", "Business Administration", "Industrial Engineering", "Management"),
        ("Hired sixty people in one year", "Rolled out a new payroll system", "Cut shipping delays by 40%",
         "Ran the office move for two hundred staff", "Delivered twelve projects on budget",
         "Rewrote the onboarding handbook"),
    ),
)

TITLE_PREFIXES: tuple[str, ...] = ("Junior ", "Senior ", "Lead ", "Principal ")

# ---------------------------------------------------------------------------------------------
# The structured record a resume is rendered from.
# ---------------------------------------------------------------------------------------------


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
    domain: Domain
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


@dataclass(frozen=True)
class Resume:
    """One generated example: the rendered text and its exact gold record."""

    record: ResumeRecord
    text: str

    def gold_json(self) -> str:
        return json.dumps(self.record.gold(), ensure_ascii=False, separators=(",", ":"))

    def row(self, row_id: str) -> dict[str, str]:
        return {"id": row_id, "resume": self.text, "json": self.gold_json()}


# ---------------------------------------------------------------------------------------------
# Sampling the record.
# ---------------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    """Drop accents and apostrophes so names fit in an e-mail address (Zoë -> zoe, O'Brien -> obrien)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if ch.isascii() and (ch.isalnum() or ch == "-")).lower()


def sample_email(rng: random.Random, first: str, last: str) -> str:
    given, family = _ascii(first), _ascii(last)
    local = rng.choice((f"{given}.{family}", f"{given[0]}{family}", f"{given}_{family}{rng.randint(1, 99)}",
                        f"{family}.{given}", f"{given}{family}", f"{given}.{family[0]}{rng.randint(10, 999)}"))
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


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
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    # A middle initial now and then: the gold name is always exactly what the resume shows.
    name = f"{first} {chr(rng.randint(65, 90))}. {last}" if rng.random() < 0.1 else f"{first} {last}"
    email = "" if rng.random() < P_MISSING["email"] else sample_email(rng, first, last)
    phone = "" if rng.random() < P_MISSING["phone"] else sample_phone(rng)
    return Person(name=name, first=first, city=rng.choice(CITIES), email=email, phone=phone)


def sample_title(rng: random.Random, domain: Domain) -> str:
    title = rng.choice(domain.titles)
    if rng.random() < 0.2 and not title.startswith(("Senior", "Staff", "Lead")):
        return rng.choice(TITLE_PREFIXES) + title
    return title


def sample_jobs(rng: random.Random, domain: Domain) -> tuple[Job, ...]:
    """1-3 jobs, most recent first; each older job ends the year the next one starts, or a year before."""
    count = rng.choices((1, 2, 3), weights=(35, 45, 20))[0]
    end: int | None = None if rng.random() < 0.4 else rng.randint(2019, CURRENT_YEAR)
    companies = rng.sample(COMPANIES, count)
    # Achievement lines are not gold facts; they set the length: more for a lone job, fewer when there are three.
    min_bullets, max_bullets = ((1, 2), (0, 1), (0, 1))[count - 1]
    jobs: list[Job] = []
    newer_start: tuple[int, int] | None = None  # (year, month) the next-newer job started
    for company in companies:
        top = CURRENT_YEAR if end is None else end
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
    if level[0] in ENGINEERING_LEVELS:
        return field in ENGINEERING_FIELDS
    if level[0] in COMMERCE_LEVELS:
        return field in COMMERCE_FIELDS
    return True


def sample_level(rng: random.Random, prefixes: tuple[str, ...], field: str) -> tuple[str, str]:
    return rng.choice([level for level in DEGREE_LEVELS if level[0].startswith(prefixes) and level_fits(level, field)])


def sample_degrees(rng: random.Random, domain: Domain, first_job_start: int) -> tuple[Degree, ...]:
    """One degree (sometimes two: a bachelor's then a master's/MBA), most recent first."""
    universities = rng.sample(UNIVERSITIES, 2)
    year = first_job_start - rng.choice((0, 0, 1))
    bachelor_field = rng.choice(domain.fields)
    if rng.random() < 0.25:
        if rng.random() < 0.2:
            master = Degree(MBA, "", universities[0], year)
        else:
            master_field = rng.choice(domain.fields)
            master = Degree(sample_level(rng, ("M", "P"), master_field), master_field, universities[0], year)
        study_years = rng.randint(4, 6) if master.level[0] == "Ph.D." else rng.randint(1, 3)
        bachelor = Degree(sample_level(rng, ("B",), bachelor_field), bachelor_field, universities[1],
                          year - study_years)
        return (master, bachelor)
    return (Degree(sample_level(rng, ("B",), bachelor_field), bachelor_field, universities[0], year),)


def sample_record(rng: random.Random) -> ResumeRecord:
    domain = rng.choice(DOMAINS)
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


# ---------------------------------------------------------------------------------------------
# Surface forms. Each renderer states exactly the facts of the record, nothing that contradicts it.
# ---------------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def _and_list(items: tuple[str, ...] | list[str]) -> str:
    """"A", "A and B", "A, B and C" (prose keeps the gold order)."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def render_span(rng: random.Random, job: Job) -> str:
    """The job's dates in one of several formats; the gold always reduces them to years."""
    style = rng.randrange(5)
    if style == 0:
        end = "present" if job.end is None else str(job.end)
        return f"{job.start}-{end}"
    if style == 1:
        end = rng.choice(("Present", "present", "now")) if job.end is None else str(job.end)
        return f"{job.start} – {end}"
    if style == 2:
        start = f"{MONTHS[job.start_month - 1][0]} {job.start}"
        end = "Present" if job.end is None else f"{MONTHS[job.end_month - 1][0]} {job.end}"
        return f"{start} – {end}"
    if style == 3:
        start = f"{MONTHS[job.start_month - 1][1]} {job.start}"
        end = "present" if job.end is None else f"{MONTHS[job.end_month - 1][1]} {job.end}"
        return f"{start} to {end}"
    end = "Present" if job.end is None else f"{job.end_month:02d}/{job.end}"
    return f"{job.start_month:02d}/{job.start} - {end}"


def render_job_entry(rng: random.Random, job: Job, bullet: str) -> str:
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


def render_degree_entry(rng: random.Random, degree: Degree) -> str:
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


def _contacts(person: Person) -> list[str]:
    return [value for value in (person.email, person.phone) if value]


def render_header(rng: random.Random, person: Person) -> tuple[str, str]:
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


def render_summary(rng: random.Random, record: ResumeRecord) -> str:
    """A one-line profile; mentions only skills that are in the listed skills, so the gold stays true."""
    years = CURRENT_YEAR - record.jobs[-1].start if record.jobs else 0
    noun = record.domain.noun
    focus = _and_list(list(record.skills[:2])) if record.skills and rng.random() < 0.7 else ""
    if years:
        lead = f"{noun.capitalize()} with {years} year{'s' if years > 1 else ''} of experience"
        return f"{lead} in {focus}." if focus else f"{lead}, {rng.choice(SUMMARY_TRAITS)}."
    return f"Motivated {noun} focused on {focus}." if focus else f"Motivated {noun}, {rng.choice(SUMMARY_TRAITS)}."


def render_sectioned(rng: random.Random, record: ResumeRecord) -> str:
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


def render_prose_jobs(rng: random.Random, first: str, jobs: tuple[Job, ...]) -> list[str]:
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


def render_prose_degrees(rng: random.Random, first: str, degrees: tuple[Degree, ...]) -> list[str]:
    sentences: list[str] = []
    for degree in degrees:
        university = f"the {degree.university}" if degree.university.startswith("University") else degree.university
        if degree.field and rng.random() < 0.5:
            sentences.append(f"{first} studied {degree.field} at {university}, earning the {degree.level[0]} "
                             f"in {degree.year}.")
        else:
            sentences.append(f"{first} holds {_article(degree.long)} {degree.long} from {university} ({degree.year}).")
    return sentences


def render_prose(rng: random.Random, record: ResumeRecord) -> str:
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


def render(rng: random.Random, record: ResumeRecord) -> str:
    return render_prose(rng, record) if rng.random() < 0.2 else render_sectioned(rng, record)


def generate_resume(rng: random.Random) -> Resume:
    record = sample_record(rng)
    return Resume(record, render(rng, record))


# ---------------------------------------------------------------------------------------------
# Splits.
# ---------------------------------------------------------------------------------------------


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
