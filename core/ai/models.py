"""What the AI providers have used: counters per window, shared by every worker on every machine.

Registered with the core app through `core/models/__init__.py`. The limits (`core/ai/limits.py`)
change these rows only with single conditional `UPDATE`s, never read-then-write, so concurrent
workers cannot race past a cap.
"""

from django.db import models


class AiUsage(models.Model):
    """Requests and tokens of one provider in one window: a minute (the request rate) or a UTC
    day (the daily caps). Minute rows are pruned after an hour; day rows are kept as a record of
    what each day cost."""

    class Window(models.TextChoices):
        MINUTE = "minute", "Minute"
        DAY = "day", "Day (UTC)"

    provider = models.CharField(max_length=40)  # e.g. "gemini"
    window = models.CharField(max_length=8, choices=Window.choices)
    window_start = models.DateTimeField(help_text="UTC start of the minute or day.")
    requests = models.PositiveIntegerField(default=0)
    tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "AI usage"
        verbose_name_plural = "AI usage"
        ordering = ["-window_start", "provider", "window"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "window", "window_start"],
                                    name="core_aiusage_one_row_per_window"),
        ]

    def __str__(self) -> str:
        return (f"{self.provider} {self.window} {self.window_start:%Y-%m-%d %H:%M}: "
                f"{self.requests} requests, {self.tokens} tokens")
