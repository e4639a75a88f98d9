"""The pools the synthetic resumes draw from: names, companies, universities, degrees, job families.

Names come from many origins; companies are fictional so no real employer is implied. Pure data
(and the `Domain` type that groups a job family's titles, skills, fields and achievements): changing
any pool changes every generated split.
"""

# No `from __future__ import annotations`: the harness loads this file by path, possibly without
# registering it in sys.modules, and dataclasses then cannot resolve string annotations.
from dataclasses import dataclass


CURRENT_YEAR = 2024


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
