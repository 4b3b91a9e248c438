"""/metrics and /health of a running mailscore (web under gunicorn with two workers, a worker per
queue with its metrics exporter), read as Prometheus and Kubernetes read them, after real mail,
real verification against the farm and a real webhook delivery; then /health while the
system's own Redis and PostgreSQL are stopped and started again."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.core.metrics import QUEUES, STEPS
from tasks.queues import CeleryQueue
from tests.deploy.families import MAILSCORE_FAMILIES
from tests.reliability.system import (
    NORMAL_SENDERS,
    Database,
    MailStream,
    free_port,
    make_mail,
    manage,
    wait_for,
    wait_until_final,
)
from tests.webhooks.conftest import running_receiver

# A whole system of its own: with the other tests that start one (`make test` runs them beside
# the rest of the suite).
pytestmark = pytest.mark.slow

POOLS = ("triage", "generate", "verify", "webhooks", "maintenance")
PROCESSES = ("web", *POOLS)
MESSAGES = 10
LIVE_REQUESTS = 60
# Families read from the broker and the database at scrape: on the web's /metrics only.
SCRAPED = {
    "mailscore_queue_depth",
    "mailscore_queue_oldest_age_seconds",
    "mailscore_partitions_months_ahead",
    "mailscore_retention_last_run_timestamp_seconds",
}

# The web's /metrics answers only this bearer token (MAILSCORE_METRICS_TOKEN).
METRICS_TOKEN = "ops-test-metrics-token"
# Present from a worker's start, at zero until something fails.
RARE = {"mailscore_step_failures_total"}


def get(url: str, *, method: str = "GET", data: bytes | None = None,
        headers: dict | None = None) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(url: str) -> dict[str, list]:
    """family name -> its samples, parsed by Prometheus's own text parser."""
    # The web's /metrics asks for the token; the workers' exporters ignore the header.
    status, body = get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200, (url, status, body[:500])
    families = defaultdict(list)
    for family in text_string_to_metric_families(body.decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name].extend(family.samples)
    return families


def total(samples: list, suffix: str = "", **labels) -> float:
    return sum(
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="module")
def receiver():
    with running_receiver() as state:
        yield state


@pytest.fixture(scope="module")
def system(start_module_system):
    ports = {pool: free_port() for pool in POOLS}
    system = start_module_system(
        processes=PROCESSES,
        own_cluster=True,  # the health test stops its PostgreSQL
        per_process={
            "web": {"MAILSCORE_LOG_FORMAT": "json"},
            **{pool: {"MAILSCORE_METRICS_PORT": str(ports[pool]),
                      "MAILSCORE_METRICS_ADDRESS": "127.0.0.1",
                      # The maintenance worker keeps the default, text.
                      **({} if pool == "maintenance" else {"MAILSCORE_LOG_FORMAT": "json"})}
               for pool in POOLS},
        },
        environment={"MAILSCORE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                     "MAILSCORE_METRICS_TOKEN": METRICS_TOKEN},
    )  # fmt: skip
    system.metrics_ports = ports
    system.sent_mail = []
    return system


def test_queue_names_match_the_celery_queues():
    assert set(QUEUES) == {str(queue) for queue in CeleryQueue}


def test_every_family_has_real_values_from_web_and_workers(system, receiver, mail_sources):
    environment = system.environment()
    manage(environment, "shell", "-c", (
        "from apps.webhooks.models import WebhookEndpoint; "
        f"WebhookEndpoint.objects.create(url={receiver.url()!r}, events=['message.triaged'])"
    ))  # fmt: skip
    headers = {"X-API-Key": system.api_key, "Content-Type": "message/rfc822"}
    mails = make_mail(MESSAGES, mail_sources, NORMAL_SENDERS, tag="metrics")
    system.sent_mail.extend(mails)
    answers = MailStream(system, mails, rate=20).start().wait()
    accepted = [a.mail.message_id for a in answers if a.accepted]
    assert len(accepted) == MESSAGES, [a.status for a in answers]
    # The same message again, and something that is not mail.
    assert get(f"{system.url}/api/v1/messages", method="POST", data=mails[0].raw,
               headers=headers)[0] == 200  # fmt: skip
    assert get(f"{system.url}/api/v1/messages", method="POST", data=b"\x00 not mail",
               headers=headers)[0] == 422  # fmt: skip
    status, body = get(f"{system.url}/api/v1/validate", method="POST",
                       data=json.dumps({"email": "bob@normal.test"}).encode(),
                       headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    assert status == 200, body
    wait_until_final(Database(system.database_url), accepted, timeout=240, system=system)
    manage(environment, "shell", "-c",
           "from tasks.maintenance import apply_retention; apply_retention.delay()")  # fmt: skip
    wait_for(lambda: receiver.received, timeout=60, explain=lambda: "no webhook delivered")

    def web_families() -> dict[str, list]:
        return scrape(f"{system.url}/metrics")

    def worker_families() -> dict[str, list]:
        merged = defaultdict(list)
        for port in system.metrics_ports.values():
            for name, samples in scrape(f"http://127.0.0.1:{port}/metrics").items():
                merged[name].extend(samples)
        return merged

    web = wait_for(
        lambda: (found := web_families())["mailscore_retention_last_run_timestamp_seconds"][0]
        .value and found,
        timeout=60, explain=lambda: "apply_retention's run never showed",
    )  # fmt: skip
    workers = wait_for(
        lambda: total((found := worker_families())["mailscore_webhook_deliveries_total"]) and found,
        timeout=60, explain=lambda: "no webhook delivery counted",
    )  # fmt: skip

    # Ingest runs in the web; the chain, verification and webhooks in the workers.
    ingested = web["mailscore_messages_ingested_total"]
    assert total(ingested, source="api", outcome="accepted") == MESSAGES
    assert total(ingested, source="api", outcome="duplicate") == 1
    assert total(ingested, source="api", outcome="refused") == 1
    finished = workers["mailscore_messages_finished_total"]
    assert total(finished) == MESSAGES, finished
    assert total(finished, status="triaged") + total(finished, status="needs_review") > 0
    assert {s.labels["category"] for s in finished} - {"none"}
    durations = workers["mailscore_step_duration_seconds"]
    for step in STEPS:
        assert total(durations, "_count", step=step) >= 1, step
        assert total(durations, "_sum", step=step) > 0, step
    inference = workers["mailscore_inference_seconds"]
    for model in ("encoder", "classifier"):
        assert total(inference, "_count", model=model) >= 1, model
    assert total(workers["mailscore_inference_batch_size"], "_sum", model="encoder") >= MESSAGES
    verifications = workers["mailscore_verifications_total"]
    assert total(verifications, source="chain") == MESSAGES
    assert total(web["mailscore_verifications_total"], source="validate") == 1
    replies = {s.labels["code_class"]: s.value for s in workers["mailscore_smtp_replies_total"]}
    assert replies.get("2xx", 0) > 0 and replies.get("5xx", 0) > 0, replies
    assert total(workers["mailscore_webhook_deliveries_total"], event="message.triaged",
                 outcome="delivered") >= 1  # fmt: skip

    failures = workers["mailscore_step_failures_total"]
    assert {s.labels["step"] for s in failures} >= set(STEPS)
    assert {s.labels["queue"] for s in web["mailscore_queue_depth"]} == set(QUEUES)
    assert {s.labels["queue"] for s in web["mailscore_queue_oldest_age_seconds"]} == set(QUEUES)
    months = {s.labels["table"]: s.value for s in web["mailscore_partitions_months_ahead"]}
    assert months.keys() == {"inbox_message", "verification_result"}
    assert all(value >= 2 for value in months.values()), months

    # Every family of the contract, with the labels docs/operations.md gives it.
    for family, labels in MAILSCORE_FAMILIES.items():
        samples = web.get(family, []) + workers.get(family, [])
        assert samples, f"{family} missing"
        if family not in SCRAPED | RARE:
            assert any(s.value for s in samples), f"{family} has no non-zero value"
        for sample in samples:
            assert set(sample.labels) - {"le"} == labels, (family, sample.labels)


def test_one_scrape_sums_every_gunicorn_worker(system):
    before = scrape(f"{system.url}/metrics")
    view = "health-live"
    counted = "django_http_responses_total_by_status_view_method_total"
    start = total(before.get(counted, []), view=view)

    def live(_) -> int:
        return get(f"{system.url}/health/live")[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(live, range(LIVE_REQUESTS))) == {200}
    after = scrape(f"{system.url}/metrics")
    assert total(after[counted], view=view) - start == LIVE_REQUESTS
    # Both workers answered some of them: each left samples in the multiprocess directory.
    directory = Path(system.directory) / "prometheus" / "web"
    pids = {re.search(r"_(\d+)\.db$", f.name)[1] for f in directory.glob("counter_*.db")}
    assert len(pids) >= 2, sorted(p.name for p in directory.iterdir())


def test_health_reports_each_check_and_answers_head(system):
    status, body = get(f"{system.url}/health")
    health = json.loads(body)
    assert status == 200 and health["status"] in ("ok", "degraded"), health
    assert health["version"] and health["timestamp"].endswith("Z")
    assert set(health["checks"]) == {"database", "redis", "queue", "models"}
    for check in health["checks"].values():
        assert check["status"] and check["latency_ms"] >= 0
    assert set(health["checks"]["queue"]["depth"]) == set(QUEUES)
    pools = health["checks"]["models"]["pools"]
    assert any(pool.get("versions", {}).get("encoder") for pool in pools.values()), pools
    assert get(f"{system.url}/health", method="HEAD") == (200, b"")
    assert get(f"{system.url}/health/live", method="HEAD")[0] == 200


def _health(system) -> tuple[int, dict]:
    status, body = get(f"{system.url}/health")
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def test_health_is_503_while_redis_or_postgresql_is_down(system):
    system.redis.stop()
    try:
        status, health = _health(system)
        assert status == 503 and health["status"] == "down", health
        assert health["checks"]["redis"]["status"] == "down"
        assert health["checks"]["database"]["status"] == "ok"
        assert get(f"{system.url}/health/live")[0] == 200  # liveness does not look
    finally:
        system.redis.start()
    wait_for(lambda: _health(system)[0] == 200, timeout=30, explain=lambda: str(_health(system)))

    system.postgres.stop()
    try:
        status, health = _health(system)
        assert status == 503 and health["status"] == "down", health
        assert health["checks"]["database"]["status"] == "down"
        assert get(f"{system.url}/health/live")[0] == 200
    finally:
        system.postgres.start()
    wait_for(lambda: _health(system)[0] == 200, timeout=30, explain=lambda: str(_health(system)))


def test_logs_are_json_lines_with_task_and_message_ids_and_no_mail(system):
    if not system.sent_mail:
        pytest.skip("needs the mail of test_every_family_has_real_values_from_web_and_workers")
    addresses = {mail.sender for mail in system.sent_mail} | {"bob@normal.test"}
    step_lines = 0
    for name in ("web", "triage", "generate", "verify", "webhooks"):
        text = system.processes[name].log_text()
        # Celery prints its banner and Python its warnings straight to the stream; every line
        # that logging writes is a JSON object.
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert records, f"{name} wrote no JSON log line"
        assert not [line for line in text.splitlines() if re.match(r"^\d{4}-\d\d-\d\d ", line)]
        for record in records:
            assert {"time", "level", "logger", "message", "task_id", "message_id"} <= set(record)
            if record["logger"] == "mailscore.tasks" and ".pipeline." in record["message"]:
                if "dispatch" in record["message"]:
                    continue  # a dispatch claims messages; it is handed none
                step_lines += 1
                assert record["task_id"] and record["message_id"], record
        leaked = [a for a in addresses if a in text]
        assert not leaked, f"{name}'s log names {leaked}"
    assert step_lines >= 5
    text_log = system.processes["maintenance"].log_text()
    assert re.search(r"^\d{4}-\d\d-\d\d [\d:,]+ INFO ", text_log, re.MULTILINE)
    assert not [line for line in text_log.splitlines() if line.startswith("{")]
