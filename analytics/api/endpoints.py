"""The endpoints: each under /me/ (the token's own student) and under /students/{student_id}/
(a token whose user holds analytics.read_any_student), with their response schemas. docs/api.md.
"""

import datetime
from typing import Any

from django.db.models import F
from django.db.models.functions import Substr
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.pagination import paginate

from analytics.api.base import ERRORS, ApiError, Pagination, any_student, api, own_student
from analytics.models import DailyStudentStats, ReviewCard, StudentInsight
from analytics.review import reviews_due
from analytics.selectors import student_achievements
from core.models import StudentProfile

STATS_DEFAULT_DAYS, STATS_MAX_DAYS = 30, 366  # /stats ranges, both ends included
EXCERPT_CHARS = 200  # of a question's text in /reviews/due


def _now() -> datetime.datetime:
    """The moment a request reads at (a function, so tests can fix it)."""
    return timezone.now()


# --- Insights -------------------------------------------------------------------------------


class TopicFigure(Schema):
    topic_id: int
    topic: str
    subject: str
    subject_name: str
    attempts: int
    correct: int
    accuracy: float
    wilson_lower: float
    wilson_upper: float


class InsightOut(Schema):
    student_id: int
    as_of: datetime.date = Field(..., description="The student's last closed local day.")
    computed_at: datetime.datetime
    current_streak: int
    longest_streak: int
    active_days_30: int
    habit_strength: float
    consistency: float
    accuracy_7: float | None
    accuracy_prev_7: float | None
    trend: float | None
    slope_per_week: float | None
    strengths: list[TopicFigure]
    weaknesses: list[TopicFigure]


def _insights(profile: StudentProfile) -> StudentInsight:
    insight = StudentInsight.objects.filter(student_id=profile.user_id).first()
    if insight is None:
        raise ApiError(404, "not_computed_yet", "No insights yet: they are computed after the "
                       "student's first active local day has closed.")
    return insight


# --- Daily figures --------------------------------------------------------------------------


class DailyStatsOut(Schema):
    date: datetime.date = Field(..., description="The student's local date.")
    attempts: int
    correct: int
    accuracy: float
    time_spent_ms: int
    distinct_questions: int
    first_attempts: int
    sessions: int


def _stats(profile: StudentProfile, date_from: datetime.date | None,
           date_to: datetime.date | None):
    date_to = date_to or _now().astimezone(profile.zone).date()
    date_from = date_from or date_to - datetime.timedelta(days=STATS_DEFAULT_DAYS - 1)
    if date_from > date_to:
        raise ApiError(422, "invalid_request", "`from` is after `to`.")
    if (date_to - date_from).days + 1 > STATS_MAX_DAYS:
        raise ApiError(422, "invalid_request",
                       f"The range is longer than {STATS_MAX_DAYS} days.")
    return (DailyStudentStats.objects
            .filter(student_id=profile.user_id, date__range=(date_from, date_to))
            .order_by("date"))


# --- Reviews due ----------------------------------------------------------------------------


# Read twice the excerpt, so collapsing whitespace still leaves enough to show.
_TEXT_HEAD_CHARS = EXCERPT_CHARS * 2
_STATE_NAMES = {state.value: state.name.lower() for state in ReviewCard.State}


class ReviewDueOut(Schema):
    card_id: int
    question_id: int
    excerpt: str = Field(..., description=f"The question's text, whitespace collapsed, cut at "
                                          f"{EXCERPT_CHARS} characters (… when cut).")
    subject: str
    subject_name: str
    topic: str | None
    due: datetime.datetime
    state: str = Field(..., description="learning, review or relearning.")
    reviews: int
    lapses: int

    @staticmethod
    def resolve_excerpt(obj) -> str:
        head = obj["text_head"] or ""
        text = " ".join(head.split())
        if len(text) > EXCERPT_CHARS or len(head) >= _TEXT_HEAD_CHARS:
            return text[:EXCERPT_CHARS].rstrip() + "…"
        return text

    @staticmethod
    def resolve_state(obj) -> str:
        return _STATE_NAMES.get(obj["state"], str(obj["state"]))


def _due_cards(profile: StudentProfile):
    """The student's cards due now (due ≤ now), most overdue first (analytics/review.py)."""
    return reviews_due(profile.user_id, at=_now())


def _reviews_due(profile: StudentProfile):
    return (_due_cards(profile)
            .values("question_id", "due", "state", "reviews", "lapses", card_id=F("id"),
                    subject=F("question__subject__code"),
                    subject_name=F("question__subject__name"), topic=F("question__topic__name"),
                    text_head=Substr("question__text", 1, _TEXT_HEAD_CHARS)))


# --- Recommendations ------------------------------------------------------------------------


class RecommendationsOut(Schema):
    as_of: datetime.date | None = Field(
        ..., description="As of which closed local day the stored recommendations are; null "
                         "before the first insights.")
    items: list[dict[str, Any]] = Field(
        ..., description="Most pressing first. Each has `code` (review_due, study_more, "
                         "review_topic, move_up), `text`, and its figures (docs/api.md).")


def _recommendations(profile: StudentProfile) -> dict:
    insight = (StudentInsight.objects.filter(student_id=profile.user_id)
               .values("as_of", "recommendations").first())
    stored = [item for item in (insight or {}).get("recommendations") or []
              if item.get("code") != "review_due"]
    due = _due_cards(profile).count()
    items = []
    if due:
        items.append({"code": "review_due", "count": due,
                      "text": f"{due} question{'s' if due != 1 else ''} due for review."})
    return {"as_of": insight["as_of"] if insight else None, "items": items + stored}


# --- Achievements ---------------------------------------------------------------------------


class AchievementOut(Schema):
    code: str
    title: str
    description: str
    kind: str
    subject: str | None = Field(..., description="The subject's code (mastery), else null.")
    value: float | None = Field(..., description="The figure that earned it.")
    earned_on: datetime.date = Field(..., description="The student's local date.")
    earned_at: datetime.datetime

    @staticmethod
    def resolve_code(obj) -> str:
        return obj.achievement.code

    @staticmethod
    def resolve_title(obj) -> str:
        return obj.achievement.title

    @staticmethod
    def resolve_description(obj) -> str:
        return obj.achievement.description

    @staticmethod
    def resolve_kind(obj) -> str:
        return obj.achievement.kind

    @staticmethod
    def resolve_subject(obj) -> str | None:
        return obj.subject.code if obj.subject_id else None


# --- Routes: each endpoint under /me/ and under /students/{student_id}/ ----------------------


me = Router(tags=["me"])
students = Router(tags=["students"])


@me.get("/insights", response={200: InsightOut, **ERRORS}, summary="My insights")
def me_insights(request):
    return _insights(own_student(request))


@students.get("/{int:student_id}/insights", response={200: InsightOut, **ERRORS},
              summary="A student's insights")
def student_insights(request, student_id: int):
    return _insights(any_student(request, student_id))


_FROM = Query(None, alias="from", description="First local date, YYYY-MM-DD (default: `to` "
              f"− {STATS_DEFAULT_DAYS - 1} days).")
_TO = Query(None, alias="to", description="Last local date, YYYY-MM-DD (default: the "
            "student's today).")


@me.get("/stats", response={200: list[DailyStatsOut], **ERRORS}, summary="My daily figures")
@paginate(Pagination)
def me_stats(request, date_from: datetime.date | None = _FROM,
             date_to: datetime.date | None = _TO):
    return _stats(own_student(request), date_from, date_to)


@students.get("/{int:student_id}/stats", response={200: list[DailyStatsOut], **ERRORS},
              summary="A student's daily figures")
@paginate(Pagination)
def student_stats(request, student_id: int, date_from: datetime.date | None = _FROM,
                  date_to: datetime.date | None = _TO):
    return _stats(any_student(request, student_id), date_from, date_to)


@me.get("/reviews/due", response={200: list[ReviewDueOut], **ERRORS},
        summary="My questions due for review")
@paginate(Pagination)
def me_reviews_due(request):
    return _reviews_due(own_student(request))


@students.get("/{int:student_id}/reviews/due", response={200: list[ReviewDueOut], **ERRORS},
              summary="A student's questions due for review")
@paginate(Pagination)
def student_reviews_due(request, student_id: int):
    return _reviews_due(any_student(request, student_id))


@me.get("/recommendations", response={200: RecommendationsOut, **ERRORS},
        summary="My recommendations")
def me_recommendations(request):
    return _recommendations(own_student(request))


@students.get("/{int:student_id}/recommendations",
              response={200: RecommendationsOut, **ERRORS},
              summary="A student's recommendations")
def student_recommendations(request, student_id: int):
    return _recommendations(any_student(request, student_id))


@me.get("/achievements", response={200: list[AchievementOut], **ERRORS},
        summary="My achievements")
@paginate(Pagination)
def me_achievements(request):
    return student_achievements(own_student(request).user_id)


@students.get("/{int:student_id}/achievements",
              response={200: list[AchievementOut], **ERRORS},
              summary="A student's achievements")
@paginate(Pagination)
def student_achievements_list(request, student_id: int):
    return student_achievements(any_student(request, student_id).user_id)


api.add_router("/me", me)
api.add_router("/students", students)

# Last: any other path under /api/v1/ answers a JSON 404 too, not Django's HTML page.
fallback = Router()


@fallback.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}",
                        auth=None, include_in_schema=False)
def unknown_path(request, rest: str):
    raise ApiError(404, "not_found", f"No such endpoint: /api/v1/{rest}")


api.add_router("", fallback)
