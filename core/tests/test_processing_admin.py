"""The admin's side of the AI pipeline: step columns and filters on questions (a constant
number of queries), the actions, the similar-pairs review."""

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from core import processing
from core.models import Question, QuestionStep, SimilarQuestion
from core.tests.factories import make_question
from core.tests.test_processing import PARAPHRASES

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/core/question/"


@pytest.fixture
def processed(catalogue, index):
    made = [make_question(text=text, question_type="numeric", answer="3")
            for pair in PARAPHRASES for text in pair]
    processing.pending_process()
    return made


def test_the_question_list_shows_each_steps_status_in_constant_queries(
        admin_client, catalogue, index, django_assert_max_num_queries):
    def count_queries():
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(CHANGELIST)
        assert response.status_code == 200
        return len(captured), response.content.decode()

    for n in range(3):
        make_question(text=f"Small bank question {n}?")
    processing.pending_process(steps=["explanation"])
    small, page = count_queries()
    assert 'title="explanation: Skipped (No generator configured)"' in page
    for n in range(30):
        make_question(text=f"Larger bank question {n}?")
    large, _ = count_queries()
    assert small == large


def test_filter_by_step_status_and_by_key_disagreement(admin_client, processed):
    QuestionStep.objects.filter(question=processed[0], step="embedding").update(status="failed")
    Question.objects.filter(pk=processed[1].pk).update(ai_key_disagreement=True)
    page = admin_client.get(CHANGELIST, {"ai_embedding": "failed"}).context["cl"]
    assert [q.pk for q in page.result_list] == [processed[0].pk]
    page = admin_client.get(CHANGELIST, {"ai_key_disagreement__exact": "1"}).context["cl"]
    assert [q.pk for q in page.result_list] == [processed[1].pk]


def test_process_now_and_reprocess_queue_a_batch(admin_client, processed,
                                                 django_capture_on_commit_callbacks):
    selected = [processed[0].pk, processed[1].pk]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(CHANGELIST, {"action": "reprocess",
                                                  "_selected_action": selected})
    assert response.status_code == 302
    [task] = [row.task for row in OrmQ.objects.all()]
    assert task["func"] == "core.tasks.process_question_batch"
    assert sorted(task["args"][0]) == sorted(selected)
    assert set(QuestionStep.objects.filter(question_id__in=selected).values_list(
        "status", flat=True)) == {"pending"}
    assert QuestionStep.objects.filter(question_id=processed[2].pk, status="done").exists()


def test_find_similar_shows_the_nearest_questions(admin_client, processed):
    response = admin_client.post(CHANGELIST, {"action": "find_similar",
                                              "_selected_action": [processed[0].pk]})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Similar questions" in page
    assert f"/admin/core/question/{processed[1].pk}/change/" in page


def test_similar_pairs_are_reviewed_with_who_and_when(admin_client, admin_user, processed):
    pair = SimilarQuestion.objects.get(question_a=processed[0], question_b=processed[1])
    url = reverse("admin:core_similarquestion_changelist")
    assert admin_client.get(url).status_code == 200
    admin_client.post(url, {"action": "mark_duplicate", "_selected_action": [pair.pk]})
    pair.refresh_from_db()
    assert pair.review == "duplicate" and pair.reviewed_by == admin_user and pair.reviewed_at


def test_the_change_form_shows_the_steps(admin_client, processed):
    response = admin_client.get(f"/admin/core/question/{processed[0].pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "No generator configured" in page and "all-minilm-l6-v2" in page
