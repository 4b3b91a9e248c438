"""Fixtures shared by every test: real Redis (and PostgreSQL through pytest-django)."""

import pytest
import redis
from django.conf import settings


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = settings.MAILSCORE_VERIFICATION["cache_prefix"]
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    yield client
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()
