"""The API fuzzed from its own OpenAPI schema (schemathesis): for generated requests, valid and
invalid, with and without a key, no answer is a server error and every answer is one the schema
describes. Deselect with -m 'not schema'."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from apps.inbox.direct_ingest import DirectIngest
from apps.inbox.models import MessageStatus
from tests.review.conftest import raw_message, store

pytestmark = [pytest.mark.schema, pytest.mark.django_db,
              pytest.mark.usefixtures("team_configuration")]  # fmt: skip

# Ingest takes raw RFC 822 bytes: sent as they are generated, like any binary body.
schemathesis.serializer.alias("message/rfc822", "application/octet-stream")
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance]
# Per operation, with a key and without: 800 requests for the messages API, about twenty
# seconds on two cores.
EXAMPLES = 80


@pytest.fixture
def wsgi_app():
    """The project's WSGI application (the direct ingest route in front of Django's handler, as
    mailscore/wsgi.py serves it) on the test database. Like Django's test client, it must not
    close the connection at the end of each request: the test's transaction lives on it."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield DirectIngest(get_wsgi_application())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.openapi.from_wsgi("/api/v1/schema", wsgi_app)


@pytest.fixture
def stored_job_id() -> str:
    """A job with one row checked and one not, for reads, results and cancelling to act on."""
    from apps.verification import jobs
    from apps.verification.engine.result import Reason, VerificationResult

    job = jobs.create_job(["alice@example.com", "=bob@example.org"], source="json")
    first = job.items.order_by("position").first()
    jobs.store_answers([(first.id, VerificationResult(first.email, "undeliverable",
                                                      Reason.NO_SUCH_DOMAIN, 0))])  # fmt: skip
    return str(job.id)


@pytest.fixture
def stored_message_id() -> int:
    """A message the chain has finished with, for feedback and re-runs to act on."""
    return store(raw_message("Where is my refund?"), status=MessageStatus.NEEDS_REVIEW).id


FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip
# Given a key, these query DNS and SMTP servers for generated domains: here they are fuzzed
# without a key only, and tests/verification drives them against its local DNS and SMTP farm.
NETWORK_BOUND = {"POST /api/v1/validate"}


# Hypothesis drives schemathesis's strategies directly: schemathesis's own pytest loader
# (from_fixture) does not run under pytest 9.2.
@pytest.mark.parametrize("with_key", [True, False], ids=["with a key", "without a key"])
def test_the_api_answers_as_its_schema_says(api_schema, api_key, stored_message_id,
                                            stored_job_id, with_key):  # fmt: skip
    headers = {"X-API-Key": api_key} if with_key else {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "GET /api/v1/messages", "POST /api/v1/messages", "GET /api/v1/messages/{id}",
        "POST /api/v1/messages/{id}/feedback", "POST /api/v1/messages/{id}/rerun",
        "POST /api/v1/validate", "POST /api/v1/jobs", "GET /api/v1/jobs", "GET /api/v1/jobs/{id}",
        "DELETE /api/v1/jobs/{id}", "GET /api/v1/jobs/{id}/results",
    }  # fmt: skip
    for operation in operations:
        if with_key and f"{operation.method.upper()} {operation.path}" in NETWORK_BOUND:
            continue
        # Valid requests and invalid ones (a wrong type, a missing field, a value out of range).
        cases = st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode))

        @FUZZ
        @given(case=cases)
        def answers_as_documented(case):
            # A generated id almost never exists; half of them point at a real message instead,
            # so that the fuzz reaches past the 404 into feedback and re-runs.
            message_id = (case.path_parameters or {}).get("id")
            if isinstance(message_id, int) and message_id % 2 == 0:
                case.path_parameters["id"] = stored_message_id
            # Likewise for jobs: a generated UUID that ends in an even digit means the stored job.
            if isinstance(message_id, str) and message_id[-1:] in "02468":
                case.path_parameters["id"] = stored_job_id
            case.call_and_validate(headers=headers, checks=CHECKS)

        answers_as_documented()
