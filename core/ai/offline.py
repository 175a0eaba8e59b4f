"""Offline metadata: what can be measured about a question without a generator.

- keywords: TF-IDF over the question bank (`KeywordIndex`, `keywords_tfidf`);
- a suggested topic: the topic whose "Subject: name — description" is nearest to the
  question's embedding (`topic_suggest`);
- the question type from its structure (`question_type_infer`);
- an estimated time from its length and marks (`estimated_time_seconds`), a stated rule
  rather than a prediction: reading at 200 words a minute plus a minute per mark.

Difficulty and Bloom level are left empty: nothing here can measure them (difficulty is
measured from answers by analytics). Nothing here touches the database: the pipeline passes
the bank's texts, the topics and the vectors.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.ai.embedders import formula_normalise
from core.ai.types import Embedder, QuestionInput, QuestionMetadata

# --- Keywords -------------------------------------------------------------------------------

# English function words, the words exam questions use to ask ("calculate", "following") and
# number words: never keywords, and they break a two-word term.
STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
    "but", "by", "can", "cannot", "could", "did", "do", "does", "doing", "down", "during", "each",
    "either", "else", "every", "few", "for", "from", "further", "had", "has", "have", "having",
    "he", "her", "here", "hers", "him", "his", "how", "however", "i", "if", "in", "into", "is",
    "it", "its", "itself", "just", "least", "less", "let", "like", "many", "may", "me", "might",
    "more", "most", "much", "must", "my", "neither", "no", "nor", "not", "now", "of", "off", "on",
    "once", "one", "only", "or", "other", "our", "out", "over", "own", "per", "same", "shall",
    "she", "should", "since", "so", "some", "such", "than", "that", "the", "their", "them",
    "then", "there", "these", "they", "this", "those", "through", "thus", "to", "too", "under",
    "until", "up", "upon", "us", "very", "was", "we", "were", "what", "when", "where", "whether",
    "which", "while", "who", "whom", "whose", "why", "will", "with", "within", "without", "would",
    "yet", "you", "your",
    "answer", "answers", "calculate", "choose", "complete", "consider", "correct", "define",
    "describe", "determine", "discuss", "draw", "estimate", "evaluate", "explain", "false",
    "find", "following", "give", "given", "giving", "identify", "justify", "name", "outline",
    "show", "shown", "simplify", "sketch", "solve", "state", "statement", "statements",
    "suggest", "true", "use", "used", "using", "value", "values", "work", "write",
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "twenty", "hundred", "thousand",
])
_TERM_TOKEN = re.compile(r"[a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*|[^\sa-z]+")


def keyword_terms(text: str) -> list[str]:
    """Candidate keywords of a text in order: words of three letters or more that are not
    stopwords, and two-word terms of adjacent such words ("kinetic energy", "hash table")."""
    text = unicodedata.normalize("NFKC", text).lower().replace("–", "-")
    terms: list[str] = []
    previous: str | None = None
    for match in _TERM_TOKEN.finditer(text):
        token = match.group()
        if not token[0].isalpha() or token in STOPWORDS or len(token) < 3:
            previous = None  # punctuation, numbers and stopwords break a term
            continue
        terms.append(token)
        if previous:
            terms.append(f"{previous} {token}")
        previous = token
    return terms


class KeywordIndex:
    """Document frequencies of the bank's terms, built once from the bank's texts; then the
    top TF-IDF terms of any question: (1 + ln tf) · (ln((1 + N) / (1 + df)) + 1).

    A two-word term is a candidate only when at least two questions of the bank use it: that
    keeps collocations ("hash table", "kinetic energy") and drops accidents of word order
    ("chain fix")."""

    def __init__(self, bank_texts: Sequence[str]):
        self.documents = len(bank_texts)
        self.frequency: Counter[str] = Counter()
        for text in bank_texts:
            self.frequency.update(set(keyword_terms(text)))

    def scores(self, text: str) -> dict[str, float]:
        counts = Counter(keyword_terms(text))
        return {term: (1 + math.log(count))
                * (math.log((1 + self.documents) / (1 + self.frequency[term])) + 1)
                for term, count in counts.items()
                if " " not in term or self.frequency[term] >= 2}

    def keywords(self, text: str, top_k: int = 8) -> list[str]:
        """The `top_k` best-scoring terms, best first (a two-word term before its words at
        equal score, then alphabetically, so the result is stable); a word already inside a
        chosen two-word term is not repeated."""
        chosen: list[str] = []
        covered: set[str] = set()
        ranked = sorted(self.scores(text).items(),
                        key=lambda item: (-round(item[1], 9), -item[0].count(" "), item[0]))
        for term, _ in ranked:
            if len(chosen) == top_k:
                break
            if term in covered:
                continue
            chosen.append(term)
            covered.update(term.split())
        return chosen


def keywords_tfidf(texts: Sequence[str], *, bank_texts: Sequence[str] | None = None,
                   top_k: int = 8) -> list[list[str]]:
    """Top TF-IDF keywords of each text, with document frequencies over `bank_texts` (the
    whole question bank; by default the texts themselves)."""
    index = KeywordIndex(texts if bank_texts is None else bank_texts)
    return [index.keywords(text, top_k) for text in texts]


# --- Topics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicDescription:
    subject: str  # the subject's name, e.g. "Physics"
    name: str  # the topic's name, e.g. "Optics"
    description: str = ""

    @property
    def label(self) -> str:
        """What is embedded: "Physics: Optics — light, lenses, …"."""
        label = f"{self.subject}: {self.name}"
        return f"{label} — {self.description}" if self.description.strip() else label


@dataclass(frozen=True)
class TopicSuggestion:
    topic: TopicDescription
    similarity: float


_topic_cache: dict[tuple[str, int, tuple[str, ...]], np.ndarray] = {}
_topic_cache_lock = threading.Lock()


def topic_vectors(embedder: Embedder, topics: Sequence[TopicDescription]) -> np.ndarray:
    """The embeddings of the topics' labels, computed once per embedder and set of labels
    (a process embeds the catalogue's topics once, not once per question)."""
    labels = tuple(topic.label for topic in topics)
    key = (embedder.name, embedder.dimension, labels)
    with _topic_cache_lock:
        cached = _topic_cache.get(key)
    if cached is None:
        cached = np.asarray(embedder.embed(list(labels)), dtype=np.float32).reshape(
            len(labels), embedder.dimension)
        with _topic_cache_lock:
            if len(_topic_cache) > 64:  # topics edited many times in one process
                _topic_cache.clear()
            _topic_cache[key] = cached
    return cached


def topic_suggest(question_vector: Sequence[float], topics: Sequence[TopicDescription], *,
                  embedder: Embedder) -> TopicSuggestion | None:
    """The topic nearest to the question (cosine of L2-normalised vectors from the same
    embedder), or None when there are no topics. Pass the question's own subject's topics
    to suggest within it."""
    if not topics:
        return None
    vector = np.asarray(question_vector, dtype=np.float32)
    similarities = topic_vectors(embedder, topics) @ vector
    best = int(np.argmax(similarities))
    return TopicSuggestion(topics[best], round(float(similarities[best]), 4))


# --- Type and time --------------------------------------------------------------------------

_NUMERIC_ANSWER = re.compile(r"""
    (?:[A-Za-z]\w*\s*=\s*)?                         # "x = ", "v = "
    [-+]?\s*\d+(?:\.\d+)?(?:e[-+]?\d+)?             # 42, -3.5, 3.0e8 (after normalising)
    (?:\s*/\s*\d+(?:\.\d+)?)?                       # 1/4
    \s*(?:%|[A-Za-z°µΩ][\w°µΩ/^.\- ]{0,20})?        # a unit: %, mol, m/s^2, kJ mol^-1
""", re.VERBOSE)
# Past this many words, or this many marks, a written answer is an essay, not a short answer:
# exam boards' "extended response" items are typically worth 6 marks or more and answered in
# a paragraph or more.
ESSAY_WORDS = 60
ESSAY_MARKS = 6


def _plain(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().strip(" .").split())


def question_type_infer(question: QuestionInput) -> str:
    """A `Question.Type` value from the question's structure: two choices reading True and
    False → true_false; other choices → multiple_choice; a model answer that is a number
    (with an optional unit, "x =", fraction or percentage) → numeric; a long answer or many
    marks → essay; else short_answer."""
    if question.choices:
        texts = {_plain(choice.text) for choice in question.choices}
        if len(question.choices) == 2 and texts == {"true", "false"}:
            return "true_false"
        return "multiple_choice"
    answer = question.answer.strip()
    if answer and _NUMERIC_ANSWER.fullmatch(formula_normalise(answer).strip()):
        return "numeric"
    if len(answer.split()) > ESSAY_WORDS or question.marks >= ESSAY_MARKS:
        return "essay"
    return "short_answer"


READING_WORDS_PER_MINUTE = 200
SECONDS_PER_MARK = 60


def estimated_time_seconds(question: QuestionInput) -> int:
    """Time to read the question and its choices at 200 words a minute (a careful reading
    pace), plus a minute per mark: the pacing exam papers are set to (a GCSE mathematics paper
    gives 90 minutes for 80 marks, an A-level physics paper 120 for 85). A rule, not a
    prediction; rounded to 5 s, within the metadata's bounds (5 s to 2 h)."""
    words = len(question.text.split()) + sum(len(c.text.split()) for c in question.choices)
    seconds = words * 60 / READING_WORDS_PER_MINUTE + SECONDS_PER_MARK * max(question.marks, 1)
    return int(min(7200, max(5, 5 * round(seconds / 5))))


# --- Together -------------------------------------------------------------------------------


def offline_metadata(question: QuestionInput, *, keywords: Sequence[str],
                     topic: TopicSuggestion | None) -> QuestionMetadata:
    return QuestionMetadata(
        topics=[topic.topic.name] if topic else [],
        keywords=list(keywords)[:20],
        question_type=question_type_infer(question),
        estimated_time_seconds=estimated_time_seconds(question),
    )


def offline_metadata_batch(questions: Sequence[QuestionInput], *, bank_texts: Sequence[str],
                           topics: Sequence[TopicDescription], embedder: Embedder,
                           vectors: Sequence[Sequence[float]] | None = None,
                           top_k: int = 8) -> list[QuestionMetadata]:
    """Metadata for a batch: keywords against the whole bank, the nearest topic among the
    question's subject's topics (all topics when its subject has none listed), type and time.
    `vectors` are the questions' embeddings by `embedder` when the pipeline has them already;
    otherwise their texts are embedded here."""
    index = KeywordIndex(bank_texts)
    if vectors is None:
        vectors = embedder.embed([question.text for question in questions])
    results = []
    for question, vector in zip(questions, vectors, strict=True):
        candidates = [topic for topic in topics if topic.subject == question.subject
                      and (not question.topics_available
                           or topic.name in question.topics_available)] or list(topics)
        results.append(offline_metadata(
            question, keywords=index.keywords(question.text, top_k),
            topic=topic_suggest(vector, candidates, embedder=embedder)))
    return results
