"""Offline metadata (core/ai/offline.py): TF-IDF keywords over the bank, the nearest topic by
embedding, the question type from its structure, the time rule."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.ai import embedders, offline
from core.ai.offline import (
    KeywordIndex,
    TopicDescription,
    estimated_time_seconds,
    keyword_terms,
    keywords_tfidf,
    offline_metadata_batch,
    question_type_infer,
    topic_suggest,
    topic_vectors,
)
from core.ai.types import ChoiceInput, QuestionInput, QuestionMetadata
from core.catalogue import SUBJECTS

DATA = Path(__file__).resolve().parent / "data"
TOPICS = [TopicDescription(subject["name"], name)
          for subject in SUBJECTS for _, name in subject["topics"]]
TOPIC_NAMES = {slug: name for subject in SUBJECTS for slug, name in subject["topics"]}


def question(text="What is 2 + 2?", *, choices=(), answer="", marks=1, subject="Mathematics",
             topics_available=()) -> QuestionInput:
    return QuestionInput(id=1, subject=subject, topic="", question_type="", text=text,
                         choices=tuple(ChoiceInput(label, choice, correct)
                                       for label, choice, correct in choices),
                         answer=answer, marks=marks, topics_available=topics_available)


# --- Keywords -------------------------------------------------------------------------------

BANK = [
    "A hash table with 7 slots uses linear probing. Where is the key 24 stored?",
    "Insert the keys 5, 16 and 27 into a hash table of size 11 with linear probing.",
    "What is the worst-case time complexity of searching a binary search tree?",
    "What is the kinetic energy of a 1500 kg car moving at 20 m/s?",
    "A 2 kg ball falls 5 m. Calculate its kinetic energy just before it lands.",
    "Calculate the momentum of a 1200 kg car moving at 25 m/s.",
]


def test_keyword_terms_skip_stopwords_numbers_and_exam_instructions():
    terms = keyword_terms("Calculate the kinetic energy of a 1500 kg car: find the value.")
    assert terms == ["kinetic", "energy", "kinetic energy", "car"]


def test_keywords_rank_rare_terms_of_the_bank_first():
    keywords = keywords_tfidf(BANK, top_k=4)
    assert all(len(k) <= 4 for k in keywords)
    assert "hash table" in keywords[1]  # a two-word term two questions share
    assert "kinetic energy" in keywords[3]
    assert "kinetic" not in keywords[3]  # already inside the two-word term
    assert keywords[5][0] == "momentum"  # the one word no other question uses
    words = {word for k in keywords for term in k for word in term.split()}
    assert not words & offline.STOPWORDS
    assert not any(word[0].isdigit() for word in words)


def test_a_two_word_term_needs_two_questions():
    index = KeywordIndex(BANK)
    assert "linear probing" in index.scores(BANK[0])  # used by two questions
    assert "time complexity" not in index.scores(BANK[2])  # used by one only


def test_keywords_are_stable():
    assert keywords_tfidf(BANK) == keywords_tfidf(list(BANK))
    assert keywords_tfidf(["", "   "]) == [[], []]


def test_keywords_use_the_whole_bank_for_document_frequencies():
    # Alone, no two-word term is used twice; against the bank, two are.
    assert keywords_tfidf([BANK[3]], top_k=3) == [["car", "energy", "kinetic"]]
    assert keywords_tfidf([BANK[3]], bank_texts=BANK, top_k=3) == [
        ["car moving", "kinetic energy"]]


# --- Topics ---------------------------------------------------------------------------------


def test_a_topic_label_says_subject_name_and_description():
    assert TopicDescription("Physics", "Optics").label == "Physics: Optics"
    assert (TopicDescription("Physics", "Optics", "Lenses and light").label
            == "Physics: Optics — Lenses and light")


def test_topic_vectors_are_computed_once_per_embedder_and_topics():
    calls = []

    class Counting:
        name, dimension, max_batch, duplicate_threshold = "counting", 3, 10, 0.5

        def embed(self, texts):
            calls.append(list(texts))
            return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]][:len(texts)]

    topics = [TopicDescription("Physics", "Optics"), TopicDescription("Physics", "Mechanics")]
    embedder = Counting()
    first = topic_suggest([0.1, 0.9, 0.0], topics, embedder=embedder)
    second = topic_suggest([0.9, 0.1, 0.0], topics, embedder=embedder)
    assert (first.topic.name, second.topic.name) == ("Mechanics", "Optics")
    assert first.similarity == pytest.approx(0.9)
    assert calls == [["Physics: Optics", "Physics: Mechanics"]]
    assert topic_suggest([1.0, 0.0, 0.0], [], embedder=embedder) is None


def test_the_nearest_topic_is_usually_right():
    """On the 219 texts of the paraphrase set, the default embedder picks the right topic
    within the question's subject for at least three in four (measured: 179/219)."""
    embedder = embedders.offline_embedder()
    items = json.loads((DATA / "paraphrase_pairs.json").read_text(encoding="utf-8"))["items"]
    texts = [(item["subject"], TOPIC_NAMES[item["topic"]], item[key])
             for item in items for key in ("question", "paraphrase", "other")]
    vectors = embedder.embed([text for _, _, text in texts])
    right = sum(
        topic_suggest(vector, [t for t in TOPICS if t.subject == subject],
                      embedder=embedder).topic.name == topic
        for (subject, topic, _), vector in zip(texts, vectors, strict=True))
    assert right / len(texts) >= 0.75
    assert np.asarray(topic_vectors(embedder, TOPICS)).shape == (18, embedder.dimension)


# --- Type and time --------------------------------------------------------------------------


@pytest.mark.parametrize(("choices", "expected"), [
    ([("A", "True", True), ("B", "False", False)], "true_false"),
    ([("A", "false.", True), ("B", " TRUE ", False)], "true_false"),
    ([("A", "Yes", True), ("B", "No", False)], "multiple_choice"),
    ([("A", "2", False), ("B", "4", True), ("C", "6", False), ("D", "8", False)],
     "multiple_choice"),
    ([("A", "True", True), ("B", "False", False), ("C", "Cannot tell", False)],
     "multiple_choice"),
])
def test_choices_make_a_choice_question(choices, expected):
    assert question_type_infer(question(choices=choices)) == expected


@pytest.mark.parametrize("answer", [
    "42", "-3.5", "0.50 mol", "3.0 × 10⁸ m/s", "x = 5", "1/4", "25%", "−92 kJ mol⁻¹",
    "6.02e23", "9.8 m/s²",
])
def test_a_number_answer_makes_a_numeric_question(answer):
    assert question_type_infer(question(answer=answer)) == "numeric"


@pytest.mark.parametrize(("answer", "marks", "expected"), [
    ("Mitochondrion", 1, "short_answer"),
    ("Denitrification, by anaerobic bacteria in waterlogged soil.", 2, "short_answer"),
    ("Because 2 molecules of ATP are made", 2, "short_answer"),
    ("", 2, "short_answer"),
    ("", 6, "essay"),
    (" ".join(["The enzyme's active site changes shape as temperature rises."] * 8), 4,
     "essay"),
])
def test_written_answers_are_short_answers_or_essays(answer, marks, expected):
    assert question_type_infer(question(answer=answer, marks=marks)) == expected


def test_estimated_time_is_reading_plus_a_minute_a_mark():
    twenty_words = " ".join(["word"] * 20)
    assert estimated_time_seconds(question(twenty_words, marks=1)) == 65  # 6 s + 60 s
    assert estimated_time_seconds(question(twenty_words, marks=3)) == 185
    with_choices = question(twenty_words, choices=[("A", "one two", True),
                                                   ("B", "three four", False)])
    assert estimated_time_seconds(with_choices) == 65  # 24 words: 7.2 s + 60 s
    assert estimated_time_seconds(question("x", marks=500)) == 7200


# --- Together -------------------------------------------------------------------------------


def test_offline_metadata_batch():
    questions = [
        question("A 6 Ω resistor and a 3 Ω resistor are connected in parallel. What is their "
                 "combined resistance?", subject="Physics",
                 choices=[("A", "2 Ω", True), ("B", "9 Ω", False)]),
        question("True or false: a pyramid of biomass can be inverted.", subject="Biology",
                 choices=[("A", "True", True), ("B", "False", False)],
                 topics_available=("Ecology", "Genetics")),
        question("Solve for x: 3x + 7 = 22.", answer="x = 5", marks=2),
    ]
    topics = [
        TopicDescription("Physics", "Mechanics", "motion, forces, momentum and energy"),
        TopicDescription("Physics", "Electromagnetism", "electric circuits, current, "
                         "resistance and magnetic fields"),
        TopicDescription("Biology", "Cell Biology", "cells and their organelles"),
        TopicDescription("Biology", "Genetics", "genes, alleles and inheritance"),
        TopicDescription("Biology", "Ecology", "ecosystems, food chains and populations"),
        TopicDescription("Mathematics", "Algebra", "equations and expressions"),
        TopicDescription("Mathematics", "Calculus", "differentiation and integration"),
    ]
    results = offline_metadata_batch(
        questions, bank_texts=[q.text for q in questions] + BANK, topics=topics,
        embedder=embedders.offline_embedder())
    assert all(isinstance(result, QuestionMetadata) for result in results)
    assert [r.question_type for r in results] == ["multiple_choice", "true_false", "numeric"]
    assert [r.topics for r in results] == [["Electromagnetism"], ["Ecology"], ["Algebra"]]
    assert "resistor" in results[0].keywords and "biomass" in results[1].keywords
    assert all(r.difficulty is None and r.bloom_level is None for r in results)
    assert results[2].estimated_time_seconds == 120  # 8 words: 2.4 s + 2 marks
    assert results[2].keywords == []  # "solve" is an instruction, the rest numbers
    QuestionMetadata.model_validate(results[0].model_dump())


def test_offline_metadata_batch_takes_the_pipelines_vectors():
    embedder = embedders.hashing_embedder()
    one = question("What is the pH of a 0.01 mol dm⁻³ solution?", subject="Chemistry")
    topics = [TopicDescription("Chemistry", "Physical Chemistry"),
              TopicDescription("Chemistry", "Organic Chemistry")]
    forced = embedder.embed(["Chemistry: Organic Chemistry"])
    [result] = offline_metadata_batch([one], bank_texts=[one.text], topics=topics,
                                      embedder=embedder, vectors=forced)
    assert result.topics == ["Organic Chemistry"]
    assert offline.topic_suggest(forced[0], [], embedder=embedder) is None
