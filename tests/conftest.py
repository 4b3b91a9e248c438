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


@pytest.fixture
def team_configuration(db):
    """The categories and templates a migrated installation starts with. A transactional test
    empties every table when it ends, the migration's rows included: this puts them back."""
    from apps.triage.models import CategoryConfig, ConfigRevision, ReplyTemplate
    from apps.triage.seeding import seed

    seed(CategoryConfig, ReplyTemplate, ConfigRevision)
