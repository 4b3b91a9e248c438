"""The MIME parser and mailbox readers: plain Python, no Django."""

from apps.inbox.engine.parser import (
    DEFAULT_LIMITS,
    Attachment,
    Envelope,
    MessageTooLarge,
    ParsedMessage,
    ParseLimits,
    UnparseableMessage,
    bare_message_id,
    parse_envelope,
    parse_message,
)

__all__ = [
    "DEFAULT_LIMITS",
    "Attachment",
    "Envelope",
    "MessageTooLarge",
    "ParseLimits",
    "ParsedMessage",
    "UnparseableMessage",
    "bare_message_id",
    "parse_envelope",
    "parse_message",
]
