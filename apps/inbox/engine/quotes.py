"""Separate the new text of a message from the quoted history and the signature below it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line that opens the quoted history, in the forms common mail clients write.
_QUOTE_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.I | re.S),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.I | re.S),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,80}:\s*$", re.I | re.S),
    re.compile(r"^\s*El\b.{0,300}\bescribió:\s*$", re.I | re.S),
    re.compile(r"^\s*Il giorno\b.{0,300}\bha scritto:\s*$", re.I | re.S),
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{20,}\s*$"),
    re.compile(r"^\s*Begin forwarded message:\s*$", re.I),
]
_OUTLOOK_HEADER = re.compile(r"^\s*\*?(From|De|Von|Van)\s*:\*?\s", re.I)
_OUTLOOK_FOLLOWERS = re.compile(
    r"^\s*\*?(Sent|Date|Envoyé|Gesendet|To|Subject|Objet|Betreff)\s*:", re.I
)
_SIGN_OFF = re.compile(
    r"^\s*(best|kind|warm|many thanks|thanks|thank you|cheers|regards|sincerely|best regards|"
    r"kind regards|warm regards|all the best|yours|cordialement|mit freundlichen grüßen|"
    r"viele grüße|saludos|un saludo|groeten|met vriendelijke groet)\b[\w ,.!]{0,30}$",
    re.I,
)
_MOBILE_FOOTER = re.compile(r"^\s*(sent from my|get outlook for|sent via|envoyé de mon)\b", re.I)


@dataclass
class SplitText:
    new_text: str
    quoted: str
    signature: str
    sign_off_name: str | None = None


def _is_quote_header(lines: list[str], index: int) -> bool:
    line = lines[index]
    # "On Tue, 3 Mar 2024 at 10:00, Jane <jane@example.com>" often wraps before "wrote:".
    joined = " ".join(part.strip() for part in lines[index : index + 3])
    for pattern in _QUOTE_HEADERS:
        if pattern.match(line) or (line.strip().lower().startswith(("on ", "le ", "am ", "el "))
                                   and pattern.match(joined)):  # fmt: skip
            return True
    if _OUTLOOK_HEADER.match(line):
        following = lines[index + 1 : index + 5]
        return sum(1 for f in following if _OUTLOOK_FOLLOWERS.match(f)) >= 2
    return False


def _next_content(lines: list[str], index: int) -> str:
    for line in lines[index + 1 :]:
        if line.strip():
            return line
    return ""


def split_reply(text: str) -> SplitText:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    quoted: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_quote_header(lines, index):
            if _next_content(lines, index).lstrip().startswith(">"):
                # An attribution above ">" quotes (bottom-posting, interleaved answers): only
                # the quoted lines are history; the writer's own lines between them are new.
                quoted.append(line)
                index += 1
                continue
            # Top-posting: everything from here down is the history, quoted or not.
            quoted.extend(lines[index:])
            break
        (quoted if line.lstrip().startswith(">") else kept).append(line)
        index += 1

    signature: list[str] = []
    for index, line in enumerate(kept):
        if line.rstrip() in ("--", "-- ", "—") or _MOBILE_FOOTER.match(line):
            signature = kept[index:]
            kept = kept[:index]
            break
    sign_off_name = None
    # A sign-off near the end ("Best regards,\nJane") starts the signature block.
    tail_start = max(0, len(kept) - 8)
    for index in range(len(kept) - 1, tail_start - 1, -1):
        if _SIGN_OFF.match(kept[index]):
            after = [line.strip() for line in kept[index + 1 :] if line.strip()]
            if len(after) <= 6 and all(len(line) <= 60 for line in after):
                if after and re.match(r"^[A-Z][\w'\-]+( [A-Z][\w'\-.]+){0,3}$", after[0]):
                    sign_off_name = after[0]
                signature = kept[index:] + signature
                kept = kept[:index]
            break
    return SplitText(
        new_text="\n".join(kept).strip(),
        quoted="\n".join(quoted).strip(),
        signature="\n".join(signature).strip(),
        sign_off_name=sign_off_name,
    )
