import json

from django.core.management.base import BaseCommand, CommandError

from core import processing
from core.ai.types import ProviderUnavailable
from core.models import Question, Subject


class Command(BaseCommand):
    help = (
        "The questions nearest a question (--question ID) or a text (--text), by cosine "
        "similarity of their embeddings, most similar first, the question itself excluded. "
        "Uses the same embedder as the pipeline (offline: the sentence model shipped in a "
        "package). --json prints a list of {\"id\", \"similarity\", \"subject\", \"topic\", "
        "\"text\"} for scripts."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--question", type=int, metavar="ID")
        target.add_argument("--text")
        parser.add_argument("-k", type=int, default=5, help="how many (default 5)")
        parser.add_argument("--subject", metavar="CODE", help="only questions of this subject")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, question=None, text=None, k=5, subject=None, as_json=False,
               **options):
        if k < 1:
            raise CommandError("-k must be at least 1.", returncode=2)
        if text is not None and not text.strip():
            raise CommandError("--text is empty.", returncode=2)
        if subject is not None:
            subject = subject.strip().upper()
            if not Subject.objects.filter(code=subject).exists():
                raise CommandError(f"There is no subject {subject!r}.", returncode=2)
        target = None
        if question is not None:
            target = Question.objects.select_related("subject").filter(pk=question).first()
            if target is None:
                raise CommandError(f"There is no question {question}.", returncode=2)
        try:
            hits = processing.question_similar(question=target, text=text or "", k=k,
                                               subject=subject)
        except ProviderUnavailable as exc:
            raise CommandError(f"The index or the embedder is unavailable: {exc}") from None
        rows = [{"id": hit.question.pk, "similarity": round(hit.similarity, 4),
                 "subject": hit.question.subject.code,
                 "topic": hit.question.topic.slug if hit.question.topic_id else None,
                 "text": hit.question.text} for hit in hits]
        if as_json:
            self.stdout.write(json.dumps(rows, ensure_ascii=False))
            return
        if not rows:
            self.stdout.write("No similar questions (is the bank processed? "
                              "manage.py process_questions --status).")
        for row in rows:
            text_line = " ".join(row["text"].split())
            self.stdout.write(f"{row['similarity']:.3f}  #{row['id']} {row['subject']}"
                              f"{'/' + row['topic'] if row['topic'] else ''}  "
                              f"{text_line[:100]}{'…' if len(text_line) > 100 else ''}")
