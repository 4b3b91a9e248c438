"""The project skeleton: real PostgreSQL and Redis, complete migrations, settings and Celery."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from mailscore.celery import app

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.django_db
def test_database_is_real_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("select version()")
        assert cursor.fetchone()[0].startswith("PostgreSQL")


@pytest.mark.django_db
def test_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


def test_redis_is_real():
    client = redis.Redis.from_url(settings.REDIS_URL)
    assert client.ping()
    assert client.info("server")["redis_version"]


def test_celery_reads_django_settings():
    assert app.conf.broker_url == settings.REDIS_URL
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is True
    assert app.conf.worker_send_task_events is True


def test_production_settings_refuse_to_start_without_secrets():
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["DJANGO_SETTINGS_MODULE"] = "mailscore.settings.production"
    env.pop("DJANGO_SECRET_KEY", None)
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode != 0
    assert b"DJANGO_SECRET_KEY must be set in production" in proc.stderr


def test_production_settings_pass_the_deploy_checks_that_do_not_need_tls():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailscore.settings.production",
        "DJANGO_SECRET_KEY": "a-long-random-production-key-" + "x" * 40,
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
