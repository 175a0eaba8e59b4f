"""Every admin changelist and change form loads for a superuser, on a populated database."""

import pytest
from django.contrib import admin
from django.urls import reverse

from core.services import api_token_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def populated(catalogue, run_command):
    code, _, err = run_command("seed_data", "--users", "2", "--days", "3", "--end-date",
                               "2024-03-10", "--force")
    assert code == 0, err
    from core.models import User
    api_token_issue(user=User.objects.filter(is_demo=True).first(), name="phone")


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser(email="root@example.com", password="pw")
    client.force_login(user)
    return client


MODELS = sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_changelist_and_change_form_load(populated, staff_client, model):
    opts = model._meta
    response = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert response.status_code == 200
    obj = model._default_manager.order_by("pk").first()
    if obj is not None:
        response = staff_client.get(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        assert response.status_code == 200
    if admin.site._registry[model].has_add_permission(_request_for(staff_client)):
        response = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        assert response.status_code == 200


def _request_for(client):
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(email="root@example.com")
    return request


def test_admin_index_loads(staff_client):
    assert staff_client.get(reverse("admin:index")).status_code == 200


def test_changelists_do_not_query_per_row(populated, staff_client, django_assert_max_num_queries):
    for name in ["core_attempt", "core_question", "core_user", "core_practicesession"]:
        with django_assert_max_num_queries(15):
            assert staff_client.get(reverse(f"admin:{name}_changelist")).status_code == 200


def test_issuing_a_token_shows_the_secret_once(populated, staff_client):
    from core.models import ApiToken, User

    student = User.objects.filter(is_demo=True).first()
    response = staff_client.post(reverse("admin:core_apitoken_add"),
                                 {"user": student.pk, "name": "laptop", "expires_at_0": "",
                                  "expires_at_1": ""}, follow=True)
    assert response.status_code == 200
    text = response.content.decode()
    assert "it is not shown again" in text
    token = ApiToken.objects.get(name="laptop")
    assert token.prefix in text
    assert token.digest not in text


def test_choice_formset_requires_exactly_one_correct(populated, staff_client):
    from core.models import Question

    question = Question.objects.filter(question_type="multiple_choice").first()
    choices = list(question.choices.order_by("label"))
    data = {
        "subject": question.subject_id, "topic": question.topic_id or "",
        "paper": question.paper_id or "", "year": question.year or "",
        "question_type": question.question_type, "text": question.text, "marks": question.marks,
        "difficulty": question.difficulty, "priority": 0, "status": "active",
        "answer": "", "explanation": question.explanation,
        "choices-TOTAL_FORMS": len(choices), "choices-INITIAL_FORMS": len(choices),
        "choices-MIN_NUM_FORMS": 0, "choices-MAX_NUM_FORMS": 1000,
    }
    for i, choice in enumerate(choices):
        data |= {f"choices-{i}-id": choice.pk, f"choices-{i}-question": question.pk,
                 f"choices-{i}-label": choice.label, f"choices-{i}-text": choice.text,
                 f"choices-{i}-is_correct": "on"}  # every choice marked correct
    response = staff_client.post(
        reverse("admin:core_question_change", args=[question.pk]), data)
    assert response.status_code == 200
    assert "Exactly one choice must be correct" in response.content.decode()
    assert question.choices.filter(is_correct=True).count() == 1
