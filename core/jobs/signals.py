"""What the job plumbing announces. It never imports the code that alerts people about it
(that is `maintenance`, a higher layer, which connects receivers to these)."""

from django.dispatch import Signal

# A job gave up: a permanent failure, its retries exhausted, or redelivered past its maximum
# after its workers died. Sent with `run` (the JobRun that ended the chain).
job_gave_up = Signal()

# A job succeeded. Sent with `run`; receivers resolve what an earlier failure of the same job
# (the same `run.identity`) opened.
job_succeeded = Signal()

# A queued task could not be delivered: its payload is signed with a key this process does not
# know (SECRET_KEY rotated without SECRET_KEY_FALLBACKS, another deployment's task) or cannot be
# read. It was taken out of the queue and recorded as a failed JobRun; sent with `run`.
task_undeliverable = Signal()
