"""The web, ASGI and worker entry points never fall back to the local settings, production refuses
public or short keys, and `check --deploy` with the production settings has nothing to say.

Each test starts a fresh interpreter (or a real gunicorn on loopback) with the environment an
operator who forgot DJANGO_SETTINGS_MODULE would give it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.web_process import stop

ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
DEVELOPMENT_KEY = "insecure-local-development-key"


def _environment(**overrides: str) -> dict[str, str]:
    """This process's environment without any settings choice or key, plus overrides; the
    database and Redis are the test suite's own (embedded), so nothing fails for want of them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PYTEST_", "MAILSCORE_"))
        and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "DATABASE_URL": settings.DATABASE_URL,
            "REDIS_URL": settings.REDIS_URL,
            "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.update(overrides)
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_deploy_checks_are_clean_with_the_production_settings():
    env = _environment(
        DJANGO_SETTINGS_MODULE="mailscore.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="mailscore.example.org",
    )
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", ["mailscore.wsgi", "mailscore.asgi", "mailscore.celery"])
def test_entry_points_without_the_variable_choose_production_and_refuse_without_a_key(module):
    proc = _python(
        f"import {module}\nimport django.conf\ndjango.conf.settings.DEBUG", _environment()
    )
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY must be set in production" in proc.stderr, proc.stderr
    # The Celery app loads its settings lazily; what it would load is what the variable names.
    proc = _python(f"import os, {module}; print(os.environ['DJANGO_SETTINGS_MODULE'])",
                   _environment(DJANGO_SECRET_KEY=secrets.token_urlsafe(64)))  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1] == "mailscore.settings.production", proc.stderr


@pytest.mark.parametrize(("asked", "expected"), [(None, "False"), ("true", "True")])
def test_local_settings_have_debug_off_unless_asked(asked, expected, tmp_path):
    overrides = {"DJANGO_SETTINGS_MODULE": "mailscore.settings.local",
                 "MAILSCORE_DATA_DIR": str(tmp_path)}  # fmt: skip
    if asked is not None:
        overrides["DJANGO_DEBUG"] = asked
    proc = _python(
        "import django.conf; print(django.conf.settings.DEBUG)", _environment(**overrides)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (DEVELOPMENT_KEY, "is a development key that is public"),
        ("test-only-secret-key", "is a development key that is public"),
        ("django-insecure-" + "a1b2c3" * 10, "is a development key that is public"),
        (secrets.token_urlsafe(30)[:40], "has 40 characters"),
        ("x" * 80, "80 characters, 1 of them different"),
    ],
)
def test_production_refuses_public_or_weak_keys(key, message):
    env = _environment(
        DJANGO_SETTINGS_MODULE="mailscore.settings.production", DJANGO_SECRET_KEY=key
    )
    proc = _python("import mailscore.wsgi", env)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def _gunicorn(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN_DIR / "gunicorn"), "mailscore.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _get(url: str, headers: dict[str, str]) -> tuple[int, str] | None:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None


def test_gunicorn_without_the_variable_and_with_the_development_key_does_not_start():
    """The attack: gunicorn started the way the image starts it, minus the settings variable, with
    the key from the repository. It used to serve DEBUG pages listing the URLconf."""
    port = _free_port()
    server = _gunicorn(_environment(DJANGO_SECRET_KEY=DEVELOPMENT_KEY), port)
    try:
        output, _ = server.communicate(timeout=90)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode != 0
    assert "is a development key that is public" in output, output
    assert _get(f"http://127.0.0.1:{port}/no-such-page", {}) is None


def test_gunicorn_with_production_settings_serves_no_debug_page(tmp_path):
    port = _free_port()
    env = _environment(DJANGO_SECRET_KEY=secrets.token_urlsafe(64))  # still no settings variable
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    server = _gunicorn(env, port)
    try:
        answer = None
        deadline = time.monotonic() + 60
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.2)
            answer = _get(f"http://127.0.0.1:{port}/no-such-page",
                          {"X-Forwarded-Proto": "https"})  # fmt: skip
        assert answer is not None, "gunicorn did not answer"
        status, body = answer
        assert status == 404
        assert "URLconf" not in body and "DEBUG = True" not in body, body[:500]
        # Plain HTTP is sent to HTTPS, and HTTPS answers carry HSTS.
        redirected = urllib.request.build_opener(_NoRedirect).open
        with pytest.raises(urllib.error.HTTPError) as plain:
            redirected(f"http://127.0.0.1:{port}/admin/login/", timeout=5)
        assert plain.value.code == 301
        assert plain.value.headers["Location"].startswith("https://")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/health/live",
                                         headers={"X-Forwarded-Proto": "https"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as response:
            assert "max-age=31536000" in response.headers["Strict-Transport-Security"]
    finally:
        stop(server)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
