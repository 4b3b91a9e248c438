"""Store incoming mail exactly once and hand it to the triage chain.

Every way in (API, files, IMAP) ends here. A message is identified by its Message-ID (or, without
one, by its bytes); the same message ingested twice gives back the first row. The chain is asked
for only after the row is committed, so a worker never looks for a message it cannot see. Input
that is not mail gets a row too: failed at "ingest" with the reason, and never queued.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.core import metrics
from apps.core.retention import retention_days
from apps.inbox.engine import (
    Envelope,
    MessageTooLarge,
    ParsedMessage,
    ParseLimits,
    UnparseableMessage,
    bare_message_id,
    parse_envelope,
    parse_message,
)
from apps.inbox.engine.mailbox import iter_messages, looks_like_message
from apps.inbox.engine.stored import parsed_from_json
from apps.inbox.group_commit import GroupCommit
from apps.inbox.models import RERUNNABLE, Message, MessageSource, MessageStatus
from apps.inbox.signals import messages_queued

logger = logging.getLogger(__name__)

# A Date this far ahead of our clock is the sender's clock, not when the message arrived.
FUTURE_TOLERANCE = timedelta(hours=1)
# The failed_step of input refused at ingest: it is not mail, so the chain never sees it.
INGEST_STEP = "ingest"


class InvalidMessage(ValueError):
    """Input that is not an RFC 822 message."""


def refused_at_ingest(message: Message) -> bool:
    """Whether the row stands for input that was not accepted as mail."""
    return message.status == MessageStatus.FAILED and message.failed_step == INGEST_STEP


@dataclass(frozen=True)
class IngestResult:
    message: Message
    created: bool

    @property
    def refused(self) -> bool:
        return refused_at_ingest(self.message)


def parse_limits() -> ParseLimits:
    """The MIME parser's limits, from the settings."""
    return ParseLimits(
        max_mime_depth=settings.MAILSCORE_MAX_MIME_DEPTH,
        max_mime_parts=settings.MAILSCORE_MAX_MIME_PARTS,
        max_header_bytes=settings.MAILSCORE_MAX_HEADER_BYTES,
        max_decoded_bytes=settings.MAILSCORE_MAX_DECODED_BYTES,
    )


def parsed_of_stored(message: Message) -> ParsedMessage:
    """A stored message's parsed form: as the chain kept it, or parsed again from its bytes
    within the parser's limits (rows stored before the parsed form was kept, or not triaged
    yet). Raises UnparseableMessage, saying why, where neither can be had."""
    parsed = parsed_from_json(message.parsed)
    if parsed is not None:
        return parsed
    raw = bytes(message.raw or b"")
    if not raw:
        raise UnparseableMessage("The message's bytes were not kept.")
    return parse_message(raw, max_bytes=len(raw), limits=parse_limits())


def _bytes_key(raw: bytes) -> str:
    return hashlib.sha256(b"raw:" + raw).hexdigest()


def dedupe_key(parsed: Envelope, raw: bytes) -> str:
    message_id = bare_message_id(parsed.message_id)
    if message_id:
        return hashlib.sha256(b"mid:" + message_id.encode("utf-8", "replace")).hexdigest()
    return _bytes_key(raw)


def received_at_for(parsed: Envelope, now: datetime) -> datetime:
    """The message's own Date where it is plausible, so that the same message ingested again
    maps to the same partition and idempotency key; otherwise the time of ingest.

    Plausible means inside the retention period and not ahead of our clock: older mail would
    land in a partition that retention has dropped or is about to."""
    date = parsed.date.astimezone(UTC) if parsed.date else None
    oldest = now - timedelta(days=retention_days())
    if date is not None and oldest <= date <= now + FUTURE_TOLERANCE:
        return date.replace(microsecond=0)
    return now


def parse_incoming(raw: bytes) -> Envelope:
    limit = settings.MAILSCORE_MAX_MESSAGE_BYTES
    if len(raw) > limit:
        raise MessageTooLarge(len(raw), limit)
    if not raw.strip():
        raise InvalidMessage("The message is empty; send an RFC 822 message (headers, a blank "
                             "line, then the body).")  # fmt: skip
    if not looks_like_message(raw[:4096]):
        raise InvalidMessage(
            "This is not an RFC 822 message: it must start with header lines such as "
            "'From: a@example.com' and 'Subject: ...', then a blank line and the body."
        )
    # Only the envelope: the body is decoded by the chain's first step, off the request path.
    return parse_envelope(raw, max_bytes=limit, limits=parse_limits())


def ingest_raw(
    raw: bytes, *, source: str, source_detail: str = "", now: datetime | None = None
) -> IngestResult:
    """Store one message (or find it already stored) and queue it for the chain. Input that is
    not a message is stored as a failed row with the reason instead (result.refused).

    Raises MessageTooLarge, which says the limit, and stores nothing: whether an oversized
    input gets a row is the caller's choice (record_refused), as an API client is told at once
    and a file has no one to tell."""
    now = now or timezone.now()
    try:
        parsed = parse_incoming(raw)
    except MessageTooLarge:
        raise
    except (InvalidMessage, UnparseableMessage) as exc:
        return record_refused(raw, str(exc), source=source, source_detail=source_detail, now=now)
    return _store(
        dedupe_key(parsed, raw),
        received_at=received_at_for(parsed, now),
        source=source,
        source_detail=source_detail[:500],
        message_id_header=(parsed.message_id or "")[:998],
        from_address=(parsed.from_address or "")[:320],
        from_name=parsed.from_name[:500],
        subject=parsed.subject,
        # In UTC: senders write offsets PostgreSQL refuses (beyond ±15:59).
        sent_at=parsed.date.astimezone(UTC) if parsed.date else None,
        size=len(raw),
        raw=raw,
        status=MessageStatus.QUEUED,
    )


def record_refused(
    raw: bytes,
    reason: str,
    *,
    source: str,
    source_detail: str = "",
    now: datetime | None = None,
    keep_raw: bool = True,
) -> IngestResult:
    """Store input that was not accepted as mail: a failed row with the reason, keyed on the
    bytes as a message without Message-ID is, so the same input again finds the same row. The
    bytes are kept for a person to look at, except an oversized input's (keep_raw=False)."""
    return _store(
        _bytes_key(raw),
        received_at=now or timezone.now(),
        source=source,
        source_detail=source_detail[:500],
        size=len(raw),
        raw=raw if keep_raw else b"",
        status=MessageStatus.FAILED,
        failed_step=INGEST_STEP,
        failure_reason=reason[:2000],
    )


# One round trip, as one transaction (several statements in one simple query run as one, and
# inside an open transaction they join it): the advisory lock serialises concurrent ingests of
# the same message, whatever received_at each derives (the unique (dedupe_key, received_at)
# constraint alone cannot see across partitions); the store, which takes its snapshot after the
# lock is held, returns the row stored before or inserts this one.
LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
# The store is prepared on each database connection once (PREPARE) and run by name: PostgreSQL
# then keeps one plan for every key, where a statement sent as text is planned on every store,
# and planning the look-up across every month's partition was more than half of PostgreSQL's
# work per message (docs/benchmarks.md). The look-up reads each partition's dedupe index and
# sorts the little it finds (OFFSET 0 keeps it so): a plan for every key that read rows in id
# order instead would go through a whole partition for a key stored in none.
STORE_SQL = """
WITH found AS (
    SELECT {returned} FROM (
        SELECT {returned} FROM {table} WHERE dedupe_key = {key} OFFSET 0
    ) AS stored ORDER BY id LIMIT 1
), added AS (
    INSERT INTO {table} ({inserted}) SELECT {values} WHERE NOT EXISTS (SELECT FROM found)
    RETURNING {returned}
)
SELECT false, {returned} FROM found UNION ALL SELECT true, {returned} FROM added
"""


# What the store statement returns of a row: what callers of ingest_raw read (the id for the
# answer, the state and reason of a refused input, the partition). Other fields of a row found
# stored before load when first read, as the ORM's deferred fields do.
RETURNED = ("id", "received_at", "status", "failed_step", "failure_reason")


@dataclass(frozen=True)
class _Statements:
    store: str  # a job's lock and store, with %s for (key, key, *values)
    prepare: str  # what prepares the store on a connection; empty where it is sent as text
    inserted: list  # the fields the store inserts, in the order of its values


# The database connections (psycopg's) on which the store is prepared; one that closes leaves.
_prepared_on: weakref.WeakSet = weakref.WeakSet()


@lru_cache(maxsize=2)
def _statements(prepared: bool) -> _Statements:
    """The store's statements, to be prepared and run by name or to be sent as text."""
    quote = connection.ops.quote_name
    inserted = [f for f in Message._meta.concrete_fields if not f.primary_key]
    count = len(inserted) + 1  # the key, then each inserted value
    store = STORE_SQL.format(
        table=quote(Message._meta.db_table),
        inserted=", ".join(quote(f.column) for f in inserted),
        key="$1" if prepared else "%s",
        values=", ".join(f"${n}" for n in range(2, count + 1)) if prepared else
        ", ".join(["%s"] * (count - 1)),
        returned=", ".join(quote(Message._meta.get_field(name).column) for name in RETURNED),
    ).strip()  # fmt: skip
    if not prepared:
        return _Statements(f"{LOCK_SQL};\n{store}", "", inserted)
    # Named by its text's digest: a process whose model has other fields (one started after a
    # migration) prepares a statement of its own rather than running an older one.
    name = "mailscore_store_" + hashlib.sha256(store.encode()).hexdigest()[:16]
    execute = f"EXECUTE {name}({', '.join(['%s'] * count)})"
    return _Statements(f"{LOCK_SQL};\n{execute}", f"PREPARE {name} AS {store}", inserted)


@lru_cache(maxsize=1)
def _default_values() -> dict[str, object]:
    """The database value of each inserted field that a row leaves at its default (the results,
    the review, the lease): the same for every row, so prepared once rather than per message. A
    field set when saved (auto_now) or whose default is made anew for each row is prepared with
    the row."""
    blank = Message()
    return {
        f.attname: f.get_db_prep_save(f.pre_save(blank, add=True), connection)
        for f in _statements(True).inserted
        if not getattr(f, "auto_now", False)
        and not getattr(f, "auto_now_add", False)
        and (not f.has_default() or not callable(f.default) or f.default in (dict, list))
    }


def _store(key: str, **row) -> IngestResult:
    """Insert the row for key, or find the one stored before. A queued row is announced once
    its transaction commits; a refused one is never handed to the chain."""
    message = Message(dedupe_key=key, parsed={}, **row)
    defaults = _default_values()
    values = [
        defaults[f.attname]
        if f.attname in defaults and f.attname not in row and f.attname != "dedupe_key"
        else f.get_db_prep_save(f.pre_save(message, add=True), connection)
        for f in _statements(True).inserted
    ]
    job = (key, values)
    if _groups is not None and not connection.in_atomic_block:
        created, *stored = _groups.run(job)
    else:
        # Inside the caller's transaction the store must join it, so it cannot go with a group.
        created, *stored = _store_one(job)
    if not created:
        metrics.count_ingested(row["source"], "duplicate")
        return IngestResult(Message.from_db(connection.alias, RETURNED, stored), created=False)
    # As Model.save leaves an instance it inserted.
    message.id = stored[0]
    message._state.adding, message._state.db = False, connection.alias
    if message.status != MessageStatus.QUEUED:
        metrics.count_ingested(row["source"], "refused")
        return IngestResult(message, created=True)
    # At once outside a transaction (the row is committed), else when the caller's commits.
    transaction.on_commit(announce_queued)
    metrics.count_ingested(row["source"], "accepted")
    return IngestResult(message, created=True)


def _store_one(job: tuple[str, list]) -> tuple:
    return _store_group([job], mode="alone")[0]


def _store_group(jobs: Sequence[tuple[str, list]], mode: str = "grouped") -> list[tuple]:
    """Each job's (created, *RETURNED) in one round trip and one transaction. The advisory locks
    are taken in key order, as every group takes them, so two groups never wait for each other
    in a circle; a message sent twice in one group is found by its second statement, which sees
    the first one's row."""
    global _store_as_text
    prepared = settings.MAILSCORE_PREPARED_STORE and not _store_as_text
    try:
        outcomes = _send_group(jobs, _statements(prepared))
    except DatabaseError as exc:
        missing = getattr(exc.__cause__, "sqlstate", None) == MISSING_STATEMENT
        if not (prepared and missing) or connection.in_atomic_block:
            raise  # inside the caller's transaction, which the error has ended
        # The server connection forgot what this one prepared: a pooler shares server
        # connections between clients (PgBouncer in transaction mode) or resets them. The group
        # stored nothing (its one query is one transaction); it goes again as text, as every
        # store of this process from now on.
        _store_as_text = True
        logger.warning(
            "The store's prepared statement was missing on the database connection (a pooler "
            "in transaction mode?); this process sends it as text from now on. Set "
            "MAILSCORE_PREPARED_STORE=off where server connections are shared."
        )
        outcomes = _send_group(jobs, _statements(False))
    metrics.observe_store_group(mode, len(jobs))
    return outcomes


# SQLSTATE invalid_sql_statement_name: EXECUTE of a statement the session does not hold.
MISSING_STATEMENT = "26000"
# Set once a prepared store went missing (see _store_group).
_store_as_text = False


def _send_group(jobs: Sequence[tuple[str, list]], sql: _Statements) -> list[tuple]:
    order = sorted(range(len(jobs)), key=lambda index: jobs[index][0])
    outcomes: list[tuple] = [()] * len(jobs)
    with connection.cursor() as cursor:
        if sql.prepare and connection.connection not in _prepared_on:
            cursor.execute(sql.prepare)  # kept by the session, whatever becomes of a transaction
            _prepared_on.add(connection.connection)
        # Each job's statements merged with its values on their own, then sent as one query:
        # psycopg keeps what it parsed of a query up to 4 KB and 50 values, as one job's is, and
        # parses a larger one (the whole group's) again on every call.
        statements = [cursor.mogrify(sql.store, (jobs[i][0], jobs[i][0], *jobs[i][1]))
                      for i in order]  # fmt: skip
        cursor.execute(";\n".join(statements))
        for index in order:
            cursor.nextset()  # past the lock's result
            outcomes[index] = cursor.fetchone()
            cursor.nextset()
    return outcomes


# Set in a web worker (mailscore/gunicorn.conf.py), where requests store at the same time; other
# processes store one message at a time and gain nothing from it.
_groups: GroupCommit | None = None


def store_in_groups(enabled: bool = True) -> None:
    """Send this process's stores in groups (see apps/inbox/group_commit.py), or alone again."""
    global _groups
    if _groups is not None:
        _groups.close()
    _groups = GroupCommit(_store_group, _store_one) if enabled else None


@dataclass
class BatchReport:
    message_ids: list[int] = field(default_factory=list)  # every row, refused ones included
    stored: int = 0
    duplicates: int = 0
    refused: int = 0  # inputs kept as failed rows: not mail, or over the size limit
    errors: int = 0  # inputs not ingested: the refused ones and those that could not be read


def ingest_paths(paths: list, *, on_error: Callable[[str], None]) -> BatchReport:
    """Ingest every message in .eml files, mbox files, maildirs and folders. A file that is not
    mail, or is over the size limit, gets a failed row with the reason; one that cannot be read
    has no bytes to keep and is only reported. Each is reported through on_error, and the rest
    go on."""
    report = BatchReport()
    for item in iter_messages(paths, keep_non_messages=True):
        if item.error:
            report.errors += 1
            on_error(item.error)
            continue
        try:
            result = ingest_raw(item.raw, source=MessageSource.FILE, source_detail=item.source)
        except MessageTooLarge as exc:
            result = record_refused(item.raw, str(exc), source=MessageSource.FILE,
                                    source_detail=item.source, keep_raw=False)  # fmt: skip
        report.message_ids.append(result.message.id)
        if result.refused:
            report.refused += 1
            report.errors += 1
            on_error(f"{item.source}: {result.message.failure_reason} "
                     f"(kept as failed message {result.message.id})")  # fmt: skip
            continue
        report.stored += result.created
        report.duplicates += not result.created
    return report


def announce_queued() -> None:
    """Tell the chain there is work: at once, or, within MAILSCORE_ANNOUNCE_SECONDS of this
    process's last announcement, once at the end of that interval for every commit made in it
    (each announcement is a round trip to Redis, and dispatch claims whatever is queued when it
    runs, so one stands for all the commits before it)."""
    _announcements.request()


class _Announcements:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._timer: threading.Timer | None = None

    def reset(self) -> None:
        # In a forked child: the parent's timer is not running here.
        self.__init__()

    def request(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # the one waiting fires after this commit
            now = time.monotonic()
            wait = self._last + settings.MAILSCORE_ANNOUNCE_SECONDS - now
            if wait > 0:
                self._timer = threading.Timer(wait, self._fire)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = now
        _announce()

    def _fire(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        _announce()


_announcements = _Announcements()
os.register_at_fork(after_in_child=_announcements.reset)


def _announce() -> None:
    """The committed row is what counts: a receiver that fails (the broker is down) is logged,
    and the sweep hands the message to the chain later."""
    for receiver, outcome in messages_queued.send_robust(sender=Message):
        if isinstance(outcome, Exception):
            logger.warning("Queued messages wait for the sweep: %s failed: %s",
                           getattr(receiver, "__name__", receiver), outcome)  # fmt: skip


def rerun(message_ids: list[int]) -> tuple[list[int], list[int]]:
    """Queue finished or failed messages for a fresh run of the chain. Returns the ids queued
    and the ids left alone: the chain is still working on them, or they were refused at ingest
    (refused_at_ingest), which no run of the chain can change."""
    with transaction.atomic():
        ready = list(
            Message.objects.select_for_update()
            .filter(id__in=message_ids, status__in=RERUNNABLE)
            .exclude(failed_step=INGEST_STEP)
            .values_list("id", flat=True)
        )
        Message.objects.filter(id__in=ready).update(
            status=MessageStatus.QUEUED,
            runs=F("runs") + 1,
            claims=0,
            failed_step="",
            failure_reason="",
            steps={},
            updated_at=timezone.now(),
        )
        if ready:
            transaction.on_commit(announce_queued)
    busy = sorted(set(message_ids) - set(ready))
    return sorted(ready), busy
