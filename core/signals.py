"""What core tells the apps above it. Core never imports them (imports flow one way: core ←
analytics ← notifications); an app that needs to act on something core did connects a receiver
here, in its AppConfig.ready()."""

from django.dispatch import Signal

# Sent by core.services.student_create once a student exists (a user with a StudentProfile),
# with keyword arguments `user` and `profile`.
#
# Sent inside student_create's transaction, not after commit: a receiver adds the rows its app
# keeps for every student (the notifications app: their preferences), so those rows and the
# student are committed together or not at all. Sent after commit, a failing receiver would
# leave a student without them for good, and code that runs right after student_create
# would find them missing. So a receiver does quick database work only; anything slow or
# external (a welcome email, say) it defers itself with transaction.on_commit or a job.
student_created = Signal()

# Sent by core.services.question_key_change_announce after a question's answer key was
# corrected (its correct choices or its answer text changed) and the change committed, with
# keyword arguments `question_id`, `before` and `after` (question_answer_key's values) and
# `by_id` (the user who changed it, or None). Analytics regrades the question's attempts.
answer_key_changed = Signal()
