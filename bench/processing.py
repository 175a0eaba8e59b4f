"""The AI pipeline's cost over the bare work it wraps, offline, at 10,000 questions, with the
index in a `chroma run` server (as `make run` and production run it).

    .venv/bin/python bench/processing.py                  # SQLite (a scratch file)
    .venv/bin/python bench/processing.py --postgres       # PostgreSQL (scratch database)
    .venv/bin/python bench/processing.py --questions 2000

1. The embedding step end to end (claim the batch, read the questions and their choices, embed
   them with the offline sentence model, upsert the vectors into Chroma in one call per batch,
   write the statuses in bulk) beside the bare cost: embedding the same texts and upserting
   the same number of vectors directly. Target: the pipeline's overhead under 25 %.
2. Similar-question lookups (`question_similar`, what the app calls) at that size, p50 and
   p99, beside a bare Chroma query for the same vectors.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from bench.queue import scratch_database  # noqa: E402

SUBJECTS = {
    "MATH": ["Solve {a}x + {b} = {c} for x.", "Find the area of a circle of radius {a} cm.",
             "Differentiate {a}x^{b} + {c}x with respect to x.",
             "What is the mean of {a}, {b} and {c}?",
             "A triangle has sides {a} cm, {b} cm and {c} cm. Is it right-angled?"],
    "PHYS": ["A car accelerates from rest at {a} m/s² for {b} s. How far does it travel?",
             "A {a} kg mass moves at {b} m/s. What is its kinetic energy?",
             "A resistor of {a} Ω carries {b} A. What is the potential difference across it?",
             "Light passes from air into glass of refractive index 1.{a}. Find the angle of "
             "refraction for an incidence of {b}°."],
    "CHEM": ["How many moles are in {a} g of water?",
             "What is the pH of a {a} × 10^-{b} mol/dm³ solution of hydrochloric acid?",
             "Balance the equation for the combustion of C{a}H{b}."],
    "BIO": ["A population of {a} rabbits grows by {b}% a year. How many after {c} years?",
            "In a cross between two heterozygotes, what fraction of {a} offspring are "
            "homozygous recessive?"],
    "CS": ["What is the binary representation of {a}?",
           "How many comparisons does binary search need at most for {a} items?",
           "A hash table has {a} slots and {b} keys. What is its load factor?"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=300)
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="pastq-bench-")
    url = scratch_database(args.postgres, var)
    env = {**os.environ, "DATABASE_URL": url, "PASTQ_VAR_DIR": var, "DEBUG": "on",
           "LOG_LEVEL": "WARNING", "CHROMA_URL": "", "GEMINI_API_KEY": ""}
    os.environ.update(env)
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "init_db", "--no-input", "-v0"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "chroma_server"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        run(args, var)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def run(args, var):
    record = Path(var) / "chroma-server.json"
    deadline = time.monotonic() + 60
    while not record.exists():
        if time.monotonic() > deadline:
            raise SystemExit("chroma_server did not start")
        time.sleep(0.1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pastq.settings")
    import django

    django.setup()
    from core import processing
    from core.ai import providers, vectors
    from core.models import Choice, Question, QuestionStep, Subject

    rng = random.Random(7)
    subjects = {s.code: s for s in Subject.objects.all()}
    questions = []
    for n in range(args.questions):
        code = rng.choice(list(SUBJECTS))
        template = rng.choice(SUBJECTS[code])
        text = template.format(a=rng.randint(2, 99), b=rng.randint(2, 99), c=rng.randint(2, 99))
        questions.append(Question(subject=subjects[code], question_type="multiple_choice",
                                  text=f"{text} (#{n})", content_hash=f"bench-{n:08d}"))
    Question.objects.bulk_create(questions, batch_size=2000)
    Choice.objects.bulk_create(
        [Choice(question=q, label=label, text=f"{rng.randint(1, 500)}", is_correct=label == "B")
         for q in questions for label in "ABCD"], batch_size=5000)
    processing.steps_create_missing()
    embedder = providers.embedder()
    embedder.embed(["warm up the model"])

    # 1. Bare: the same texts embedded, the same number of vectors upserted, nothing else.
    inputs = [processing.question_input(q) for q in Question.objects.prefetch_related(
        "choices").select_related("subject", "topic")]
    texts = [processing.embedding_text(i) for i in inputs]
    started = time.perf_counter()
    bare_vectors = []
    for start in range(0, len(texts), embedder.max_batch):
        bare_vectors += embedder.embed(texts[start:start + embedder.max_batch])
    bare_embed = time.perf_counter() - started

    class BareSpace:
        name, dimension = "bench-bare", embedder.dimension

    started = time.perf_counter()
    with vectors.vector_index_open() as index:
        index.collection(BareSpace).upsert([i.id for i in inputs], bare_vectors)
    bare_upsert = time.perf_counter() - started
    bare = bare_embed + bare_upsert

    # 2. The pipeline: the embedding step for every question, in its batches.
    started = time.perf_counter()
    summary = processing.pending_process(steps=["embedding"], batch_size=500)
    pipeline = time.perf_counter() - started
    done = QuestionStep.objects.filter(step="embedding", status="done").count()

    # 3. Lookups: the service the app calls, and a bare query with the same vectors.
    sample = rng.sample(questions, min(args.lookups, len(questions)))
    service_ms, bare_ms = [], []
    with vectors.vector_index_open() as index:
        collection = index.collection(embedder)
        stored = collection.vectors([q.pk for q in sample])
        for question in sample:
            started = time.perf_counter()
            collection.query(stored[str(question.pk)], k=6)
            bare_ms.append((time.perf_counter() - started) * 1000)
    for question in sample:
        started = time.perf_counter()
        processing.question_similar(question=question, k=5)
        service_ms.append((time.perf_counter() - started) * 1000)

    def pct(values, p):
        return statistics.quantiles(values, n=100)[p - 1]

    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{database}, index in a chroma run server, {args.questions:,} questions, embedder "
          f"{embedder.name} "
          f"({embedder.dimension} dims), {summary.batches} batches of 500")
    print(f"{'measure':<48}{'pipeline':>10}{'bare':>10}{'ratio':>8}{'limit':>8}")
    print(f"{'embedding step end to end (s)':<48}{pipeline:>10.1f}{bare:>10.1f}"
          f"{pipeline / bare:>8.3f}{1.25:>8}")
    print(f"{'  of which bare embedding / bare upsert (s)':<48}{'':>10}"
          f"{bare_embed:>5.1f}/{bare_upsert:.1f}")
    print(f"{'  questions embedded':<48}{done:>10,}")
    print(f"{'similar lookup p50 (ms)':<48}{pct(service_ms, 50):>10.1f}{pct(bare_ms, 50):>10.1f}"
          f"{pct(service_ms, 50) / pct(bare_ms, 50):>8.2f}")
    print(f"{'similar lookup p99 (ms)':<48}{pct(service_ms, 99):>10.1f}{pct(bare_ms, 99):>10.1f}"
          f"{pct(service_ms, 99) / pct(bare_ms, 99):>8.2f}")


if __name__ == "__main__":
    main()
