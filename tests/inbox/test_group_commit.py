"""The web's group commit (apps/inbox/group_commit.py) on real PostgreSQL: stores that arrive while
another is in flight go together in one round trip and one commit, each still gets its own
answer, a refused store fails alone, copies still make one row, and the sender's connection
survives its backend being killed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from prometheus_client import REGISTRY

from apps.inbox import ingest
from apps.inbox.group_commit import GroupCommit
from apps.inbox.ingest import ingest_raw
from apps.inbox.models import Message, MessageStatus
from tests.pipeline.conftest import raw_message

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def groups() -> Iterator[None]:
    ingest.store_in_groups()
    try:
        yield
    finally:
        ingest.store_in_groups(False)  # sends what waits, then closes the sender's connection


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection]:
    """A connection of the test's own, outside Django, as another client of the server is."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as link:
        yield link


def group_sizes(mode: str = "grouped") -> tuple[float, float]:
    """How many groups were sent and how many stores they held, in this process so far."""
    labels = {"mode": mode}
    count = REGISTRY.get_sample_value("mailscore_ingest_store_group_size_count", labels) or 0.0
    total = REGISTRY.get_sample_value("mailscore_ingest_store_group_size_sum", labels) or 0.0
    return count, total


def in_thread(work: Callable[[], object], outcomes: dict, name: str) -> threading.Thread:
    def run() -> None:
        try:
            outcomes[name] = work()
        except BaseException as exc:  # noqa: BLE001 - the test reads what each caller got
            outcomes[name] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def held_first_group(link: psycopg.Connection, first: bytes, outcomes: dict) -> threading.Thread:
    """Store `first` while the test holds its advisory lock: the sender waits in that group, and
    whatever is stored meanwhile waits for the next one."""
    key = ingest.dedupe_key(ingest.parse_incoming(first), first)
    link.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    thread = in_thread(lambda: ingest_raw(first, source="api"), outcomes, "first")
    wait_until(lambda: _sender_waits_on_lock(link), "the first group never reached the lock")
    return thread


def _sender_waits_on_lock(link: psycopg.Connection) -> bool:
    return (
        link.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone()[0]
        == 1
    )


def wait_until(condition: Callable[[], bool], explain: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, explain
        time.sleep(0.01)


def waiting_stores() -> int:
    return len(ingest._groups._waiting)


def test_stores_that_arrive_while_one_is_in_flight_go_together(groups, other_connection):
    first = raw_message("first", message_id="<first@group.test>")
    others = [raw_message(f"next {n}", message_id=f"<next-{n}@group.test>") for n in range(5)]
    sent = [*others, others[2]]  # and a copy of one of them, in the same group
    count_before, total_before = group_sizes()
    outcomes: dict[str, object] = {}
    threads = [held_first_group(other_connection, first, outcomes)]
    for n, raw in enumerate(sent):
        threads.append(in_thread(lambda raw=raw: ingest_raw(raw, source="api"), outcomes, str(n)))
    wait_until(lambda: waiting_stores() == len(sent), f"{waiting_stores()} stores waiting")

    other_connection.execute("SELECT pg_advisory_unlock_all()")
    for thread in threads:
        thread.join(timeout=30)

    count, total = group_sizes()
    assert (count - count_before, total - total_before) == (2, 1 + len(sent))
    results = [outcomes[str(n)] for n in range(len(sent))]
    assert all(isinstance(result, ingest.IngestResult) for result in results), outcomes
    assert outcomes["first"].created
    assert [result.created for result in results] == [True] * 5 + [False]
    assert results[5].message.id == results[2].message.id
    stored = dict(Message.objects.values_list("message_id_header", "id"))
    assert len(stored) == 6
    assert {stored[f"<next-{n}@group.test>"] for n in range(5)} == {
        result.message.id for result in results
    }
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.QUEUED}


def test_a_store_refused_in_a_group_fails_alone(groups, other_connection):
    first = raw_message("first", message_id="<first-refused@group.test>")
    good = [raw_message(f"good {n}", message_id=f"<good-{n}@group.test>") for n in range(3)]
    outcomes: dict[str, object] = {}
    threads = [held_first_group(other_connection, first, outcomes)]
    for n, raw in enumerate(good):
        threads.append(in_thread(lambda raw=raw: ingest_raw(raw, source="api"), outcomes, str(n)))
    # A row PostgreSQL itself refuses (size must not be negative): it rolls back the whole group.
    threads.append(in_thread(lambda: ingest._store("f" * 64, received_at=datetime.now(UTC),
                                                   source="api", size=-1, raw=b"x",
                                                   status=MessageStatus.QUEUED),
                             outcomes, "refused"))  # fmt: skip
    wait_until(lambda: waiting_stores() == 4, f"{waiting_stores()} stores waiting")

    other_connection.execute("SELECT pg_advisory_unlock_all()")
    for thread in threads:
        thread.join(timeout=30)

    assert isinstance(outcomes["refused"], IntegrityError)
    assert "size_check" in str(outcomes["refused"])
    assert all(outcomes[str(n)].created for n in range(3)), outcomes
    assert Message.objects.count() == 4
    assert not Message.objects.filter(dedupe_key="f" * 64).exists()


def test_copies_racing_through_groups_and_alone_make_one_row(groups):
    # Each copy takes the time of its own ingest as received_at (the Date is implausible), so only
    # the advisory lock keeps them one row. Half go through the group commit; the other half store
    # inside a transaction of their own, as another process's would.
    future = (datetime.now(UTC) + timedelta(days=400)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    raw = (
        "From: dana@example.com\nSubject: racing\nMessage-ID: <race@group.test>\n"
        f"Date: {future}\n\nbody\n"
    ).encode()
    start = threading.Barrier(12)

    def grouped():
        start.wait()
        return ingest_raw(raw, source="api")

    def alone():
        start.wait()
        with transaction.atomic():
            return ingest_raw(raw, source="api")

    outcomes: dict[str, object] = {}
    threads = [in_thread(grouped if n % 2 else alone, outcomes, str(n)) for n in range(12)]
    for thread in threads:
        thread.join(timeout=30)

    results = list(outcomes.values())
    assert all(isinstance(result, ingest.IngestResult) for result in results), outcomes
    assert sum(result.created for result in results) == 1
    assert len({result.message.id for result in results}) == 1
    assert Message.objects.filter(message_id_header="<race@group.test>").count() == 1


def test_a_store_inside_a_transaction_joins_it_rather_than_a_group(groups):
    grouped_before, alone_before = group_sizes()[0], group_sizes("alone")[0]
    with pytest.raises(RuntimeError), transaction.atomic():
        ingest_raw(raw_message("rolled back", message_id="<atomic@group.test>"), source="api")
        raise RuntimeError("the caller's transaction fails")
    assert not Message.objects.exists()
    # Stored alone, by the caller's own connection.
    assert (group_sizes()[0], group_sizes("alone")[0]) == (grouped_before, alone_before + 1)


def test_the_sender_reconnects_after_its_backend_is_killed(groups, other_connection):
    ingest_raw(raw_message("before", message_id="<before@group.test>"), source="api")
    sender = other_connection.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE %s AND pid <> pg_backend_pid()", ["%pg_advisory_xact_lock%"]
    ).fetchall()  # fmt: skip
    assert len(sender) == 1, sender
    other_connection.execute("SELECT pg_terminate_backend(%s)", [sender[0][0]])
    wait_until(lambda: not other_connection.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [sender[0][0]]).fetchone(),
        "the backend did not end")  # fmt: skip

    # The idle connection holds the server's goodbye: the next group opens a new one.
    after = ingest_raw(raw_message("after", message_id="<after@group.test>"), source="api")
    assert after.created
    assert Message.objects.count() == 2


class _Stop(BaseException):
    """Stands for what ends a thread or greenlet from outside (GreenletExit, SystemExit)."""


# The stopped sender's thread ends with the exception, as a killed greenlet does.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_group_that_fails_outside_the_database_still_answers_and_the_sender_goes_on():
    def run_group(jobs):
        if "bug" in jobs:
            raise ValueError("a bug in the store")
        if "stop" in jobs:
            raise _Stop("the sender is stopped")
        return [f"stored {job}" for job in jobs]

    groups = GroupCommit(run_group, lambda job: run_group([job])[0])
    outcomes: dict[str, object] = {}
    for name in ("bug", "after bug", "stop", "after stop"):
        in_thread(lambda name=name: groups.run(name), outcomes, name).join(timeout=10)
        assert name in outcomes, f"the store of {name!r} was never answered"
    groups.close()

    assert isinstance(outcomes["bug"], ValueError)
    assert outcomes["after bug"] == "stored after bug"
    # The stopped sender answered its group first; the next store starts a new one.
    assert isinstance(outcomes["stop"], _Stop)
    assert outcomes["after stop"] == "stored after stop"
