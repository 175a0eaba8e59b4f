"""One way to make a student: student_create, whoever asks (admin, seed_data, services)."""

import ast
from pathlib import Path
from unittest import mock

import pytest
from django.urls import reverse

from core.models import StudentProfile, User
from core.services import attempt_record, student_create
from core.signals import student_created
from core.tests.factories import make_question

CORE = Path(__file__).resolve().parents[1]


def test_student_create_sends_student_created_once_with_the_new_student(catalogue):
    receiver = mock.Mock()
    student_created.connect(receiver, dispatch_uid="test-receiver")
    try:
        profile = student_create(email="new@example.com", timezone_name="Asia/Tokyo")
    finally:
        student_created.disconnect(dispatch_uid="test-receiver")
    receiver.assert_called_once()
    kwargs = receiver.call_args.kwargs
    assert (kwargs["user"], kwargs["profile"]) == (profile.user, profile)


def test_a_receiver_that_fails_leaves_no_half_made_student(catalogue):
    def broken_receiver(**kwargs):
        raise RuntimeError("the receiving app is broken")

    student_created.connect(broken_receiver, dispatch_uid="test-broken")
    try:
        with pytest.raises(RuntimeError):
            student_create(email="new@example.com")
    finally:
        student_created.disconnect(dispatch_uid="test-broken")
    assert not User.objects.filter(email="new@example.com").exists()


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser(
        email="root@example.com", password="pw"))
    return client


def test_a_user_added_in_the_admin_is_a_whole_student(catalogue, staff_client):
    response = staff_client.post(reverse("admin:core_user_add"), {
        "email": "Added@Example.com", "password1": "a-Long-pass-2024",
        "password2": "a-Long-pass-2024",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    user = User.objects.get(email="added@example.com")
    assert response.url == reverse("admin:core_user_change", args=[user.pk])
    assert user.check_password("a-Long-pass-2024")
    assert StudentProfile.objects.filter(user=user).exists()
    # Read through the reverse accessor: core's tests do not import the notifications app.
    assert user.notification_preference.email_enabled
    question = make_question()
    attempt = attempt_record(student=user, question=question,
                             choice=question.choices.get(label="B"), time_taken_ms=1000)
    assert attempt.is_correct


def test_the_admin_add_form_still_asks_only_for_email_and_password(staff_client):
    form = staff_client.get(reverse("admin:core_user_add")).context["adminform"].form
    assert {"email", "password1", "password2"} <= set(form.fields)
    assert not {"first_name", "is_staff", "timezone"} & set(form.fields)


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def test_core_never_imports_the_notifications_app():
    """Imports flow one way (core ← analytics ← notifications): core tells notifications about
    a new student with the student_created signal, not by importing it."""
    offenders = sorted(
        str(path.relative_to(CORE.parent))
        for path in CORE.rglob("*.py")
        if "migrations" not in path.parts
        and any(m == "notifications" or m.startswith("notifications.")
                for m in imported_modules(path))
    )
    assert offenders == []
