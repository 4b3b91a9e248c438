"""Beat's jobs, on the maintenance queue. Each is idempotent: running it twice does no more than
running it once. The sweep that takes back lost claims is in tasks/dispatch.py."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.core import metrics, partitions, retention
from apps.core.connections import redis_connection
from apps.core.retention import retention_days
from apps.inbox.models import Message
from apps.verification import validation
from apps.verification.evidence import address_key
from apps.verification.models import MailEvidence
from tasks.base import mailscore_task
from tasks.queues import CeleryQueue

# Where apps/triage/encodings.py keeps each message's encoder vectors.
ENCODING_KEYS = "mailscore:encoding:*"


@mailscore_task("maintenance.create_partitions", queue=CeleryQueue.MAINTENANCE)
def create_partitions() -> list[str]:
    """Create the monthly partitions that do not exist yet, months ahead of need."""
    return partitions.ensure_partitions(
        timezone.now(),
        months_ahead=settings.MAILSCORE_PARTITION_MONTHS_AHEAD,
        retention_days=retention_days(),
    )


@mailscore_task("maintenance.apply_retention", queue=CeleryQueue.MAINTENANCE)
def apply_retention() -> list[dict]:
    """Drop every partition older than the retention period (archived first only where
    MAILSCORE_ARCHIVE is on), delete the rows of ordinary tables older than it (mail evidence,
    bulk jobs) and archives older than MAILSCORE_ARCHIVE_RETENTION_DAYS, then forget what Redis
    keeps about the mail that went. Every part is a no-op the second time."""
    now = timezone.now()
    days = retention_days()
    evidence_addresses = set(
        MailEvidence.objects.filter(seen_at__lt=now - timedelta(days=days))
        .values_list("address", flat=True)
        .distinct()
    )
    retention.delete_expired_rows(now, days)
    dropped = partitions.apply_retention(
        now,
        retention_days=days,
        archive_dir=settings.MAILSCORE_ARCHIVE_DIR if settings.MAILSCORE_ARCHIVE else None,
        archive_retention_days=settings.MAILSCORE_ARCHIVE_RETENTION_DAYS,
        archives=settings.MAILSCORE_ARCHIVE_DIR,
    )
    addresses = evidence_addresses.union(*(d.addresses for d in dropped))
    forget_cached_addresses(addresses)
    forget_encodings_of_gone_messages()
    metrics.mark_retention_run(redis_connection())
    return [
        {"partition": d.name, "rows": d.rows, "archive": str(d.path) if d.path else None}
        for d in dropped
    ]


def forget_cached_addresses(addresses: set[str]) -> int:
    """Delete the validate API's answers (final and pending) and the verifier's address cache
    entries of addresses read from expired mail. One of them may also be in recent mail: its
    next check asks again, which costs a lookup and keeps nothing past its time."""
    # The stored spelling as well as the normalised key: deleting a key that was never set
    # costs nothing, keeping one that was breaks the promise.
    keys = set(addresses) | ({address_key(address) for address in addresses} - {None})
    prefix = settings.MAILSCORE_VERIFICATION.get("cache_prefix", "mailscore:verify:")
    names = [
        name
        for key in sorted(keys)
        for name in (validation.KEY_PREFIX + key, validation.PENDING_PREFIX + key,
                     f"{prefix}addr:{key}")
    ]  # fmt: skip
    client = redis_connection()
    deleted = 0
    for start in range(0, len(names), 500):
        deleted += client.delete(*names[start : start + 500])
    return deleted


def forget_encodings_of_gone_messages() -> int:
    """Delete the encoder vectors kept for messages whose rows are gone. They expire within the
    hour anyway; this makes retention's promise hold the moment the job ends."""
    client = redis_connection()
    found: dict[int, list[bytes]] = {}
    for name in client.scan_iter(match=ENCODING_KEYS, count=1000):
        # mailscore:encoding:<encoder version>:<message id>:<run>
        parts = name.rsplit(b":", 2)
        if len(parts) == 3 and parts[1].isdigit():
            found.setdefault(int(parts[1]), []).append(name)
    if not found:
        return 0
    kept = set(Message.objects.filter(id__in=list(found)).values_list("id", flat=True))
    gone = [name for message_id, names in found.items() if message_id not in kept
            for name in names]  # fmt: skip
    return client.delete(*gone) if gone else 0
