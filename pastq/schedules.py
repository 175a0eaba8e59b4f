"""The one table of periodic jobs (UTC cron). `manage.py sync_schedules` (run by init_db) writes
it into django-q's Schedule rows, named with the managed prefix `pastq:`. Each job runs on its
own queue (declared with @job).

Plain data: the plumbing reads it through the PASTQ_SCHEDULES setting, and a test imports every
task here, so add a row only for a task that exists.
"""

from core.jobs.schedules import Periodic

SCHEDULES: list[Periodic] = [
    Periodic("question-processing", "core.tasks.process_pending_questions", "*/10 * * * *",
             description="every pending AI step: embeddings, metadata, explanations, similar "
                         "questions"),
    Periodic("health-checks", "maintenance.tasks.health_checks", "*/5 * * * *",
             description="queues served and moving; alerts the staff (health_check from "
                         "outside watches the cluster itself)"),
    Periodic("job-records-prune", "maintenance.tasks.job_records_prune", "45 3 * * *",
             description="delete finished job records, task results, old presences and "
                         "resolved alerts past their retention"),
]
