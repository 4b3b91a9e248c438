"""The MIME parser and mailbox readers: plain Python, no Django."""

from apps.inbox.engine.parser import (
    Attachment,
    Envelope,
    MessageTooLarge,
    ParsedMessage,
    parse_envelope,
    parse_message,
)

__all__ = [
    "Attachment",
    "Envelope",
    "MessageTooLarge",
    "ParsedMessage",
    "parse_envelope",
    "parse_message",
]
