"""The MIME parser and mailbox readers: plain Python, no Django."""

from apps.inbox.engine.parser import (
    Attachment,
    MessageTooLarge,
    ParsedMessage,
    parse_message,
)

__all__ = ["Attachment", "MessageTooLarge", "ParsedMessage", "parse_message"]
