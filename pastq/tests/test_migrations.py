"""Every migration reverses, and the models match the migrations."""

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

# Ordered so that an app is unapplied before the apps it depends on.
APPS_WITH_MIGRATIONS = ["notifications", "core"]


@pytest.mark.django_db(transaction=True)
def test_every_app_migrates_to_zero_and_back():
    for app in APPS_WITH_MIGRATIONS:
        call_command("migrate", app, "zero", verbosity=0)
    tables = set(connection.introspection.table_names())
    assert not any(t.startswith(("core_", "notifications_")) for t in tables)
    call_command("migrate", verbosity=0)
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration(run_command):
    code, out, err = run_command("makemigrations", "--check", "--dry-run")
    assert code == 0, out + err
