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

# (code, title, description, kind, threshold)
ACHIEVEMENTS = [
    ("first-answer", "First step", "Answer your first question.", "attempts", 1),
    ("answers-100", "Century", "Answer 100 questions.", "attempts", 100),
    ("answers-1000", "Thousand club", "Answer 1,000 questions.", "attempts", 1000),
    ("correct-50", "Half a hundred right", "Answer 50 questions correctly.", "correct", 50),
    ("correct-500", "Five hundred right", "Answer 500 questions correctly.", "correct", 500),
    ("streak-3", "Three in a row", "Practise on 3 days in a row.", "streak", 3),
    ("streak-7", "A full week", "Practise on 7 days in a row.", "streak", 7),
    ("streak-30", "A month of habit", "Practise on 30 days in a row.", "streak", 30),
    ("accuracy-80", "Sharp", "Get 80% of your last 50 answers right.", "accuracy", 80),
    ("subjects-3", "All-rounder", "Practise questions in 3 subjects.", "subjects", 3),
    ("sessions-10", "Regular", "Complete 10 practice sessions.", "sessions", 10),
]
