"""Offline embedders on paraphrase pairs of exam questions: which separates paraphrases from
same-topic questions that ask something else, and how fast. Results in docs/embeddings.md.

    .venv/bin/python bench/embedders.py [--throughput-texts 1000]

The set is core/tests/data/paraphrase_pairs.json: per item a question, its paraphrase and a
same-topic question that asks something else. Positives: each (question, paraphrase). Negatives:
every pairing of two different questions of the same topic (an item's own "other", and every
question of the topic's other items). Per embedder:

- mean cosine of the positives and of the negatives;
- margin: lowest positive − highest negative (> 0: one threshold separates them all);
- beats-all: the fraction of pairs whose cosine beats every negative that involves either of
  their two questions (the acceptance test of core/tests/test_embedders.py needs 100%);
- ROC AUC of positives against negatives;
- threshold: the middle of the gap when the margin is positive, else the cut with the best
  balanced accuracy (mean of the true-positive and true-negative rates), with that accuracy;
- throughput: texts per second embedding a batch of distinct texts (after a warm-up, best of
  --repeats runs, since other work on the machine slows single runs), and the model's load
  time and the process's resident memory after loading it.

Then the nearest-topic suggestion of core/ai/offline.py on the same texts: how often the
topic nearest to a text, among its subject's topics, is its own; with the catalogue's topic
names alone, and with the one-line descriptions below (a proposal for the catalogue).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from itertools import combinations  # noqa: E402

import numpy as np  # noqa: E402

PAIRS = ROOT / "core" / "tests" / "data" / "paraphrase_pairs.json"

# Proposed one-line topic descriptions (syllabus words, written for this measurement; the
# catalogue's topics have none yet).
TOPIC_DESCRIPTIONS = {
    "algebra": "equations, inequalities, expressions, factorising, simultaneous equations, "
               "quadratics, logarithms",
    "calculus": "differentiation, integration, gradients, limits, stationary points, rates "
                "of change",
    "geometry": "shapes, angles, triangles, circles, areas, volumes, coordinates",
    "statistics": "data, averages, spread, probability, distributions, sampling",
    "mechanics": "motion, forces, acceleration, momentum, energy, work and power",
    "thermodynamics": "heat, temperature, specific heat capacity, latent heat, gases, "
                      "engines, efficiency",
    "electromagnetism": "electric circuits, current, voltage, resistance, electrical power, "
                        "magnetic fields, induction",
    "optics": "light, reflection, refraction, lenses, diffraction, wavelength",
    "programming-fundamentals": "variables, expressions, control flow, loops, functions, "
                                "data types, program output",
    "data-structures": "arrays, linked lists, stacks, queues, trees, hash tables, graphs",
    "algorithms": "searching, sorting, time complexity, recursion, graph algorithms",
    "database-systems": "relational databases, SQL queries, joins, keys, normalisation, "
                        "transactions",
    "general-chemistry": "atoms, electron configuration, moles, formulae, equations, "
                         "titrations, the periodic table",
    "organic-chemistry": "carbon compounds, functional groups, homologous series, isomers, "
                         "reaction types, naming",
    "physical-chemistry": "energetics, enthalpy, rates of reaction, equilibrium, acids, bases "
                          "and pH",
    "cell-biology": "cell structure, organelles, membranes, cell division, microscopy",
    "genetics": "DNA, genes, alleles, inheritance, genetic crosses, mutations",
    "ecology": "ecosystems, food chains, energy transfer, populations, nutrient cycles",
}


def resident_megabytes() -> dict[str, float]:
    """Resident memory of this process: in all, private (RssAnon) and file pages (RssFile:
    the memory-mapped weights, shared with every process that maps them)."""
    status = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            status[name] = int(value.split()[0]) / 1024
    if not status:
        status["VmRSS"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return status


def memory_text(status: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f} MB" for name, value in status.items())


def load_items() -> list[dict]:
    return json.loads(PAIRS.read_text(encoding="utf-8"))["items"]


def pairings(items: list[dict]):
    """(texts, positive index pairs, negative index pairs): texts are 3 per item in order
    question, paraphrase, other."""
    texts = [text for item in items for text in (item["question"], item["paraphrase"],
                                                 item["other"])]
    positives = [(3 * i, 3 * i + 1) for i in range(len(items))]
    by_topic: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_topic.setdefault(f"{item['subject']}/{item['topic']}", []).extend(
            [3 * i, 3 * i + 1, 3 * i + 2])
    same_question = set(positives)
    negatives = [pair for indices in by_topic.values() for pair in combinations(indices, 2)
                 if pair not in same_question]
    return texts, positives, negatives


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    greater = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positive) * len(negative)))


def best_threshold(positive: np.ndarray, negative: np.ndarray) -> tuple[float, float]:
    """The threshold that separates positives (≥) from negatives (<) best, with its balanced
    accuracy: the middle of the gap when there is one."""
    if positive.min() > negative.max():
        return float((positive.min() + negative.max()) / 2), 1.0
    scores = np.unique(np.concatenate([positive, negative]))
    cuts = (scores[:-1] + scores[1:]) / 2
    accuracy = [((positive >= cut).mean() + (negative < cut).mean()) / 2 for cut in cuts]
    best = int(np.argmax(accuracy))
    return float(cuts[best]), float(accuracy[best])


def evaluate(vectors: np.ndarray, positives, negatives) -> dict:
    similarity = vectors @ vectors.T
    positive = np.array([similarity[a, b] for a, b in positives])
    negative = np.array([similarity[a, b] for a, b in negatives])
    hardest: dict[int, float] = {}
    for a, b in negatives:
        for index in (a, b):
            hardest[index] = max(hardest.get(index, -1.0), similarity[a, b])
    beats = [similarity[a, b] > max(hardest.get(a, -1.0), hardest.get(b, -1.0))
             for a, b in positives]
    threshold, accuracy = best_threshold(positive, negative)
    return {
        "positive": float(positive.mean()), "negative": float(negative.mean()),
        "margin": float(positive.min() - negative.max()), "beats": float(np.mean(beats)),
        "auc": roc_auc(positive, negative), "threshold": threshold, "accuracy": accuracy,
        "failing": [i for i, ok in enumerate(beats) if not ok],
    }


def throughput(embedder, texts: list[str], count: int, repeats: int) -> float:
    batch = [f"{texts[i % len(texts)]} (Question {i + 1}.)" for i in range(count)]
    embedder.embed(batch[:50])  # warm-up: first touch of the weights' pages, caches
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        embedder.embed(batch)
        best = min(best, time.perf_counter() - started)
    return count / best


def topic_accuracy(embedder, items: list[dict], texts: list[str]) -> tuple[int, int]:
    """How many texts have their own topic nearest, among their subject's topics: with
    names alone, and with TOPIC_DESCRIPTIONS."""
    from core.ai.offline import TopicDescription, topic_suggest
    from core.catalogue import SUBJECTS

    vectors = embedder.embed(texts)
    results = []
    for described in (False, True):
        topics = {subject["name"]: [(slug, TopicDescription(
            subject["name"], name, TOPIC_DESCRIPTIONS[slug] if described else ""))
            for slug, name in subject["topics"]] for subject in SUBJECTS}
        right = 0
        for index, vector in enumerate(vectors):
            item = items[index // 3]
            candidates = topics[item["subject"]]
            suggestion = topic_suggest(vector, [topic for _, topic in candidates],
                                       embedder=embedder)
            right += {t: s for s, t in candidates}[suggestion.topic] == item["topic"]
        results.append(right)
    return results[0], results[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throughput-texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--show-failures", action="store_true",
                        help="print the pairs each embedder does not separate")
    args = parser.parse_args()
    # core.ai.offline reads the provider types, which need Django set up (a scratch var dir:
    # nothing here touches the database).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pastq.settings")
    os.environ.setdefault("DEBUG", "on")
    os.environ.setdefault("PASTQ_VAR_DIR", tempfile.mkdtemp(prefix="pastq-bench-"))
    import django

    django.setup()
    from core.ai import embedders

    rss_before = resident_megabytes()
    started = time.perf_counter()
    model = embedders.SentenceModelEmbedder.load()
    load_seconds = time.perf_counter() - started
    rss_after = resident_megabytes()
    hashing = embedders.HashingEmbedder()
    candidates = [
        ("MiniLM (plain)", model),
        ("hashing-512", hashing),
        *[(f"MiniLM + formulas w={w}", embedders.FormulaAwareEmbedder(model, formula_weight=w))
          for w in (0.2, 0.3, 0.5)],
        *[(f"hashing + formulas w={w}", embedders.FormulaAwareEmbedder(hashing,
                                                                      formula_weight=w))
          for w in (0.3, 0.5)],
    ]
    default = embedders.offline_embedder()
    recorded = {"MiniLM (plain)": embedders.SENTENCE_MODEL_THRESHOLD,
                "hashing-512": embedders.HASHING_THRESHOLD,
                f"MiniLM + formulas w={embedders.FORMULA_WEIGHT}":
                    embedders.FORMULA_AWARE_THRESHOLD}

    items = load_items()
    texts, positives, negatives = pairings(items)
    print(f"{len(items)} items, {len(texts)} texts: {len(positives)} paraphrase pairs, "
          f"{len(negatives)} same-topic pairs of different questions")
    print(f"MiniLM load {load_seconds:.2f} s (digests checked); resident memory before: "
          f"{memory_text(rss_before)}; after: {memory_text(rss_after)}")
    print(f"default offline embedder: {default.name}\n")
    header = ("embedder", "para cos", "other cos", "margin >0", "beats-all =100%", "AUC =1",
              "threshold", "bal.acc", "recorded", "texts/s")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    failures = {}
    for label, embedder in candidates:
        vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
        result = evaluate(vectors, positives, negatives)
        failures[label] = result["failing"]
        speed = throughput(embedder, texts, args.throughput_texts, args.repeats)
        print(f"| {label} | {result['positive']:.3f} | {result['negative']:.3f} | "
              f"{result['margin']:+.3f} | {result['beats']:.1%} | {result['auc']:.4f} | "
              f"{result['threshold']:.3f} | {result['accuracy']:.3f} | "
              f"{recorded.get(label, '')} | {speed:,.0f} |")
    print(f"\nresident memory after all runs: {memory_text(resident_megabytes())}, peak "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("\nNearest topic within the subject (core/ai/offline.py topic_suggest):")
    for label, embedder in (candidates[0], candidates[1], ("default offline", default)):
        names, described = topic_accuracy(embedder, items, texts)
        print(f"  {label}: {names}/{len(texts)} right with topic names, {described}/"
              f"{len(texts)} with names and descriptions")
    if args.show_failures:
        for label, failing in failures.items():
            for i in failing:
                print(f"\n{label}: item {i} ({items[i]['topic']}): {items[i]['question']!r}")


if __name__ == "__main__":
    main()
