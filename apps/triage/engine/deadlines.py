"""Deadlines in text ("by Friday 5pm", "within 24 hours", "before March 3"), resolved against the
message's own date, not the time we read it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from dateutil import parser as date_parser

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_TIME = r"(?:at\s+)?(?P<time>\d{1,2}(?::\d{2})?\s*(?:am|pm)|\d{1,2}:\d{2})"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rf"(?P<date>\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:\s+\d{{4}})?|"
    rf"{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?)"
)
_DAY = r"(?P<day>today|tonight|tomorrow|eod|end of (?:the )?day|end of (?:the )?week|" \
       r"(?:next\s+)?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday))"  # fmt: skip
_TRIGGER = r"(?P<trigger>by|before|until|till|no later than|not later than|due(?: on| by)?|deadline(?: is|:)?|latest)"

_PATTERNS = [
    re.compile(rf"\b{_TRIGGER}\s+(?:the\s+)?{_DAY}(?:\s*,?\s*{_TIME})?", re.I),
    re.compile(rf"\b{_TRIGGER}\s+(?:the\s+)?{_DATE}(?:\s*,?\s*{_TIME})?", re.I),
    re.compile(rf"\b{_TRIGGER}\s+{_TIME}(?:\s+(?P<day>today|tonight|tomorrow))?", re.I),
    re.compile(
        r"\b(?P<within>within|in the next|in)\s+(?P<count>\d{1,3}|an?|one|two|three)\s+"
        r"(?P<unit>hours?|days?|business days?|weeks?)\b",
        re.I,
    ),  # fmt: skip
]
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3}


@dataclass
class Deadline:
    text: str
    due: datetime

    def hours_after(self, moment: datetime) -> float:
        return (self.due - moment).total_seconds() / 3600

    def to_dict(self) -> dict:
        return {"text": self.text, "due": self.due.isoformat()}


def _clock(text: str | None, default: time) -> time:
    if not text:
        return default
    parsed = date_parser.parse(text.replace(" ", ""), default=datetime(2000, 1, 1))
    return parsed.time()


def _resolve(match: re.Match, sent: datetime) -> datetime | None:
    groups = match.groupdict()
    end_of_day = time(17, 0)
    if groups.get("within"):
        count = groups["count"].lower()
        amount = _NUMBERS.get(count) or int(count)
        unit = groups["unit"].lower()
        if unit.startswith("hour"):
            return sent + timedelta(hours=amount)
        if unit.startswith("week"):
            return sent + timedelta(weeks=amount)
        return sent + timedelta(days=amount)
    clock = _clock(groups.get("time"), end_of_day)
    day = (groups.get("day") or "").lower()
    if groups.get("date"):
        try:
            parsed = date_parser.parse(
                groups["date"], default=sent.replace(tzinfo=None), dayfirst=False
            )
        except (ValueError, OverflowError):
            return None
        due = datetime.combine(parsed.date(), clock, tzinfo=sent.tzinfo)
        if due < sent - timedelta(days=180) and not re.search(r"\d{4}", groups["date"]):
            due = due.replace(year=due.year + 1)  # "by March 3" written in December
        return due
    base = sent.date()
    if day in ("tomorrow",):
        base += timedelta(days=1)
    elif day.startswith("end of") and "week" in day:
        base += timedelta(days=(4 - sent.weekday()) % 7)
    elif day.replace("next ", "") in _WEEKDAYS:
        target = _WEEKDAYS.index(day.replace("next ", ""))
        ahead = (target - sent.weekday()) % 7 or 7
        if day.startswith("next ") and ahead < 7:
            ahead += 7 if ahead <= 2 else 0
        base += timedelta(days=ahead)
    if day == "tonight" and not groups.get("time"):
        clock = time(21, 0)
    return datetime.combine(base, clock, tzinfo=sent.tzinfo)


def find_deadlines(text: str, sent: datetime) -> list[Deadline]:
    found: list[Deadline] = []
    taken: list[tuple[int, int]] = []
    for pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            try:
                due = _resolve(match, sent)
            except (ValueError, OverflowError):
                due = None
            if due is not None:
                taken.append(match.span())
                found.append(Deadline(" ".join(match.group(0).split()), due))
    return sorted(found, key=lambda d: d.due)
