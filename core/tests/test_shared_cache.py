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
def test_cluster_status_goes_through_a_redis_cache(settings, db):
    """django-q's cluster status (what the operations page lists as live clusters) is written
    to and read from the shared cache."""
    from django.core.cache import caches
    from django_q.brokers import get_broker

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/15",
                                   "KEY_PREFIX": f"pastq-test-{uuid.uuid4().hex}"}}
    broker = get_broker()
    broker.cache = caches["default"]
    key = f"django_q:pastq:cluster:{uuid.uuid4().hex}"
    broker.set_stat(key, "status-payload", 5)
    assert "status-payload" in (broker.get_stats("django_q:pastq:cluster:*") or [])
    caches["default"].clear()
