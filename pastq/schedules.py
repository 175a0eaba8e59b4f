"""The one table of periodic jobs. `manage.py sync_schedules` (run by init_db) writes it into
django-q's Schedule rows, named with the managed prefix; times are UTC cron expressions.

Add a row only for a task that exists: a test imports every dotted path here.
"""

from dataclasses import dataclass, field

from django.conf import settings

MANAGED_PREFIX = "pastq:"


@dataclass(frozen=True)
class Periodic:
    name: str
    task: str
    cron: str
    queue: str
    kwargs: dict = field(default_factory=dict)
    description: str = ""

    @property
    def schedule_name(self) -> str:
        return MANAGED_PREFIX + self.name


SCHEDULES: list[Periodic] = [
    *[
        Periodic(f"heartbeat:{queue}", "core.tasks.heartbeat", "* * * * *", queue,
                 {"queue": queue}, "cluster liveness; also watches the other queues for stalls")
        for queue in settings.PASTQ_QUEUES
    ],
    Periodic("job-records-prune", "core.tasks.job_runs_prune", "45 3 * * *", "maintenance",
             {}, "delete finished job records and resolved alerts past their retention"),
]
