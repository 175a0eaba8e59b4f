"""The default catalogue init_db loads: the original five subjects with their eighteen topics,
and the achievement definitions. Loading is an upsert keyed on codes and slugs, so editing a
name here and running init_db again updates it in place."""

SUBJECTS = [
    {
        "code": "MATH",
        "name": "Mathematics",
        "description": "Pure and applied mathematics.",
        "topics": [
            ("algebra", "Algebra"),
            ("calculus", "Calculus"),
            ("geometry", "Geometry"),
            ("statistics", "Statistics"),
        ],
    },
    {
        "code": "PHYS",
        "name": "Physics",
        "description": "Classical and modern physics.",
        "topics": [
            ("mechanics", "Mechanics"),
            ("thermodynamics", "Thermodynamics"),
            ("electromagnetism", "Electromagnetism"),
            ("optics", "Optics"),
        ],
    },
    {
        "code": "CS",
        "name": "Computer Science",
        "description": "Programming, data structures, algorithms and databases.",
        "topics": [
            ("programming-fundamentals", "Programming Fundamentals"),
            ("data-structures", "Data Structures"),
            ("algorithms", "Algorithms"),
            ("database-systems", "Database Systems"),
        ],
    },
    {
        "code": "CHEM",
        "name": "Chemistry",
        "description": "General, organic and physical chemistry.",
        "topics": [
            ("general-chemistry", "General Chemistry"),
            ("organic-chemistry", "Organic Chemistry"),
            ("physical-chemistry", "Physical Chemistry"),
        ],
    },
    {
        "code": "BIO",
        "name": "Biology",
        "description": "Cells, inheritance and ecosystems.",
        "topics": [
            ("cell-biology", "Cell Biology"),
            ("genetics", "Genetics"),
            ("ecology", "Ecology"),
        ],
    },
]

# (code, title, description, kind, threshold, rule): the rule's keys are Achievement's
# min_questions, min_topics and window_days. Migration core 0007 replaced the original
# definitions (which counted attempts, not distinct questions) with these.
ACHIEVEMENTS = [
    ("streak-3", "Three in a row", "Practise on 3 local days in a row.", "streak", 3, {}),
    ("streak-7", "A full week", "Practise on 7 local days in a row.", "streak", 7, {}),
    ("streak-30", "A month of habit", "Practise on 30 local days in a row.", "streak", 30, {}),
    ("questions-10", "Getting started", "Answer 10 different questions.", "questions", 10, {}),
    ("questions-100", "Century", "Answer 100 different questions.", "questions", 100, {}),
    ("questions-1000", "Thousand club", "Answer 1,000 different questions.", "questions", 1000,
     {}),
    ("accuracy-80", "Sharp",
     "Get at least 80% right at the first try, over at least 50 different questions.",
     "accuracy", 80, {"min_questions": 50}),
    ("subject-mastery", "Subject mastered",
     "At least 80% right at the first try over at least 30 different questions of a subject, "
     "covering at least 3 of its topics, in the last 90 days.",
     "mastery", 80, {"min_questions": 30, "min_topics": 3, "window_days": 90}),
]
