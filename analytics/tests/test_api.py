"""The read API (analytics/api.py): authentication, whose data a token reads, each endpoint's
figures (checked against plain Python over the same rows), pagination, the JSON errors, constant
query counts at two data sizes, and the OpenAPI document."""

import datetime as dt
import random
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.api import endpoints as api_module
from analytics.insights import insights_compute
from analytics.models import DailyStudentStats, ReviewCard, StudentAchievement, StudentInsight
from analytics.rollups import rollups_backfill
from core.models import Achievement, ApiToken, Attempt, PracticeSession, Subject
from core.services import api_token_issue, student_create
from core.tests.factories import make_question

UTC = dt.UTC
# At NOW it is still 2026-03-09 in New York (22:00 EST) but already 2026-03-10 in UTC.
NOW = dt.datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
NY_TODAY = dt.date(2026, 3, 9)

pytestmark = pytest.mark.django_db

ENDPOINTS = ["insights", "stats", "reviews/due", "recommendations", "achievements"]
PAGINATED = ["stats", "reviews/due", "achievements"]


@pytest.fixture(autouse=True)
def fixed_now():
    with mock.patch.object(api_module, "_now", return_value=NOW):
        yield


_emails = iter(range(1, 100_000))


def new_student(zone="America/New_York"):
    return student_create(email=f"api{next(_emails)}@example.com", timezone_name=zone).user


def token_for(user, **kwargs) -> str:
    return api_token_issue(user=user, name="test", **kwargs)[1]


def call(client, path, raw=None, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}
    return client.get(f"/api/v1/{path}", params, **headers)


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def student(catalogue):
    """A student in New York (the shared fixture's lives in London)."""
    return new_student()


@pytest.fixture
def server_user(catalogue):
    """The app's own server: not a student, holds the permission to read any student."""
    user = get_user_model().objects.create_user(email="server@example.com")
    user.user_permissions.add(Permission.objects.get(
        content_type__app_label="analytics", codename="read_any_student"))
    return user


# --- Building data --------------------------------------------------------------------------


def add_history(student, days, per_day, *, seed=1):
    """Attempts on `days` local days ending at NY_TODAY − 1 (random questions, correctness,
    times and hours, some in sessions), rolled up by the real rollup. Returns the attempts."""
    rng = random.Random(seed)
    zone = student.profile.zone
    questions = [make_question(subject_code=rng.choice(["MATH", "PHYS"])) for _ in range(12)]
    sessions = [PracticeSession.objects.create(student=student) for _ in range(3)]
    numbers, rows = {}, []
    first_day = NY_TODAY - dt.timedelta(days=days)
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        for _ in range(per_day):
            question = rng.choice(questions)
            numbers[question.pk] = numbers.get(question.pk, 0) + 1
            local = dt.datetime.combine(day, dt.time(rng.randrange(24), rng.randrange(60)),
                                        tzinfo=zone)
            answered_at = local.astimezone(UTC)
            rows.append(Attempt(
                student=student, question=question, is_correct=rng.random() < 0.6,
                time_taken_ms=rng.randrange(5_000, 90_000), answered_at=answered_at,
                local_date=answered_at.astimezone(zone).date(),
                attempt_number=numbers[question.pk],
                session=rng.choice([None, *sessions])))
    Attempt.objects.bulk_create(rows)
    rollups_backfill(first_day - dt.timedelta(days=1), NY_TODAY, now=NOW)
    return rows


def expected_daily(attempts):
    """Daily figures computed here, in plain Python, from the attempts."""
    days = {}
    for a in attempts:
        days.setdefault(a.local_date, []).append(a)
    out = {}
    for day, rows in sorted(days.items()):
        correct = sum(a.is_correct for a in rows)
        out[day.isoformat()] = {
            "date": day.isoformat(), "attempts": len(rows), "correct": correct,
            "accuracy": correct / len(rows), "time_spent_ms": sum(a.time_taken_ms for a in rows),
            "distinct_questions": len({a.question_id for a in rows}),
            "first_attempts": sum(a.attempt_number == 1 for a in rows),
            "sessions": len({a.session_id for a in rows if a.session_id is not None}),
        }
    return out


def put_daily_rows(student, dates):
    DailyStudentStats.objects.bulk_create([
        DailyStudentStats(student=student, date=day, attempts=4, correct=3, accuracy=0.75,
                          time_spent_ms=60_000, distinct_questions=4, first_attempts=4,
                          sessions=1, updated_at=NOW)
        for day in dates])


def put_cards(student, dues, *, text=None):
    cards = []
    for due in dues:
        question = make_question(text=text and f"{text} {len(cards)}")
        cards.append(ReviewCard(
            student=student, question=question, state=ReviewCard.State.RELEARNING, due=due,
            reviews=2, lapses=1, applied_attempt_id=1, applied_local_date=NY_TODAY,
            created_at=NOW, updated_at=NOW))
    return ReviewCard.objects.bulk_create(cards)


def put_achievements(student, count):
    """Up to 12 earned achievements (7 plain, then mastery per subject), one hour apart."""
    plain = list(Achievement.objects.exclude(kind=Achievement.Kind.MASTERY).order_by("pk"))
    mastery = Achievement.objects.get(kind=Achievement.Kind.MASTERY)
    pairs = [(a, None) for a in plain] + [(mastery, s) for s in Subject.objects.order_by("code")]
    rows = [StudentAchievement(student=student, achievement=achievement, subject=subject,
                               earned_at=NOW - dt.timedelta(hours=n), earned_on=NY_TODAY,
                               value=80.0 + n)
            for n, (achievement, subject) in enumerate(pairs[:count])]
    return StudentAchievement.objects.bulk_create(rows)


# --- Authentication -------------------------------------------------------------------------


def test_no_token_is_401_on_every_endpoint_with_a_bearer_challenge(client, student):
    for path in [f"me/{e}" for e in ENDPOINTS] + [f"students/{student.pk}/{e}" for e in ENDPOINTS]:
        response = call(client, path)
        assert_error(response, 401, "not_authenticated")
        assert response["WWW-Authenticate"] == 'Bearer realm="pastq"'


@pytest.mark.parametrize("case", ["wrong scheme", "basic", "unknown", "not ours", "revoked",
                                  "expired", "inactive user", "empty"])
def test_bad_tokens_are_401(client, student, case, settings, caplog):
    settings.DEBUG = True  # where django-ninja's own bearer class would log the header
    raw = token_for(student)
    token = ApiToken.objects.get()
    header = f"Bearer {raw}"
    if case == "wrong scheme":
        header = f"Token {raw}"
    elif case == "basic":
        header = "Basic c3R1ZGVudDpwdw=="
    elif case == "unknown":
        header = f"Bearer {raw[:-4]}abcd"
    elif case == "not ours":
        header = "Bearer some-other-secret"
    elif case == "revoked":
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    elif case == "expired":
        ApiToken.objects.filter(pk=token.pk).update(
            expires_at=timezone.now() - dt.timedelta(seconds=1))
    elif case == "inactive user":
        type(student).objects.filter(pk=student.pk).update(is_active=False)
    elif case == "empty":
        header = "Bearer "
    response = client.get("/api/v1/me/stats", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith('Bearer realm="pastq"')
    assert "items" not in response.json()
    assert raw not in caplog.text  # a secret is never logged


def test_a_valid_token_marks_its_use_at_most_once_a_minute(client, student):
    raw = token_for(student)
    assert call(client, "me/stats", raw).status_code == 200
    first = ApiToken.objects.get().last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        assert call(client, "me/stats", raw).status_code == 200
    assert not [q for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert ApiToken.objects.get().last_used_at == first
    ApiToken.objects.update(last_used_at=timezone.now() - dt.timedelta(minutes=2))
    assert call(client, "me/stats", raw).status_code == 200
    assert ApiToken.objects.get().last_used_at > first


# --- Whose data -----------------------------------------------------------------------------


def test_a_student_token_never_reads_another_student(client, student):
    other = new_student()
    put_daily_rows(other, [NY_TODAY])
    put_cards(other, [NOW - dt.timedelta(hours=1)])
    put_achievements(other, 2)
    StudentInsight.objects.create(student=other, as_of=NY_TODAY, computed_at=NOW)
    raw = token_for(student)
    for endpoint in ENDPOINTS:
        for target in (other.pk, student.pk, 999_999):  # another, itself, nobody: all refused
            response = call(client, f"students/{target}/{endpoint}", raw)
            assert_error(response, 403, "forbidden")
    # Its own /me/ sees only its own (empty) data.
    assert call(client, "me/stats", raw, **{"from": "2026-03-01"}).json() == \
        {"items": [], "count": 0}
    assert call(client, "me/reviews/due", raw).json() == {"items": [], "count": 0}
    assert call(client, "me/achievements", raw).json() == {"items": [], "count": 0}
    assert_error(call(client, "me/insights", raw), 404, "not_computed_yet")


def test_the_permission_holder_reads_any_student(client, server_user, student):
    other = new_student()
    put_daily_rows(student, [NY_TODAY - dt.timedelta(days=1)])
    put_daily_rows(other, [NY_TODAY, NY_TODAY - dt.timedelta(days=2)])
    server = token_for(server_user)
    mine = call(client, f"students/{student.pk}/stats", server).json()
    theirs = call(client, f"students/{other.pk}/stats", server).json()
    assert [row["date"] for row in mine["items"]] == ["2026-03-08"]
    assert [row["date"] for row in theirs["items"]] == ["2026-03-07", "2026-03-09"]
    # The same as the student's own view.
    assert call(client, "me/stats", token_for(other)).json() == theirs
    # Not a student, or nobody: 404; the server itself has no /me/.
    assert_error(call(client, f"students/{server_user.pk}/stats", server), 404, "not_found")
    assert_error(call(client, "students/999999/insights", server), 404, "not_found")
    assert_error(call(client, "me/stats", server), 404, "not_a_student")


def test_the_permission_through_a_group_or_as_superuser(client, student):
    group = Group.objects.create(name="api readers")
    group.permissions.add(Permission.objects.get(codename="read_any_student"))
    member = get_user_model().objects.create_user(email="member@example.com")
    member.groups.add(group)
    admin = get_user_model().objects.create_superuser(email="root@example.com")
    plain_staff = get_user_model().objects.create_user(email="staff@example.com", is_staff=True)
    for user, status in ((member, 200), (admin, 200), (plain_staff, 403)):
        response = call(client, f"students/{student.pk}/achievements", token_for(user))
        assert response.status_code == status


# --- Endpoints ------------------------------------------------------------------------------


def test_stats_are_the_students_daily_figures(client, student):
    attempts = add_history(student, days=12, per_day=9)
    expected = expected_daily(attempts)
    body = call(client, "me/stats", token_for(student), **{"from": "2026-02-01",
                                                           "to": "2026-03-09"}).json()
    assert body["count"] == len(expected) == len(body["items"])
    assert [row["date"] for row in body["items"]] == sorted(expected)  # oldest first
    for row in body["items"]:
        want = expected[row["date"]]
        assert row == {**want, "accuracy": pytest.approx(want["accuracy"])}
    assert sum(row["attempts"] for row in body["items"]) == len(attempts)


def test_stats_default_to_the_last_30_local_days(client, student):
    # New York's today is 2026-03-09 at NOW (UTC's is 03-10): the default is 02-08 … 03-09.
    put_daily_rows(student, [dt.date(2026, 2, 7), dt.date(2026, 2, 8), dt.date(2026, 2, 20),
                             dt.date(2026, 3, 9), dt.date(2026, 3, 10)])
    raw = token_for(student)
    body = call(client, "me/stats", raw).json()
    assert [row["date"] for row in body["items"]] == ["2026-02-08", "2026-02-20", "2026-03-09"]
    only_to = call(client, "me/stats", raw, to="2026-03-08").json()  # from 02-07
    assert [row["date"] for row in only_to["items"]] == ["2026-02-07", "2026-02-08",
                                                         "2026-02-20"]
    only_from = call(client, "me/stats", raw, **{"from": "2026-02-20"}).json()
    assert [row["date"] for row in only_from["items"]] == ["2026-02-20", "2026-03-09"]


def test_stats_range_rules(client, student):
    raw = token_for(student)
    put_daily_rows(student, [dt.date(2025, 3, 8), dt.date(2025, 3, 9)])
    # 366 days, both ends included, is the longest range.
    error = assert_error(call(client, "me/stats", raw, **{"from": "2025-03-08",
                                                          "to": "2026-03-09"}),
                         422, "invalid_request")
    assert "366" in error["message"]
    ok = call(client, "me/stats", raw, **{"from": "2025-03-09", "to": "2026-03-09"}).json()
    assert [row["date"] for row in ok["items"]] == ["2025-03-09"]
    assert_error(call(client, "me/stats", raw, **{"from": "2026-03-09", "to": "2026-03-01"}),
                 422, "invalid_request")
    error = assert_error(call(client, "me/stats", raw, **{"from": "yesterday"}),
                         422, "invalid_request")
    assert error["details"][0]["loc"] == ["query", "from"]


def test_pagination(client, student):
    days = [NY_TODAY - dt.timedelta(days=n) for n in range(25)]
    put_daily_rows(student, days)
    raw = token_for(student)
    everything = [row["date"] for row in call(client, "me/stats", raw).json()["items"]]
    assert everything == sorted(d.isoformat() for d in days)
    page = call(client, "me/stats", raw, limit=10, offset=20).json()
    assert page["count"] == 25
    assert [row["date"] for row in page["items"]] == everything[20:25]
    assert call(client, "me/stats", raw, limit=100).json()["count"] == 25
    for params, where in (({"limit": 101}, "limit"), ({"limit": 0}, "limit"),
                          ({"offset": -1}, "offset"), ({"limit": "many"}, "limit")):
        error = assert_error(call(client, "me/stats", raw, **params), 422, "invalid_request")
        assert error["details"][0]["loc"] == ["query", where]


def test_insights(client, student):
    raw = token_for(student)
    assert_error(call(client, "me/insights", raw), 404, "not_computed_yet")
    # Active on the 9 local days ending 2026-03-08 except 03-04: streaks of 4 and 4.
    attempts = add_history(student, days=9, per_day=5)
    Attempt.objects.filter(student=student, local_date=dt.date(2026, 3, 4)).delete()
    rollups_backfill(dt.date(2026, 2, 27), NY_TODAY, now=NOW + dt.timedelta(seconds=1))
    insights_compute([student.pk], now=NOW)
    active = sorted({a.local_date for a in attempts} - {dt.date(2026, 3, 4)})
    longest = run = 0
    for previous, day in zip([None, *active], active, strict=False):
        run = run + 1 if previous and (day - previous).days == 1 else 1
        longest = max(longest, run)
    current = 0
    day = dt.date(2026, 3, 8)  # as_of: New York's last closed day at NOW
    while day in active:
        current, day = current + 1, day - dt.timedelta(days=1)

    body = call(client, "me/insights", raw).json()
    row = StudentInsight.objects.get(student=student)
    assert body["student_id"] == student.pk
    assert body["as_of"] == "2026-03-08" == row.as_of.isoformat()
    assert (body["current_streak"], body["longest_streak"]) == (current, longest) == (4, 4)
    assert body["active_days_30"] == len(active) == 8
    for name in ("habit_strength", "consistency", "accuracy_7", "accuracy_prev_7", "trend",
                 "slope_per_week", "strengths", "weaknesses"):
        assert body[name] == getattr(row, name)
    assert "recommendations" not in body  # they have their own endpoint


def test_insights_strengths_and_weaknesses_keep_their_shape(client, student):
    topic = {"topic_id": 3, "topic": "Algebra", "subject": "MATH", "subject_name": "Mathematics",
             "attempts": 40, "correct": 26, "accuracy": 0.65, "wilson_lower": 0.4951,
             "wilson_upper": 0.7787}
    StudentInsight.objects.create(student=student, as_of=NY_TODAY, computed_at=NOW,
                                  weaknesses=[topic])
    body = call(client, "me/insights", token_for(student)).json()
    assert body["weaknesses"] == [topic] and body["strengths"] == []


def test_reviews_due(client, student):
    long_text = "What   is\n\nthe " + "very " * 60 + "end?"
    due = put_cards(student, [NOW - dt.timedelta(days=2), NOW, NOW - dt.timedelta(hours=1)],
                    text=long_text)
    put_cards(student, [NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(days=3)])
    put_cards(new_student(), [NOW - dt.timedelta(days=5)])  # someone else's
    body = call(client, "me/reviews/due", token_for(student)).json()
    assert body["count"] == 3
    by_due = sorted(due, key=lambda card: card.due)
    assert [item["card_id"] for item in body["items"]] == [card.pk for card in by_due]
    first = body["items"][0]
    question = by_due[0].question
    collapsed = " ".join(question.text.split())
    assert first == {
        "card_id": by_due[0].pk, "question_id": question.pk,
        "excerpt": collapsed[:200].rstrip() + "…", "subject": "MATH",
        "subject_name": question.subject.name, "topic": None,
        "due": by_due[0].due.isoformat().replace("+00:00", "Z"), "state": "relearning",
        "reviews": 2, "lapses": 1}
    assert len(first["excerpt"]) <= 201 and "  " not in first["excerpt"]
    short = put_cards(new_student(), [NOW])[0]
    own = call(client, "me/reviews/due", token_for(short.student)).json()["items"][0]
    assert own["excerpt"] == short.question.text  # short texts are whole


def test_recommendations(client, student):
    raw = token_for(student)
    assert call(client, "me/recommendations", raw).json() == {"as_of": None, "items": []}
    put_cards(student, [NOW - dt.timedelta(days=1), NOW - dt.timedelta(minutes=5)])
    put_cards(student, [NOW + dt.timedelta(hours=1)])
    assert call(client, "me/recommendations", raw).json() == {"as_of": None, "items": [
        {"code": "review_due", "count": 2, "text": "2 questions due for review."}]}
    stored = [
        {"code": "review_due", "count": 99, "text": "stale"},  # a stored one never shows
        {"code": "study_more", "text": "Practise more often.", "active_days_30": 4,
         "habit_strength": 21.5, "current_streak": 0},
        {"code": "review_topic", "text": "Review Algebra.", "topic_id": 3, "topic": "Algebra",
         "subject": "MATH", "attempts": 40, "accuracy": 0.65},
    ]
    StudentInsight.objects.create(student=student, as_of=dt.date(2026, 3, 8), computed_at=NOW,
                                  recommendations=stored)
    body = call(client, "me/recommendations", raw).json()
    assert body == {"as_of": "2026-03-08", "items": [
        {"code": "review_due", "count": 2, "text": "2 questions due for review."},
        *stored[1:]]}
    ReviewCard.objects.filter(student=student).update(due=NOW + dt.timedelta(days=1))
    assert call(client, "me/recommendations", raw).json()["items"] == stored[1:]


def test_achievements(client, student):
    earned = put_achievements(student, 12)
    withdrawn = earned[1]
    StudentAchievement.objects.filter(pk=withdrawn.pk).update(withdrawn_at=NOW)
    put_achievements(new_student(), 3)
    raw = token_for(student)
    body = call(client, "me/achievements", raw).json()
    kept = sorted((a for a in earned if a.pk != withdrawn.pk), key=lambda a: a.earned_at,
                  reverse=True)
    assert body["count"] == 11
    assert [(item["code"], item["subject"]) for item in body["items"]] == [
        (a.achievement.code, a.subject.code if a.subject else None) for a in kept]
    newest = body["items"][0]
    achievement = earned[0].achievement
    assert newest == {
        "code": achievement.code, "title": achievement.title,
        "description": achievement.description, "kind": achievement.kind, "subject": None,
        "value": 80.0, "earned_on": "2026-03-09", "earned_at": "2026-03-10T03:00:00Z"}
    assert [item["subject"] for item in body["items"] if item["kind"] == "mastery"] == \
        ["BIO", "CHEM", "CS", "MATH", "PHYS"]
    page = call(client, "me/achievements", raw, limit=4, offset=8).json()
    assert page["count"] == 11
    assert page["items"] == body["items"][8:11]


# --- Errors, documents ----------------------------------------------------------------------


def test_unknown_paths_are_json_404s(client, student):
    raw = token_for(student)
    assert_error(call(client, "me/nothing", raw), 404, "not_found")
    assert_error(call(client, "nothing"), 404, "not_found")
    assert_error(call(client, "students/abc/stats", raw), 404, "not_found")


def test_the_openapi_document_lists_every_path(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["version"] == "1"
    paths = set(document["paths"])
    assert paths == {f"/api/v1/me/{e}" for e in ENDPOINTS} | {
        f"/api/v1/students/{{student_id}}/{e}" for e in ENDPOINTS}
    schemes = document["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    stats = document["paths"]["/api/v1/me/stats"]["get"]
    assert {p["name"] for p in stats["parameters"]} == {"from", "to", "limit", "offset"}
    assert set(stats["responses"]) >= {"200", "401", "403", "404", "422"}
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and b"openapi.json" in docs.content
    # The docs page's script and styles are served from here: nothing needs the network.
    assert b"cdn." not in docs.content and b"/static/ninja/" in docs.content


# --- Query counts ---------------------------------------------------------------------------


def build(size):
    """A student with `size`-dependent data in every table the API reads, beside others."""
    student = new_student()
    n_days, n_cards, n_achievements = {"small": (1, 1, 1), "large": (200, 60, 12)}[size]
    put_daily_rows(student, [NY_TODAY - dt.timedelta(days=n) for n in range(n_days)])
    put_cards(student, [NOW - dt.timedelta(minutes=n) for n in range(n_cards)])
    put_achievements(student, n_achievements)
    StudentInsight.objects.create(
        student=student, as_of=NY_TODAY, computed_at=NOW,
        recommendations=[{"code": "study_more", "text": "x"}] * (1 if size == "small" else 5))
    if size == "large":
        for _ in range(5):
            put_achievements(new_student(), 3)
    return student


def measure(client, path, raw):
    with CaptureQueriesContext(connection) as queries:
        response = call(client, path, raw, **({"from": "2025-06-01"} if "stats" in path else {}))
    assert response.status_code == 200, response.content
    return len(queries), response.json()


def test_query_counts_do_not_grow_with_the_data(client, server_user, django_assert_max_num_queries):
    server = token_for(server_user)
    counts = {}
    for size in ("small", "large"):
        student = build(size)
        own = token_for(student)
        call(client, "me/insights", own)  # marks both tokens used: no UPDATE below
        call(client, f"students/{student.pk}/insights", server)
        for endpoint in ENDPOINTS:
            for who, path, raw in (("me", f"me/{endpoint}", own),
                                   ("server", f"students/{student.pk}/{endpoint}", server)):
                n, body = measure(client, path, raw)
                counts.setdefault((who, endpoint), []).append(n)
                if endpoint in PAGINATED and size == "large":
                    assert body["count"] > len(body["items"]) or body["count"] >= 12
    for key, (small, large) in counts.items():
        assert small == large, (key, small, large)
    # Token, profile, then one query (insights) or two (a page and its count; the
    # recommendations and the due cards' count); the permission adds two for /students/.
    expected = {"insights": 3, "stats": 4, "reviews/due": 4, "recommendations": 4,
                "achievements": 4}
    for (who, endpoint), (n, _) in counts.items():
        assert n == expected[endpoint] + (2 if who == "server" else 0), (who, endpoint, n)
    student = build("large")
    raw = token_for(student)
    call(client, "me/stats", raw)
    with django_assert_max_num_queries(4):
        call(client, "me/reviews/due", raw, limit=100)
