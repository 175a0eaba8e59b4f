"""System checks of the maintenance set-up, run by `manage.py check --deploy` (registered in
apps.py)."""

from django.conf import settings
from django.core.checks import Error, Warning

from maintenance.backups import crypto


def backups_encrypted(app_configs, **kwargs):
    """maintenance.W001: backups hold every student's data; unencrypted, whoever reads the
    backup directory or the off-site bucket reads them. maintenance.E001: a key that does not
    parse would fail the 04:00 backup."""
    try:
        key, _keys = crypto.keys_from_settings()
    except crypto.BackupKeyError as exc:
        return [Error(str(exc), hint="Generate one with: manage.py backup_db keygen",
                      id="maintenance.E001")]
    if key is None and not settings.DEBUG:
        return [Warning(
            "BACKUP_ENCRYPTION_KEY is not set: backups (and their off-site copies) are written "
            "unencrypted.",
            hint="Set BACKUP_ENCRYPTION_KEY to the output of manage.py backup_db keygen, and "
            "keep the key somewhere other than the backups (without it they cannot be "
            "restored).",
            id="maintenance.W001")]
    return []
