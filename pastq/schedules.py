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
    Periodic("notifications-dispatch", "notifications.tasks.dispatch", "*/15 * * * *",
             description="student emails whose local send time has come (daily summary "
                         "08:00, study reminder at the chosen time, weekly report Monday "
                         "08:00, achievements), admin reports to the staff; then sends"),
    Periodic("analytics-open-days", "analytics.tasks.analytics_open_days", "5 * * * *",
             description="rollups of every local day still open somewhere and of the days "
                         "that just closed (daily, per subject, ISO weeks); insights as each "
                         "student's day closes; achievements"),
    Periodic("question-statistics", "analytics.tasks.question_statistics", "15 */2 * * *",
             description="question, choice and paper statistics (item analysis) with their "
                         "review flags"),
    Periodic("student-weekly-reports", "analytics.tasks.student_weekly_reports", "20 * * * *",
             description="each student's weekly report (figures, HTML, chart) once their ISO "
                         "week has closed in their time zone"),
    Periodic("admin-reports", "analytics.tasks.admin_reports", "30 12 * * *",
             description="the daily admin report once the day has closed everywhere (D+1 "
                         "12:00 UTC), the weekly one on Monday"),
    Periodic("health-checks", "maintenance.tasks.health_checks", "*/5 * * * *",
             description="queues served and moving; alerts the staff (health_check from "
                         "outside watches the cluster itself)"),
    Periodic("session-cleanup", "maintenance.tasks.session_cleanup", "0 3 * * *",
             description="open practice sessions idle past CLEANUP_SESSION_IDLE_HOURS "
                         "abandoned; abandoned ones without attempts past "
                         "CLEANUP_ABANDONED_SESSION_DAYS deleted (attempts never are)"),
    Periodic("token-cleanup", "maintenance.tasks.token_cleanup", "30 3 * * *",
             description="API tokens expired or revoked past CLEANUP_TOKEN_GRACE_DAYS; expired "
                         "login sessions"),
    Periodic("database-backup", "maintenance.backups.tasks.backup_create_job", "0 4 * * *",
             description="a backup of the database (compressed, encrypted when a key is set), "
                         "then a job that verifies it by a real restore into a scratch "
                         "database, applies retention and copies it off-site when configured"),
    Periodic("database-optimise", "maintenance.tasks.database_optimise", "0 5 * * 0",
             description="VACUUM (ANALYZE) where dead rows pile up and a size report "
                         "(PostgreSQL); PRAGMA optimize, WAL checkpoint, integrity check "
                         "(SQLite)"),
    Periodic("tmp-cleanup", "maintenance.tasks.tmp_cleanup", "30 5 * * *",
             description="var/tmp files past CLEANUP_TMP_HOURS; stored email and report HTML "
                         "past CLEANUP_EMAIL_HTML_DAYS; health-check runs past their "
                         "retention"),
    Periodic("system-report", "maintenance.tasks.system_report", "30 6 * * *",
             description="the daily system report on the UTC day that ended (growth, jobs, "
                         "queues, database and disk, backups, health, AI backlog), stored and "
                         "mailed to the staff once"),
    Periodic("job-records-prune", "maintenance.tasks.job_records_prune", "45 3 * * *",
             description="delete finished job records, task results, old presences and "
                         "resolved alerts past their retention"),
]
