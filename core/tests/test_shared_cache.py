"""With REDIS_URL set, the cache (which django-q's cluster monitoring uses) is Redis."""

import importlib
import socket
import uuid

import pytest


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def test_redis_url_selects_the_redis_cache(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setenv("SECRET_KEY", "x")
    import pastq.settings as project_settings

    try:
        reloaded = importlib.reload(project_settings)
        assert reloaded.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
        assert reloaded.CACHES["default"]["LOCATION"] == "redis://127.0.0.1:6379/15"
    finally:
        monkeypatch.delenv("REDIS_URL")
        importlib.reload(project_settings)


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
@pytest.mark.django_db(transaction=True)
def test_a_cluster_started_with_redis_url_reports_its_status_in_redis(qcluster, settings):
    """A real qcluster with REDIS_URL: its status (what django-q's monitor reads) lands in
    Redis, where a process on another machine would find it."""
    from django.core.cache import caches
    from django_q.conf import Conf
    from django_q.status import Stat

    from core.tests.conftest import wait_for

    database = 15
    prefix = f"pastq-test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:6379/{database}",
                                   "KEY_PREFIX": prefix}}
    process = qcluster(REDIS_URL=f"redis://127.0.0.1:6379/{database}", REDIS_KEY_PREFIX=prefix)
    try:
        stats = wait_for(lambda: [s for s in Stat.get_all() if s.cluster_id], timeout=30,
                         what="the cluster's status in Redis")
        assert stats[0].pid == process.pid or stats[0].sentinel
        assert caches["default"].get(Conf.Q_STAT)  # django-q's list of cluster keys
    finally:
        caches["default"].clear()
