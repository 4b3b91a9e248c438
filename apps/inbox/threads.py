"""Which conversation a message belongs to: References and In-Reply-To first, then, for a reply
whose earlier messages are not here, the subject and the correspondent.

A thread's key is a hash of its first message's Message-ID where the headers name it, so that
replies arriving before the message they answer still land in one thread."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from apps.inbox.engine import ParsedMessage, bare_message_id
from apps.inbox.models import Message

# "Re:", "Fwd:", "AW:", "SV:", "Antw:", "RE[2]:", "TR:", "RV:" and the like, repeated.
_REPLY_PREFIX = re.compile(
    r"^\s*((re|fwd?|aw|sv|vs|antw|wg|tr|rv|réf|ref|odp|r)(\[\d+\])?\s*:\s*)+", re.I
)
# How far back a subject-only match looks.
SUBJECT_WINDOW = timedelta(days=60)


def normalized_subject(subject: str) -> str:
    return re.sub(r"\s+", " ", _REPLY_PREFIX.sub("", subject or "")).strip().lower()


def is_reply(subject: str) -> bool:
    return bool(_REPLY_PREFIX.match(subject or ""))


def _key(seed: str) -> str:
    return hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:32]


def assign_threads(messages: list[Message], parsed: list[ParsedMessage]) -> dict[int, str]:
    """The thread key of each message, by id: two queries for a whole batch."""
    referenced: dict[int, list[str]] = {}
    for message, item in zip(messages, parsed, strict=True):
        ids = [bare_message_id(r) for r in item.references] + [bare_message_id(item.in_reply_to)]
        referenced[message.id] = [i for i in dict.fromkeys(ids) if i]
    wanted = {i for ids in referenced.values() for i in ids}
    wanted_headers = {f"<{i}>" for i in wanted} | wanted
    known: dict[str, str] = {}
    if wanted_headers:
        for header, key in (
            Message.objects.filter(message_id_header__in=wanted_headers)
            .exclude(thread_key="")
            .values_list("message_id_header", "thread_key")
        ):
            known[bare_message_id(header)] = key

    keys: dict[int, str] = {}
    subject_lookups = []
    for message, item in zip(messages, parsed, strict=True):
        ids = referenced[message.id]
        found = next((known[i] for i in ids if i in known), None)
        if found:
            keys[message.id] = found
        elif ids:
            # The first message of the conversation, as the headers name it.
            keys[message.id] = _key(f"mid:{ids[0]}")
        elif is_reply(item.subject) and normalized_subject(item.subject):
            subject_lookups.append((message, item))
        else:
            keys[message.id] = _key(f"mid:{bare_message_id(item.message_id)}" if item.message_id
                                    else f"row:{message.id}")  # fmt: skip
    for message, item in subject_lookups:
        subject = normalized_subject(item.subject)
        correspondent = (item.from_address or "").lower()
        earlier = (
            Message.objects.filter(
                received_at__gte=message.received_at - SUBJECT_WINDOW,
                received_at__lte=message.received_at,
                from_address__iexact=correspondent,
            )
            .exclude(id=message.id)
            .exclude(thread_key="")
            .filter(
                subject__iregex=r"^\s*((re|fwd?|aw|sv|vs|antw|wg|tr|rv)\s*:\s*)*"
                + re.escape(subject)
                + r"\s*$"
            )  # fmt: skip
            .order_by("-received_at")
            .values_list("thread_key", flat=True)
            .first()
        )
        keys[message.id] = earlier or _key(f"subject:{correspondent}:{subject}")
    return keys
