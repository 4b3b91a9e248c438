"""Bulk verification jobs through the API: JSON and CSV in, a real verify worker against the
loopback farm, results in input order as JSON and CSV with the verdicts `manage.py verify` gives,
cancellation, and the errors a client can meet."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiKey
from apps.core import retention
from apps.verification import jobs
from apps.verification.models import MailEvidence, VerificationJob, VerificationJobItem
from apps.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from mailscore.celery import app
from tasks import maintenance
from tasks.queues import CeleryQueue

URL = "/api/v1/jobs"
CHECK_NAMES = ["syntax", "dns", "mx", "smtp", "catch_all", "disposable", "role", "free"]
# Every kind of answer the farm gives, with a duplicate (in another spelling) and a greylisting
# server that answers on a later attempt.
FARM_ADDRESSES = [
    "alice@normal.test",
    "nobody@normal.test",
    "bob@greylist.test",
    "someone@mailinator.com",
    "support@normal.test",
    "x@catchall.test",
    "alice@gmial.com",
    "not an address",
    "x@nullmx.test",
    "Alice@NORMAL.test",
    "carol@blocked.test",
    "fullbox@normal.test",
]


@pytest.fixture
def job_settings(farm_settings, redis_client):
    def clean() -> None:
        for pattern in (f"{jobs.LEASE_PREFIX}*", f"{jobs.QUEUED_PREFIX}*", "mailscore:verify:*"):
            for key in redis_client.scan_iter(pattern):
                redis_client.delete(key)
        redis_client.delete(str(CeleryQueue.VERIFY))

    clean()
    farm_settings.MAILSCORE_THROTTLE_VERIFY = "off"
    farm_settings.MAILSCORE_THROTTLE_READ = "off"
    yield farm_settings
    clean()


@pytest.fixture
def worker(job_settings):
    # Threads, as the verify pool runs (Procfile): a job's shards run side by side.
    with start_worker(app, queues=[str(CeleryQueue.VERIFY)], pool="threads", concurrency=4,
                      perform_ping_check=False, shutdown_timeout=30) as running:  # fmt: skip
        yield running


def client_for(*scopes: str) -> APIClient:
    _, key = ApiKey.issue(f"jobs-{'-'.join(scopes)}-{uuid.uuid4().hex[:6]}", scopes=list(scopes))
    return APIClient(HTTP_X_API_KEY=key)


def wait_until_over(api: APIClient, url: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(url).json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"the job did not finish: {body}"
        time.sleep(0.2)


def command_verdicts(addresses: list[str]) -> list[tuple[str, str]]:
    out = StringIO()
    call_command("verify", "--json", "--no-cache", "--greylist-wait", "30", *addresses, stdout=out)
    return [(row["verdict"], row["reason"]) for row in map(json.loads, out.getvalue().splitlines())]


# The worker closes the database connections it finds when it starts, the test's own among them:
# these tests run outside a wrapping transaction and make their keys once the worker is up.
@pytest.mark.django_db(transaction=True)
def test_a_json_job_gives_every_address_the_verdict_manage_py_verify_gives(worker, job_settings):
    endpoint = WebhookEndpoint.objects.create(
        url="https://receiver.example/hooks", events=[WebhookEvent.JOB_COMPLETED]
    )
    api = client_for("verify")
    response = api.post(URL, {"emails": FARM_ADDRESSES}, format="json")
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "queued"
    assert (created["total"], created["unique"]) == (12, 11)  # Alice@NORMAL.test is alice@normal
    assert response["Location"] == created["url"]

    job = wait_until_over(api, created["url"])
    assert job["status"] == "completed", job
    assert job["progress"] == {"done": 12, "total": 12, "percent": 100.0}
    assert sum(job["counts"].values()) == 12
    assert job["started_at"] and job["finished_at"]

    rows = api.get(created["results_url"]).json()
    assert rows["count"] == 12
    results = rows["results"]
    assert [row["email"] for row in results] == FARM_ADDRESSES
    assert [row["position"] for row in results] == list(range(12))
    expected = command_verdicts(FARM_ADDRESSES)
    assert [(row["verdict"], row["reason"]) for row in results] == expected
    assert expected[2] == ("deliverable", "ok")  # greylisted first, answered on a later attempt
    counted = {}
    for verdict, _ in expected:
        counted[verdict] = counted.get(verdict, 0) + 1
    assert {k: v for k, v in job["counts"].items() if v} == counted
    assert all(set(row["checks"]) == set(CHECK_NAMES) for row in results)

    # The whole list as CSV, in input order, the checks as columns.
    response = api.get(created["results_url"], {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0] == ["email", "verdict", "reason", "score", *CHECK_NAMES, "suggestion",
                        "checked_at"]  # fmt: skip
    assert [line[0] for line in table[1:]] == FARM_ADDRESSES
    assert [(line[1], line[2]) for line in table[1:]] == expected
    alice = dict(zip(table[0], table[1], strict=True))
    assert (alice["smtp"], alice["catch_all"], alice["disposable"]) == ("true", "false", "false")
    by_accept = api.get(created["results_url"], HTTP_ACCEPT="text/csv")
    assert list(csv.reader(io.StringIO(b"".join(by_accept.streaming_content).decode()))) == table

    # Paginated JSON, by page size.
    page = api.get(created["results_url"], {"page_size": 5, "page": 2}).json()
    assert [row["position"] for row in page["results"]] == [5, 6, 7, 8, 9]
    assert page["next"] and page["previous"]

    # job.completed was recorded for the endpoint, with the counts.
    delivery = WebhookDelivery.objects.get(endpoint=endpoint, event=WebhookEvent.JOB_COMPLETED)
    assert delivery.payload["data"]["job_id"] == created["id"]
    assert delivery.payload["data"]["status"] == "completed"
    assert delivery.payload["data"]["counts"] == job["counts"]
    assert delivery.payload["data"]["results_url"].endswith(f"/api/v1/jobs/{created['id']}/results")


@pytest.mark.django_db(transaction=True)
def test_a_csv_upload_is_read_by_its_email_column_and_checked(worker, job_settings):
    api = client_for("verify", "read")
    upload = (
        "Name;E-Mail;Team\r\nAlice;alice@normal.test;support\r\nNo one;nobody@normal.test;x\r\n"
    )
    upload += "Blank;;y\r\nBob;bob@normal.test;z\r\n"
    response = api.post(
        URL, {"file": SimpleUploadedFile("list.csv", upload.encode("utf-8-sig"), "text/csv")},
        format="multipart",
    )  # fmt: skip
    assert response.status_code == 202, response.content
    created = response.json()
    assert (created["total"], created["skipped_rows"], created["column"]) == (3, 1, "E-Mail")
    job = wait_until_over(api, created["url"])
    assert job["counts"]["deliverable"] == 2 and job["counts"]["undeliverable"] == 1
    table = list(csv.reader(io.StringIO(b"".join(
        api.get(created["results_url"], HTTP_ACCEPT="text/csv").streaming_content).decode())))  # fmt: skip
    assert [(line[0], line[1]) for line in table[1:]] == [
        ("alice@normal.test", "deliverable"),
        ("nobody@normal.test", "undeliverable"),
        ("bob@normal.test", "deliverable"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_job_stops_and_keeps_what_it_checked(worker, job_settings):
    # The tarpit answers nothing for as long as the verifier waits: the job is still running
    # when it is cancelled.
    job_settings.MAILSCORE_VERIFICATION = {
        **job_settings.MAILSCORE_VERIFICATION,
        "connect_timeout": 30.0,
        "address_budget": 60.0,
    }
    api = client_for("verify")
    emails = ["alice@normal.test"] + [f"user{i}@tarpit.test" for i in range(5)]
    created = api.post(URL, {"emails": emails}, format="json").json()
    deadline = time.monotonic() + 30
    while api.get(created["url"]).json()["progress"]["done"] < 1:
        assert time.monotonic() < deadline, "nothing was checked"
        time.sleep(0.1)
    response = api.delete(created["url"])
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    time.sleep(1.5)  # a run still going sees the cancellation at its next store
    job = api.get(created["url"]).json()
    assert job["status"] == "cancelled"
    assert job["progress"]["done"] == 1
    rows = api.get(created["results_url"]).json()["results"]
    assert rows[0]["verdict"] == "deliverable"
    assert any(row["verdict"] is None for row in rows[1:])
    again = api.delete(created["url"])
    assert again.status_code == 409
    assert "already cancelled" in again.json()["error"]["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status", "field", "says"),
    [
        ({"emails": []}, "json", 400, "emails", "no addresses"),
        ({"emails": "a@b.test"}, "json", 400, "emails", "list of strings"),
        ({"emails": ["a@b.test", 7]}, "json", 400, "emails[1]", "not a string"),
        ({"emails": ["a@b.test"], "name": "x"}, "json", 400, "name", "unknown field"),
        ({}, "json", 400, "emails", "required"),
        ({"emails": ["a\x00@b.test"]}, "json", 400, "emails[0]", "nul"),
        ({"emails": ["x" * 2000]}, "json", 400, "emails[0]", "2,000 characters"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(job_settings, body, content_type, status, field,
                                              says):  # fmt: skip
    response = client_for("verify").post(URL, body, format=content_type)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert field in error["fields"]
    assert says in error["message"].lower()
    # Whole-body problems say what is accepted; a bad cell says what is wrong with it.
    assert 'send {"emails"' in error["message"].lower() or field.startswith("emails[")
    assert not VerificationJob.objects.exists()


@pytest.mark.django_db
def test_csv_bodies_that_cannot_be_read_say_what_is_accepted(job_settings):
    api = client_for("verify")
    for data, says in [
        (b"\xff\xfe\x00a", "not utf-8"),
        (b"", "no addresses"),
        (b"email\r\n\r\n", "no addresses"),
        (b"email\r\na\x00b@x.test\r\n", "nul"),
    ]:
        response = api.generic("POST", URL, data, content_type="text/csv")
        assert response.status_code == 400, (data, response.content)
        assert says in response.json()["error"]["message"].lower()
        assert "utf-8 csv" in response.json()["error"]["message"].lower()


@pytest.mark.django_db
def test_a_csv_body_without_a_header_uses_its_first_column(job_settings):
    api = client_for("verify")
    response = api.generic(
        "POST", URL, b"alice@normal.test,Alice\nbob@normal.test,Bob\n", content_type="text/csv"
    )
    assert response.status_code == 202, response.content
    job = VerificationJob.objects.get(id=response.json()["id"])
    assert list(job.items.order_by("position").values_list("email", flat=True)) == [
        "alice@normal.test", "bob@normal.test"]  # fmt: skip
    assert response.json()["column"] is None


@pytest.mark.django_db
def test_too_many_addresses_or_bytes_is_a_413(job_settings):
    job_settings.MAILSCORE_JOB_MAX_ADDRESSES = 3
    api = client_for("verify")
    response = api.post(URL, {"emails": [f"u{i}@normal.test" for i in range(4)]}, format="json")
    assert response.status_code == 413
    assert "at most 3" in response.json()["error"]["message"]
    rows = "email\n" + "".join(f"u{i}@normal.test\n" for i in range(10))
    response = api.generic("POST", URL, rows.encode(), content_type="text/csv")
    assert response.status_code == 413
    job_settings.MAILSCORE_JOB_MAX_BYTES = 100
    response = api.post(URL, {"emails": ["a" * 200 + "@normal.test"]}, format="json")
    assert response.status_code == 413
    assert "MAILSCORE_JOB_MAX_BYTES" in response.json()["error"]["message"]
    assert not VerificationJob.objects.exists()


@pytest.mark.django_db
def test_an_unsupported_content_type_is_a_415(job_settings):
    response = client_for("verify").generic("POST", URL, b"<emails/>", content_type="text/xml")
    assert response.status_code == 415
    assert "text/csv" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_keys_and_scopes(job_settings):
    response = APIClient().post(URL, {"emails": ["a@normal.test"]}, format="json")
    assert response.status_code == 401
    reader = client_for("read")
    response = reader.post(URL, {"emails": ["a@normal.test"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["required_scope"] == "verify"
    created = client_for("verify").post(URL, {"emails": ["a@normal.test"]}, format="json").json()
    assert reader.get(created["url"]).status_code == 200
    assert reader.get(created["results_url"]).status_code == 200
    assert reader.get(URL).json()["results"][0]["id"] == created["id"]
    assert reader.delete(created["url"]).status_code == 403
    writer = client_for("write")
    response = writer.get(created["url"])
    assert response.status_code == 403
    assert response.json()["error"]["accepted_scopes"] == ["read", "verify"]


@pytest.mark.django_db
def test_unknown_jobs_are_404_in_the_api_error_shape(job_settings):
    api = client_for("verify", "read")
    for path in (f"{URL}/{uuid.uuid4()}", f"{URL}/{uuid.uuid4()}/results", f"{URL}/not-a-job",
                 f"{URL}/{uuid.uuid4()}/results?format=csv"):  # fmt: skip
        response = api.get(path)
        assert response.status_code == 404, (path, response.content)
        assert response.json()["error"]["code"] == "not_found"
    response = api.get(f"{URL}/{uuid.uuid4()}/results", HTTP_ACCEPT="text/csv")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.django_db
def test_csv_cells_that_a_spreadsheet_would_run_are_defused(job_settings):
    api = client_for("verify", "read")
    created = api.post(URL, {"emails": ['=HYPERLINK("http://x")@a.test']}, format="json").json()
    item = VerificationJobItem.objects.get(job_id=created["id"])
    jobs.store_answers([(item.id, _invalid_result(item.email))])
    text = b"".join(api.get(created["results_url"], {"format": "csv"}).streaming_content).decode()
    [_, row] = list(csv.reader(io.StringIO(text)))
    assert row[0] == "'" + item.email


def _invalid_result(address: str):
    from apps.verification.engine.result import Reason, VerificationResult

    return VerificationResult(address=address, verdict="undeliverable",
                              reason=Reason.INVALID_SYNTAX, score=0)  # fmt: skip


@pytest.mark.django_db
def test_the_admin_lists_jobs_with_their_progress_and_cancels_them(job_settings, admin_client):
    api = client_for("verify")
    created = api.post(URL, {"emails": ["a@normal.test", "b@normal.test"]}, format="json").json()
    page = admin_client.get("/admin/verification/verificationjob/")
    assert page.status_code == 200
    assert "0 / 2 (0%)" in page.content.decode()
    response = admin_client.post(
        "/admin/verification/verificationjob/",
        {"action": "cancel", "_selected_action": [created["id"]]},
        follow=True,
    )
    assert "Cancelled 1 job(s)." in response.content.decode()
    assert VerificationJob.objects.get(id=created["id"]).status == "cancelled"
    detail = admin_client.get(f"/admin/verification/verificationjob/{created['id']}/change/")
    assert detail.status_code == 200
    assert "pending 2" in detail.content.decode()


@pytest.mark.django_db(transaction=True)
def test_mail_evidence_decides_what_the_server_would_not_say(worker, job_settings):
    # blocked.test refuses to talk to us; carol sent DMARC-aligned mail yesterday, and mail to
    # x@catchall.test (a server that accepts anything) bounced for good.
    now = timezone.now()
    MailEvidence.objects.create(address="carol@blocked.test", kind="sent_aligned", message_id=1,
                                seen_at=now - timedelta(days=1), detail="dmarc=pass")  # fmt: skip
    MailEvidence.objects.create(address="x@catchall.test", kind="hard_bounce", message_id=2,
                                seen_at=now - timedelta(days=2), detail="5.1.1")  # fmt: skip
    api = client_for("verify")
    emails = ["carol@blocked.test", "x@catchall.test", "dave@blocked.test"]
    created = api.post(URL, {"emails": emails}, format="json").json()
    assert wait_until_over(api, created["url"])["status"] == "completed"
    rows = api.get(created["results_url"]).json()["results"]
    assert [(row["verdict"], row["reason"]) for row in rows] == [
        ("deliverable", "sent_authenticated_mail"),
        ("undeliverable", "hard_bounced"),
        ("unknown", "blocked"),
    ]
    assert rows[0]["evidence"][0]["kind"] == "sent_aligned"
    assert rows[2]["evidence"] == []


@pytest.mark.django_db
def test_jobs_older_than_the_retention_period_are_deleted_with_their_rows(job_settings):
    job_settings.MAILSCORE_RETENTION_DAYS = 90
    api = client_for("verify")
    old = api.post(URL, {"emails": ["a@normal.test"]}, format="json").json()["id"]
    new = api.post(URL, {"emails": ["b@normal.test"]}, format="json").json()["id"]
    VerificationJob.objects.filter(id=old).update(created_at=timezone.now() - timedelta(days=91))
    retention.forget()
    maintenance.apply_retention()
    assert list(VerificationJob.objects.values_list("id", flat=True)) == [uuid.UUID(new)]
    assert not VerificationJobItem.objects.filter(job_id=old).exists()
