"""A parsed message as JSON and back, so that the chain parses each message's bytes once."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime

from apps.inbox.engine.parser import Attachment, ParsedMessage

_FIELDS = {f.name for f in fields(ParsedMessage)}


def parsed_to_json(message: ParsedMessage) -> dict:
    data = asdict(message)
    data["date"] = message.date.isoformat() if message.date else None
    return data


def parsed_from_json(data: dict) -> ParsedMessage | None:
    """The message stored by parsed_to_json, or None when data holds no complete parsed form
    (stored by an older version, or not parsed yet): parse the raw bytes again then."""
    if not data or not data.keys() >= _FIELDS:
        return None
    values = {name: data[name] for name in _FIELDS}
    values["date"] = datetime.fromisoformat(data["date"]) if data["date"] else None
    values["attachments"] = [Attachment(**a) for a in data["attachments"]]
    return ParsedMessage(**values)
