"""django-q entry points of notifications (queue `notifications`): thin, a small dict back.
The dispatcher's row in the schedule table is in pastq/schedules.py."""

from core.jobs import RetryPolicy, enqueue, job
from notifications import sending, services

# Retrying a dispatcher or sender is safe: the ledger sends each email at most once.
NOTIFICATIONS_RETRY = RetryPolicy(max_attempts=3, max_delay=600)


@job(queue="notifications", retry=NOTIFICATIONS_RETRY)
def dispatch() -> dict:
    """Every 15 minutes: plan the student emails whose local send time has come (daily
    summaries, study reminders, weekly reports, achievements), queue the admin reports, send
    what is due; a follow-up send job when one job's time budget was not enough."""
    result = services.notifications_dispatch()
    if result["sent"]["more"]:
        enqueue(services.SEND_TASK)
    return result


@job(queue="notifications", retry=NOTIFICATIONS_RETRY)
def send_queued() -> dict:
    """Send what is due (queued rows whose time has come, failed ones due a retry) within one
    job's time budget, then queue another run if some are left."""
    outcome = sending.send_due()
    if outcome.more:
        enqueue(services.SEND_TASK)
    return outcome.as_dict()
