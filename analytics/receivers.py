"""What analytics does when core tells it something (connected in AnalyticsConfig.ready)."""

from analytics import regrading
from core.jobs import enqueue


def on_answer_key_changed(sender, *, question_id, before, after, by_id=None, **kwargs):
    """A question's answer key was corrected (core sends this after the edit committed):
    record a regrade and queue the job that runs it."""
    regrade = regrading.regrade_request(question_id, by_id=by_id, key_before=before,
                                        key_after=after)
    enqueue("analytics.tasks.regrade_question", args=[regrade.pk])
