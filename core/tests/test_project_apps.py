from pathlib import Path

from django.apps import apps

from core.apps import PROJECT_APP_LABELS

REPOSITORY = Path(__file__).resolve().parents[2]


def test_project_app_labels_name_every_app_of_this_repository():
    written_here = {config.label for config in apps.get_app_configs()
                    if Path(config.path).parent == REPOSITORY}
    assert set(PROJECT_APP_LABELS) == written_here


def test_init_db_checks_the_tables_of_those_apps():
    from core.management.commands import init_db

    assert init_db.PROJECT_APP_LABELS is PROJECT_APP_LABELS
