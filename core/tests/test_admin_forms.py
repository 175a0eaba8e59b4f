"""The change forms of the domain models run a constant number of queries, however many rows
their <select>s offer: an option's label must not query (Topic's names its subject)."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from core.models import (
    Achievement,
    ExamPaper,
    PracticeSession,
    SeedRecord,
    Subject,
    Topic,
)
from core.services import api_token_issue, attempt_record, student_create
from core.tests.factories import make_question

pytestmark = pytest.mark.django_db

# Every admin page of a domain model (core's domain and the notifications app's preferences);
# the job records' pages belong to the job plumbing and are tested with it, the email ledger's
# (records of what was sent) with the notifications app.
DOMAIN_MODELS = sorted(
    (model for model in admin.site._registry
     if model.__module__ == "core.models.domain"
     or model._meta.label == "notifications.NotificationPreference"),
    key=lambda model: model._meta.label,
)
MAX_QUERIES = 12


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(
        email="root@example.com", password="pw"))
    return client


def world_with_topics(count: int) -> None:
    """One of everything, and `count` topics in one subject (children of the first topic),
    topped up when called again with a larger count."""
    subject, created = Subject.objects.get_or_create(code="MATH", defaults={"name": "Maths"})
    if created:
        root = Topic.objects.create(subject=subject, name="Algebra", slug="algebra")
        paper = ExamPaper.objects.create(subject=subject, exam_body="Board", year=2020,
                                         sitting="June")
        question = make_question(topic=root, paper=paper, year=2020)
        student = student_create(email="student@example.com").user
        session = PracticeSession.objects.create(student=student, subject=subject)
        attempt_record(student=student, question=question, choice=question.choices.first(),
                       time_taken_ms=1000, session=session)
        api_token_issue(user=student, name="phone")
        Achievement.objects.create(code="first", title="First", description="d",
                                   kind=Achievement.Kind.QUESTIONS, threshold=1)
        SeedRecord.objects.create(part=SeedRecord.Part.USERS, parameters={"users": 0})
    root = Topic.objects.get(slug="algebra")
    Topic.objects.bulk_create(
        Topic(subject=subject, parent=root, name=f"Topic {number}", slug=f"topic-{number}")
        for number in range(Topic.objects.count(), count)
    )
    assert Topic.objects.count() == count


def form_urls(model, request_user) -> list[str]:
    """The change form of its last row (a topic with a parent; the subject, whose page lists
    every topic), and its add form when adding is allowed."""
    opts, model_admin = model._meta, admin.site._registry[model]
    obj = model._default_manager.order_by("-pk").first()
    if model is get_user_model():
        obj = model.objects.get(email="student@example.com")
    urls = [reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])]
    request = type("Request", (), {"user": request_user})()
    if model_admin.has_add_permission(request):
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    return urls


@pytest.mark.parametrize("model", DOMAIN_MODELS, ids=lambda model: model._meta.label)
def test_forms_run_the_same_few_queries_with_5_or_50_topics(
        model, staff_client, django_assert_max_num_queries):
    queries = {}
    world_with_topics(5)
    urls = form_urls(model, get_user_model().objects.get(email="root@example.com"))
    for topic_count in (5, 50):
        world_with_topics(topic_count)
        for url in urls:
            staff_client.get(url)  # warms what Django caches per process (content types)
            with django_assert_max_num_queries(MAX_QUERIES) as captured:
                response = staff_client.get(url)
            assert response.status_code == 200
            queries[(topic_count, url)] = len(captured)
    for (topic_count, url), count in queries.items():
        if topic_count == 5:
            assert queries[(50, url)] == count, f"{url}: {count} queries with 5 topics, " \
                f"{queries[(50, url)]} with 50"


def test_the_domain_models_are_all_covered():
    labels = {model._meta.label for model in DOMAIN_MODELS}
    assert {"core.Question", "core.Topic", "core.Subject", "core.User",
            "notifications.NotificationPreference"} <= labels
