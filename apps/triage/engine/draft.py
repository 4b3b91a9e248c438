"""draft_reply: a reply addressed to the sender by name, acknowledging the specific request in the
category's template voice, with the references and dates from the message kept exactly.

It promises only what a template says: the request is acknowledged in the sender's own words, and
everything the reply commits to comes from the templates (data, editable). A generated sentence
is used only when it passes the same rule. No draft for categories that expect no answer, and no
text from a spam or suspicious message ever appears in one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from apps.inbox.engine import ParsedMessage

# Ticket, order and invoice numbers: "#4521", "INV-2024-0042", "order 1234567", "case no. 889".
_REFERENCES = (
    re.compile(r"(?<![\w#])(#\d{3,})\b"),
    re.compile(r"\b((?:[A-Z]{2,5}-)+\d[\w-]{2,})\b"),
    re.compile(
        r"\b(?:ticket|case|order|invoice|reference|ref|po|account|contract|request)\s*"
        r"(?:no\.?|number|#|:)?\s*(\d[\w-]{3,})\b",
        re.I,
    ),
)
_PROMISES = re.compile(
    r"\b(refund|guarantee|compensat|credit|discount|free|waive|will be fixed|fixed by|"
    r"within \d|by (monday|tuesday|wednesday|thursday|friday|tomorrow|today)|promise)\w*",
    re.I,
)


@dataclass
class ApprovedReply:
    """A reply a person approved earlier, with the embedding of the message it answered."""

    category: str
    message_vector: np.ndarray
    text: str
    label: str = "an approved reply"


@dataclass
class Draft:
    text: str
    source: str  # "template", "retrieved" or "generator"
    origin: str = ""  # in words: which template or which approved reply it came from

    def to_dict(self) -> dict:
        return {"text": self.text, "source": self.source, "origin": self.origin}


_NO_REPLY_SENDER = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|mailer-daemon|postmaster|bounces?)"
    r"([-+._].*)?@",
    re.I,
)


def no_reply_reason(message: ParsedMessage) -> str | None:
    """Why nobody should answer this message, whatever its category: a sender that reads no
    replies, a machine that wrote it, or a list that would send the answer to everyone."""
    sender = message.from_address or ""
    if _NO_REPLY_SENDER.match(sender):
        return f"the sender {sender} takes no replies"
    auto_submitted = message.auto_submitted
    if auto_submitted not in ("", "no"):
        return f"sent automatically (Auto-Submitted: {auto_submitted})"
    for name in ("List-Id", "List-Post", "List-Unsubscribe"):
        if message.header(name) is not None:
            return f"sent to a mailing list ({name} header)"
    precedence = (message.header("Precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk", "auto_reply"):
        return f"bulk mail (Precedence: {precedence})"
    return None


def load_templates(path: str | Path | None = None) -> dict:
    if path:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    packaged = resources.files("apps.triage.engine").joinpath("data/templates.json")
    return json.loads(packaged.read_text(encoding="utf-8"))


# Words that name a function, not a person: "Accounts Payable", "Harbour NOC", "IT Support".
_ROLE_WORDS = frozenset(
    [
        "accounts",
        "account",
        "payable",
        "receivable",
        "billing",
        "finance",
        "team",
        "support",
        "helpdesk",
        "help",
        "desk",
        "service",
        "services",
        "noc",
        "operations",
        "ops",
        "admin",
        "administrator",
        "office",
        "department",
        "sales",
        "marketing",
        "info",
        "it",
        "security",
        "legal",
        "hr",
        "customer",
        "care",
        "no-reply",
        "noreply",
        "notifications",
        "mailer",
        "system",
    ]
)


def first_name(message: ParsedMessage) -> str | None:
    """The sender's first name for the greeting, or None when all we have is a role or team."""
    for candidate in (message.sign_off_name, message.from_name):
        name = _first_word(candidate or "")
        if name:
            return name
    return None


def _first_word(candidate: str) -> str | None:
    if "," in candidate:  # "Doe, Jane"
        candidate = candidate.split(",", 1)[1]
    words = [w for w in re.split(r"\s+", candidate.strip()) if w]
    if any(w.lower().strip(".,") in _ROLE_WORDS for w in words):
        return None
    if words and re.fullmatch(r"[^\W\d_][\w'\-]*", words[0]) and "@" not in words[0]:
        return words[0][0].upper() + words[0][1:]
    return None


def find_references(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for pattern in _REFERENCES:
        found += [(m.start(1), m.group(1)) for m in pattern.finditer(text)]
    seen: list[str] = []
    for _, value in sorted(found):
        if any(ch.isdigit() for ch in value) and value not in seen and f"#{value}" not in seen:
            seen.append(value)
    return seen[:5]


def _acceptable_generated(sentence: str, source_text: str) -> bool:
    """A generated sentence may restate the request, never commit to anything: no promises, and
    no number that the message itself does not contain."""
    if not sentence or len(sentence) > 300 or _PROMISES.search(sentence):
        return False
    return all(number in source_text for number in re.findall(r"\d+", sentence))


def compose_draft(
    message: ParsedMessage,
    category: str,
    *,
    templates: dict,
    key_point: str,
    deadlines: list[dict],
    suspicious: bool,
    message_vector: np.ndarray | None = None,
    library: list[ApprovedReply] | None = None,
    generated_ack: str | None = None,
    retrieval_threshold: float = 0.85,
) -> Draft | None:
    voice = templates["categories"].get(category)
    if voice is None:
        return None  # no template: a category that expects no answer
    name = first_name(message)
    greeting = f"Hi {name}," if name else "Hello,"
    closing = (
        f"{voice.get('closing') or templates.get('closing', 'Best regards,')}\n"
        f"{voice.get('team') or templates.get('team', 'The Support Team')}"
    )

    if library and message_vector is not None and not suspicious:
        candidates = [r for r in library if r.category == category]
        if candidates:
            scores = np.array([float(r.message_vector @ message_vector) for r in candidates])
            best = int(np.argmax(scores))
            if scores[best] >= retrieval_threshold:
                body = candidates[best].text.strip()
                lines = body.split("\n")
                if lines and re.match(r"^(hi|hello|dear)\b", lines[0], re.I):
                    body = "\n".join(lines[1:]).strip()
                return Draft(f"{greeting}\n\n{body}", "retrieved",
                             f"{candidates[best].label} (similarity {scores[best]:.2f})")  # fmt: skip

    paragraphs = [voice["opening"]]
    source = "template"
    if not suspicious:
        source_text = f"{message.subject}\n{message.new_text or message.text}"
        if generated_ack and _acceptable_generated(generated_ack, source_text):
            paragraphs.append(generated_ack)
            source = "generator"
        elif key_point:
            paragraphs.append(f"You wrote: \u201c{key_point}\u201d")
        references = find_references(source_text)
        noted = []
        if references:
            noted.append(f"your reference {', '.join(references)}")
        if deadlines:
            noted.append(f"the date you mentioned ({deadlines[0]['text']})")
        if noted:
            paragraphs.append(f"We have noted {' and '.join(noted)}.")
    paragraphs.append(voice["body"])
    origin = f"the {voice.get('name', category)} template"
    if source == "generator":
        origin += " and a generated restatement"
    return Draft(f"{greeting}\n\n" + "\n\n".join(paragraphs) + f"\n\n{closing}", source, origin)
