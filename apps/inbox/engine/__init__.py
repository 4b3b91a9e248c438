"""The MIME parser and mailbox readers: plain Python, no Django."""

from apps.inbox.engine.parser import (
    DEFAULT_LIMITS,
    Attachment,
    Envelope,
    MessageTooLarge,
    ParsedMessage,
    ParseLimits,
    UnparseableMessage,
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
    "parse_envelope",
    "parse_message",
]
