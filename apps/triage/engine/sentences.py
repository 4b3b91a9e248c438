"""Sentence splitting with character spans, so sentence vectors can be pooled from one pass."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"e.g", "i.e", "mr", "mrs", "ms", "dr", "etc", "vs", "no", "inc", "ltd", "approx",
                  "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}  # fmt: skip
# A sentence ends at . ! ? before a space and a capital, at a blank line or a list item, and in
# Chinese and Japanese at a full-width 。！？, which no space follows.
_BOUNDARY = re.compile(
    r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[。！？])[」』）\"')]*\s*"
    r"|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)"
)
# Chinese and Japanese write no spaces between words: their characters count instead.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
_CJK_WORDS_PER_CHARACTER = 0.5
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
        if not stripped or _GREETING.match(stripped) or _words(stripped) < 3:
            continue
        sentences.append((begin, end, " ".join(stripped.split())))
    return sentences


def _words(sentence: str) -> float:
    return len(sentence.split()) + _CJK_WORDS_PER_CHARACTER * len(_CJK.findall(sentence))
