"""Every project command explains itself."""

import pytest
from django.core.management import get_commands

from core.apps import PROJECT_APP_LABELS

PROJECT_COMMANDS = sorted(
    name for name, app in get_commands().items() if app in PROJECT_APP_LABELS)


def test_the_project_has_its_commands():
    assert {"init_db", "seed_data", "import_questions"} <= set(PROJECT_COMMANDS)


@pytest.mark.parametrize("name", PROJECT_COMMANDS)
def test_help(run_command, name):
    code, out, _ = run_command(name, "--help")
    assert code == 0
    assert f"manage.py {name}" in out
    # The description says what the command does, not only its flags.
    assert len(out.split("options:")[0]) > 150
