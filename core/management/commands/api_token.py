"""`manage.py api_token issue|list|revoke`: the read API's bearer tokens from the command line
(docs/api.md). The admin's "API tokens" page issues and revokes them too."""

import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from core.models import ApiToken
from core.services import TOKEN_PREFIX, api_token_issue, api_token_revoke

# Fewer characters than this could revoke a token by a slip of the keyboard (`revoke pq_`).
MIN_PREFIX = len(TOKEN_PREFIX) + 4


def _when(moment: datetime.datetime | None, empty: str = "-") -> str:
    if moment is None:
        return empty
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M")


def _state(token: ApiToken, now: datetime.datetime) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


class Command(BaseCommand):
    help = (
        "API tokens for the read API (/api/v1/, docs/api.md). `issue --user EMAIL --name NAME "
        "[--expires-days N]` prints the new token once (first line, alone), then its prefix and "
        "expiry: only its SHA-256 digest is stored. `list [--user EMAIL]` shows every token's "
        "prefix, name, user, dates (UTC) and state (active, revoked, expired). `revoke PREFIX` "
        "revokes the one active token whose prefix starts with PREFIX. Bad input exits 2."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        issue = actions.add_parser("issue", help="Issue a token and print it once.")
        issue.add_argument("--user", required=True, metavar="EMAIL",
                           help="Whose token it is (case-insensitive).")
        issue.add_argument("--name", required=True,
                           help="What it is for, e.g. 'mobile app' or 'web server'.")
        issue.add_argument("--expires-days", type=int, metavar="N",
                           help="Expires N days from now (N ≥ 1; default: never).")
        listing = actions.add_parser("list", help="List tokens, newest first.")
        listing.add_argument("--user", metavar="EMAIL", help="Only this user's tokens.")
        revoke = actions.add_parser("revoke", help="Revoke one active token by its prefix.")
        revoke.add_argument("prefix", metavar="PREFIX",
                            help="The token's prefix as `list` shows it (pq_ and 8 characters), "
                                 "or enough of it (pq_ and at least 4) to match one active "
                                 "token.")

    def handle(self, *args, action, **options):
        if action == "issue":
            self._issue(options["user"], options["name"], options["expires_days"])
        elif action == "list":
            self._list(options["user"])
        else:
            self._revoke(options["prefix"])

    def _user(self, email: str):
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email address {email!r}.", returncode=2)
        return user

    def _issue(self, email: str, name: str, expires_days: int | None):
        if expires_days is not None and expires_days < 1:
            raise CommandError(f"--expires-days must be at least 1, not {expires_days}.",
                               returncode=2)
        user = self._user(email)
        expires_at = (timezone.now() + datetime.timedelta(days=expires_days)
                      if expires_days is not None else None)
        try:
            token, raw = api_token_issue(user=user, name=name, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages), returncode=2) from exc
        self.stdout.write(raw)
        self.stdout.write(
            f"Issued token {token.name!r} for {user.email}: prefix {token.prefix}, expires "
            f"{_when(token.expires_at, 'never')}{' UTC' if token.expires_at else ''}.\n"
            "Copy the token now: it is not stored and is not shown again. Send it as "
            "`Authorization: Bearer <token>`.")

    def _list(self, email: str | None):
        tokens = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
        if email is not None:
            tokens = tokens.filter(user=self._user(email))
        now = timezone.now()
        rows = [(t.prefix, t.name, t.user.email, _when(t.created_at), _when(t.expires_at, "never"),
                 _when(t.last_used_at, "never"), _state(t, now)) for t in tokens]
        if not rows:
            self.stdout.write("No tokens.")
            return
        header = ("PREFIX", "NAME", "USER", "CREATED (UTC)", "EXPIRES", "LAST USED", "STATE")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width)
                                        for cell, width in zip(row, widths, strict=True)).rstrip())

    def _revoke(self, prefix: str):
        prefix = prefix.strip()
        if len(prefix) < MIN_PREFIX or not prefix.startswith(TOKEN_PREFIX):
            raise CommandError(f"Give at least {MIN_PREFIX} characters of the prefix "
                               f"({TOKEN_PREFIX} and {MIN_PREFIX - len(TOKEN_PREFIX)} more), "
                               f"not {prefix!r}.", returncode=2)
        now = timezone.now()
        # startswith is case-insensitive on SQLite (LIKE): compare exactly here.
        candidates = [token for token in ApiToken.objects.select_related("user").filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
            prefix__startswith=prefix, revoked_at__isnull=True,
        ).order_by("prefix", "id") if token.prefix.startswith(prefix)]
        if not candidates:
            raise CommandError(f"No active token has a prefix starting with {prefix!r}.",
                               returncode=2)
        if len(candidates) > 1:
            shown = ", ".join(f"{t.prefix} ({t.name}, {t.user.email})" for t in candidates[:10])
            raise CommandError(
                f"{prefix!r} matches {len(candidates)} active tokens: {shown}. Give more of the "
                "prefix (two tokens with the same whole prefix: revoke them in the admin).",
                returncode=2)
        token = candidates[0]
        if not api_token_revoke(token):
            raise CommandError(f"{token.prefix} was revoked meanwhile.", returncode=2)
        self.stdout.write(f"Revoked {token.prefix} ({token.name!r}, {token.user.email}).")
