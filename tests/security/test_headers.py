"""Every page answers with a Content-Security-Policy that allows only our own origin, and /metrics
answers only its bearer token; both tried over HTTP against a live server on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.test import Client
from django.urls import reverse

from apps.accounts.models import ApiKey
from apps.inbox.models import Message

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "mailscore"
NONCE = re.compile(r"^'nonce-[A-Za-z0-9+/=]+'$")


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def policy(header: str | None) -> dict[str, set[str]]:
    assert header, "no Content-Security-Policy header"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = set(sources)
    return directives


def without_nonces(directives: dict[str, set[str]]) -> dict[str, set[str]]:
    return {
        name: {s for s in sources if not NONCE.match(s)} for name, sources in directives.items()
    }


def assert_own_origin_only(directives: dict[str, set[str]], where: str) -> None:
    assert directives["default-src"] == {"'self'"}, where
    for name in ("script-src", "style-src"):
        extra = {s for s in directives[name] if s != "'self'" and not NONCE.match(s)}
        assert not extra, (where, name, extra)
    assert directives["object-src"] == {"'none'"} and directives["frame-ancestors"] == {"'none'"}
    assert directives["base-uri"] == {"'none'"}, where
    for name, sources in directives.items():
        for source in sources:
            assert source in {"'self'", "'none'", "data:"} or NONCE.match(source), (
                where, name, source,
            )  # fmt: skip


@pytest.fixture
def pages(live_server, admin_user, transactional_db):
    """URL -> the request headers a real user of it sends."""
    signed_in = Client()
    signed_in.force_login(admin_user)
    session = {"Cookie": f"sessionid={signed_in.cookies['sessionid'].value}"}
    _, secret = ApiKey.issue("headers-test")
    workbench = reverse(f"admin:{Message._meta.app_label}_{Message._meta.model_name}_changelist")
    return {
        "/admin/login/": {},
        "/admin/": session,
        workbench: session,
        "/api/v1/docs": {},
        "/api/v1/schema": {},
        "/api/v1/messages": {"X-API-Key": secret},
        "/api/v1/no-such-endpoint": {"X-API-Key": secret},
        "/health": {},
        "/health/live": {},
    }


def test_every_page_allows_only_its_own_origin(live_server, pages):
    seen = {}
    for path, headers in pages.items():
        status, response_headers, body = fetch(live_server.url + path, headers)
        expected = {"/api/v1/no-such-endpoint": {404}, "/health": {200, 503}}.get(path, {200})
        assert status in expected, (path, status, body[:300])  # signed in, a valid key: the page
        directives = policy(response_headers["Content-Security-Policy"])
        assert_own_origin_only(directives, path)
        seen[path] = without_nonces(directives)
    # The review workbench sends its own policy; it says the same as everywhere else.
    assert len({repr(sorted(d.items())) for d in seen.values()}) == 1, seen


def test_the_docs_page_runs_only_scripts_carrying_its_nonce(live_server):
    status, headers, page = fetch(f"{live_server.url}/api/v1/docs")
    assert status == 200
    directives = policy(headers["Content-Security-Policy"])
    (script_nonce,) = [s for s in directives["script-src"] if NONCE.match(s)]
    nonce = script_nonce[len("'nonce-") : -1]
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", page)
    assert inline, "the docs page has its init script inline"
    for tag, attributes in inline:
        assert f'nonce="{nonce}"' in attributes, (tag, attributes)
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), "inline event handler"
    assert '"/api/v1/schema"' in page  # the init script still points Swagger UI at the schema
    # A second answer has a nonce of its own.
    _, again, _ = fetch(f"{live_server.url}/api/v1/docs")
    assert script_nonce not in again["Content-Security-Policy"]


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_without_a_configured_token_is_refused_even_from_loopback(live_server, settings):
    settings.MAILSCORE_METRICS_TOKEN = ""
    settings.MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN = False
    status, _, body = fetch(f"{live_server.url}/metrics")
    assert status == 403 and "MAILSCORE_METRICS_TOKEN" in body
    assert "mailscore_" not in body and "python_info" not in body


def test_metrics_answers_only_its_bearer_token(live_server, settings):
    settings.MAILSCORE_METRICS_TOKEN = "scrape-token-for-tests"
    url = f"{live_server.url}/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic c2NyYXBlLXRva2VuLWZvci10ZXN0cw=="},
        {"Authorization": "Bearer scrape-token-for-tests-and-more"},
        {"X-API-Key": "scrape-token-for-tests"},
    ):
        status, response_headers, body = fetch(url, headers)
        assert status == 401, headers
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
        assert "python_info" not in body
    status, _, body = fetch(url, {"Authorization": "Bearer scrape-token-for-tests"})
    assert status == 200 and "python_info" in body


def test_local_settings_let_loopback_scrape_and_production_does_not():
    """Only the local settings (one machine) serve /metrics to loopback without a token."""
    code = (
        "import django.conf as c; import mailscore.settings.{} as s; "
        "print(s.MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_SECRET_KEY="p" + os.urandom(32).hex(), DATABASE_URL="postgres://h/d",
               REDIS_URL="redis://127.0.0.1:1/0")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code.format("production")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.stdout.strip() == "False", proc.stderr
    from django.conf import settings

    assert settings.MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN is False  # the test settings too
    local = (ROOT / "mailscore" / "settings" / "local.py").read_text()
    assert "MAILSCORE_METRICS_LOOPBACK_WITHOUT_TOKEN = True" in local


def test_the_chart_scrapes_the_web_with_the_token_from_the_secret():
    helm = pytest.importorskip("helm_python")
    values = helm.values_from_yaml((ROOT / "deploy/helm/values-production.yaml").read_text())
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name="mailscore", namespace="mailscore")
    objects = [d for m in manifests.values() for d in yaml.safe_load_all(m) if d]
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    (web_endpoint,) = monitors["mailscore-web"]["spec"]["endpoints"]
    assert web_endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "mailscore", "key": "MAILSCORE_METRICS_TOKEN"},
    }
    web = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "mailscore-web"
    )
    (container,) = web["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MAILSCORE_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == (
        "MAILSCORE_METRICS_TOKEN"
    )
    # The workers' own exporters have no token: only Prometheus's namespace may reach them.
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    (rule,) = policies["mailscore-worker-metrics"]["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


# --- In a real browser ----------------------------------------------------------------------------


@pytest.fixture
def chromium():
    """Headless Chromium (Debian's, as tests/browser uses) recording the console, where the
    browser reports every Content-Security-Policy violation; skips where none can start."""
    from tests.browser.conftest import headless_chromium

    with headless_chromium(capabilities={"goog:loggingPrefs": {"browser": "ALL"}}) as driver:
        yield driver


def _violations(driver) -> list[str]:
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def test_the_docs_page_and_admin_work_under_the_policy(live_server, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(f"{live_server.url}/api/v1/docs")
    # Swagger UI's init script ran (it is inline, allowed by its nonce) and loaded the schema.
    title = WebDriverWait(chromium, 30).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .title"))
    )
    assert "mailscore API" in title.text
    WebDriverWait(chromium, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    )
    assert not _violations(chromium)
    chromium.get(f"{live_server.url}/admin/login/")
    assert chromium.find_element(By.ID, "id_username")
    assert not _violations(chromium)
    # The policy is really enforced: a script injected into the page is refused.
    chromium.execute_script(
        "const s = document.createElement('script');"
        "s.textContent = 'document.title = \"injected\"';"
        "document.head.appendChild(s);"
    )
    assert chromium.title != "injected"
    assert _violations(chromium)
