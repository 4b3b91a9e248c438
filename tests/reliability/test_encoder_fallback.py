"""The triage pool's encoder fails to load: that pool runs in fallback mode (docs/triage.md),
mail still flows, and /health says degraded with the reason."""

from __future__ import annotations

import pytest

from tests.reliability.system import (
    NORMAL_SENDERS,
    Database,
    MailStream,
    check_outcome,
    make_mail,
    wait_for,
    wait_until_final,
)

pytestmark = pytest.mark.reliability

MESSAGES = 120
MISSING_ENCODER = "/nonexistent/path"


def test_encoder_fallback(start_system, mail_sources):
    system = start_system(per_process={"triage": {"MAILSCORE_ENCODER_PATH": MISSING_ENCODER}})
    health: dict = {}

    def degraded() -> bool:
        status, body = system.health()
        health.update(body, http=status)
        return status == 200 and body.get("status") == "degraded"

    wait_for(degraded, timeout=120, explain=lambda: f"/health said {health}")
    reasons = " ".join(str(value) for value in health.get("checks", {}).values())
    assert MISSING_ENCODER in reasons or "encoder" in reasons.lower(), health

    mails = make_mail(MESSAGES, mail_sources, NORMAL_SENDERS, tag="fallback")
    answers = MailStream(system, mails, rate=15).start().wait()
    database = Database(system.database_url)
    accepted = [a.mail.message_id for a in answers if a.accepted]
    wait_until_final(database, accepted, timeout=300, system=system)
    figures = check_outcome(system, answers)

    decided = database.query(
        "SELECT category_result->>'decided_by', steps->'classify'->>'version' FROM inbox_message "
        "WHERE message_id_header = ANY(%s)",
        [accepted],
    )
    by = {}
    for decided_by, _ in decided:
        kind = (decided_by or "").split(":")[0]
        by[kind] = by.get(kind, 0) + 1
    assert "encoder" not in by, f"the pool without an encoder decided by it: {by}"
    assert by.get("fallback", 0) > 0, f"no message decided in fallback mode: {by}"
    versions = {version for _, version in decided}
    assert all("fallback" in (version or "") for version in versions), versions
    status, after = system.health()
    assert status == 200 and after.get("status") == "degraded", after
    print(f"\n/health: {health}\ndecided by: {by}; classify versions {versions}; {figures}")
