"""Sender checks against mail servers that tarpit, drop or greylist, through real workers: the
verify pool keeps working while tarpits hang, and a greylisted address is asked once per
attempt, never again by a redelivered task."""

from __future__ import annotations

import pytest
from django.conf import settings

from tests.reliability.system import (
    FINAL,
    NORMAL_SENDERS,
    STEPS,
    Database,
    MailStream,
    check_outcome,
    make_mail,
    wait_for,
    wait_until_final,
)

pytestmark = pytest.mark.reliability

MESSAGES = 150
TARPITTED = 12
# A tarpit holds a connection as long as the verifier waits for a greeting: here longer than the
# test, which lets the held connections go once it has seen the rest of the mail through.
HANGING_FOREVER = {
    "MAILSCORE_SMTP_CONNECT_TIMEOUT": "900",
    "MAILSCORE_SMTP_ADDRESS_BUDGET": "900",
}
# Mailboxes that exist on the greylisting server (not role accounts, which verify as risky).
GREYLISTED = ("alice@greylist.test", "bob@greylist.test", "carol@greylist.test")


@pytest.fixture(scope="module")
def system(start_module_system):
    return start_module_system(environment=HANGING_FOREVER)


def rows_by_header(database: Database, headers: list[str]) -> dict[str, tuple]:
    rows = database.query(
        "SELECT message_id_header, status, steps, sender_verdict, sender_result "
        "FROM inbox_message WHERE message_id_header = ANY(%s)",
        [headers],
    )
    return {row[0]: row for row in rows}


def test_smtp_tarpit(system, verification_farm, mail_sources):
    farm = verification_farm
    farm.reset()
    database = Database(system.database_url)
    tarpit_senders = [f"user{i}@tarpit.test" for i in range(TARPITTED)]
    tarpitted = make_mail(TARPITTED, mail_sources, tarpit_senders, tag="tarpit")
    first = MailStream(system, tarpitted, rate=50).start()
    first_answers = first.wait()
    tarpitted_ids = [m.message_id for m in tarpitted]

    def all_at_verification() -> bool:
        """Every tarpitted message past draft_reply (so no later mail shares a batch with
        them), and the verifier inside the tarpit."""
        rows = rows_by_header(database, tarpitted_ids).values()
        past_draft = len(rows) == TARPITTED and all("draft_reply" in (r[2] or {}) for r in rows)
        return past_draft and farm.tarpit.open_connections() > 0

    try:
        wait_for(all_at_verification, timeout=180, explain=lambda: (
            f"the tarpitted mail never reached the tarpit: {dict(database.status_counts())}, "
            f"{farm.tarpit.open_connections()} tarpit connections\n{system.report()}"))  # fmt: skip

        # While the tarpit holds the verifier, normal mail (and senders whose server drops the
        # connection at RCPT) keeps coming.
        senders = ["user@dropper.test" if i % 20 == 0 else NORMAL_SENDERS[i % len(NORMAL_SENDERS)]
                   for i in range(MESSAGES)]  # fmt: skip
        flowing = make_mail(MESSAGES, mail_sources, senders, tag="flowing")
        stream = MailStream(system, flowing, rate=15).start()
        answers = stream.wait()
        accepted = [a.mail.message_id for a in answers if a.accepted]
        took = wait_until_final(database, accepted, timeout=300, system=system)

        # Every other message came through while the tarpit still holds its connections and
        # its senders' messages wait for it, their other steps all done.
        held = farm.tarpit.open_connections()
        hanging = rows_by_header(database, tarpitted_ids)
        assert held > 0, "the tarpit let go of the verifier before the rest of the mail was done"
        assert all(row[1] not in FINAL for row in hanging.values()), (
            f"tarpitted messages finished while the tarpit held: {hanging}"
        )
        earlier_steps = set(STEPS) - {"verify_sender"}
        held_back = {h: sorted(earlier_steps - set(row[2] or {})) for h, row in hanging.items()}
        held_back = {h: steps for h, steps in held_back.items() if steps}
        assert not held_back, f"the tarpit held back other steps: {held_back}"
    finally:
        farm.tarpit.release()

    wait_until_final(database, tarpitted_ids, timeout=180, system=system)
    figures = check_outcome(system, first_answers + answers)
    verdicts = {h: row[3] for h, row in rows_by_header(database, tarpitted_ids).items()}
    assert "deliverable" not in verdicts.values(), verdicts
    dropped = rows_by_header(database, [m.message_id for m in flowing if "dropper" in m.sender])
    dropped_verdicts = {row[3] for row in dropped.values()}
    assert "deliverable" not in dropped_verdicts, dropped_verdicts
    assert farm.stats("mx.dropper.test").rcpts > 0, "the dropping server was never reached"
    print(f"\nnormal mail final {took:.0f}s after its last post while the tarpit held {held} "
          f"connections; tarpitted verdicts {set(verdicts.values())}; {figures}")  # fmt: skip


def test_greylist_visibility(system, verification_farm, mail_sources):
    from apps.verification.engine import later
    from apps.verification.steps import MAX_VERIFY_ATTEMPTS

    # Every countdown a greylist retry can get is shorter than the time after which Redis hands
    # an unacknowledged task to another worker (which would probe the address twice).
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    max_delay = settings.MAILSCORE_VERIFICATION["greylist_max_delay"]
    assert max_delay * later.JITTER < visibility
    countdowns = [later.retry_countdown(max_delay, attempt, max_delay)
                  for attempt in range(MAX_VERIFY_ATTEMPTS) for _ in range(200)]  # fmt: skip
    assert max_delay <= max(countdowns) <= max_delay * later.JITTER < visibility

    # Through the workers: each greylisted sender is probed once per attempt.
    farm = verification_farm
    farm.reset()
    positions = {25 + 50 * i: address for i, address in enumerate(GREYLISTED)}
    senders = [positions.get(i, NORMAL_SENDERS[i % len(NORMAL_SENDERS)]) for i in range(MESSAGES)]
    mails = make_mail(MESSAGES, mail_sources, senders, tag="greylist")
    stream = MailStream(system, mails, rate=15).start()
    answers = stream.wait()
    database = Database(system.database_url)
    accepted = [a.mail.message_id for a in answers if a.accepted]
    wait_until_final(database, accepted, timeout=300, system=system)
    figures = check_outcome(system, answers)

    greylisted = [m for m in mails if m.sender in GREYLISTED]
    rows = rows_by_header(database, [m.message_id for m in greylisted])
    probes = []
    for mail in greylisted:
        _, _, steps, verdict, _ = rows[mail.message_id]
        attempts = steps["verify_sender"]["attempts"]
        probes.append((mail.sender, attempts, farm.rcpts.addresses[mail.sender], verdict))
    assert all(attempts >= 2 for _, attempts, _, _ in probes), (
        f"a greylisted sender was not asked again: {probes}"
    )
    assert all(attempts == rcpts for _, attempts, rcpts, _ in probes), (
        f"RCPTs per address differ from the attempts recorded (address, attempts, RCPTs, "
        f"verdict): {probes}"
    )
    assert {verdict for *_, verdict in probes} == {"deliverable"}, probes
    print(f"\n(address, attempts, RCPTs, verdict): {probes}; {figures}")
