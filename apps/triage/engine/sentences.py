"""Sentence splitting with character spans, so sentence vectors can be pooled from one pass."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "etc", "vs", "no", "inc", "ltd", "approx",
                  "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}  # fmt: skip
_BOUNDARY = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)"
)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|dear|good (morning|afternoon|evening)|greetings)\b[^.!?\n]{0,40}[,!:]?\s*$",
    re.I,
)


def split_sentences(text: str) -> list[tuple[int, int, str]]:
    """(start, end, sentence) for each sentence of text, greetings and fragments dropped."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        word = re.search(r"([\w.]+)\W*$", text[start : match.start()])
        if (
            word
            and word.group(1).lower().rstrip(".") in _ABBREVIATIONS
            and "\n" not in match.group(0)
        ):
            continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    sentences = []
    for begin, end in spans:
        chunk = text[begin:end]
        stripped = chunk.strip()
        if not stripped:
            continue
        begin += len(chunk) - len(chunk.lstrip())
        end = begin + len(stripped)
        # A greeting line opening the first sentence ("Hi team,\nOur API...") is not content.
        greeting = re.match(
            r"^\s*(hi|hello|hey|dear|good (morning|afternoon|evening))\b[^\n]{0,40}\n",
            stripped,
            re.I,
        )
        if greeting:
            begin += greeting.end()
            stripped = stripped[greeting.end() :].strip()
        if not stripped or _GREETING.match(stripped) or len(stripped.split()) < 3:
            continue
        sentences.append((begin, end, " ".join(stripped.split())))
    return sentences
