"""The development secret key file (var/secret_key), and rotating SECRET_KEY."""

import os
import secrets
import stat
import threading
from pathlib import Path

import pytest

from pastq import settings as project_settings


@pytest.fixture
def var_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(project_settings, "VAR_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def permissive_umask():
    """umask 0: a file is created with exactly the mode its creator asks for."""
    saved = os.umask(0)
    try:
        yield
    finally:
        os.umask(saved)


def test_the_key_file_is_private_from_the_moment_it_exists(var_dir, permissive_umask,
                                                           monkeypatch):
    # Made private only by a later chmod, the key would be world-readable in between.
    def chmod(*args, **kwargs):
        raise AssertionError("the key file was made private only after it was created")

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(Path, "chmod", chmod)

    key = project_settings._development_secret_key()

    path = var_dir / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 50
    assert project_settings._development_secret_key() == key  # generated once, then reused


def test_a_process_that_loses_the_race_reads_the_winners_key(var_dir):
    # The winner has created the file (O_EXCL) but not written its key yet.
    path = var_dir / "secret_key"
    path.touch(mode=0o600)
    winners_key = secrets.token_urlsafe(50)
    writer = threading.Timer(0.2, lambda: path.write_text(winners_key + "\n"))
    writer.start()
    try:
        assert project_settings._development_secret_key() == winners_key
    finally:
        writer.join()


def test_processes_starting_at_once_all_get_the_same_key(var_dir):
    starters = 16
    barrier = threading.Barrier(starters)
    keys = []

    def start():
        barrier.wait()
        keys.append(project_settings._development_secret_key())

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(keys) == starters
    assert set(keys) == {(var_dir / "secret_key").read_text().strip()}


def test_secret_key_fallbacks_come_from_the_environment(run_python):
    old, older, new = (secrets.token_urlsafe(50) for _ in range(3))
    code = f"""
import json
from django.conf import settings
from django.core import signing
signed_by_old = signing.Signer(key={old!r}).sign("session")
signed_by_stranger = signing.Signer(key="not-a-key-of-ours-" * 4).sign("session")
try:
    signing.Signer().unsign(signed_by_stranger)
    stranger = "accepted"
except signing.BadSignature:
    stranger = "rejected"
print(json.dumps({{"fallbacks": settings.SECRET_KEY_FALLBACKS,
                   "old": signing.Signer().unsign(signed_by_old), "stranger": stranger}}))
"""
    result = run_python(code, SECRET_KEY=new, SECRET_KEY_FALLBACKS=f"{old},{older}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f'{{"fallbacks": ["{old}", "{older}"], "old": "session", "stranger": "rejected"}}')


def test_a_secret_key_starting_with_a_dollar_is_taken_as_it_is(read_settings):
    # django-environ would read "$abc" as "the value of the variable abc".
    key = "$" + secrets.token_urlsafe(50)
    assert read_settings("SECRET_KEY", SECRET_KEY=key) == {"SECRET_KEY": key}
