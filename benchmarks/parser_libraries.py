"""mailscore's hand-written parsers next to the maintained libraries that do the same job.

Four pairs, each run on the same inputs:

1. Deadlines in words: apps.triage.engine.deadlines.find_deadlines against dateparser's
   search_dates (RELATIVE_BASE = the message date, PREFER_DATES_FROM = "future", the language
   given), on labelled sentences in seven languages and on real mail.
2. Quoted history and signatures: apps.inbox.engine.quotes.split_reply against mail-parser-reply
   and email-reply-parser, on labelled replies (those of tests/inbox/test_parser.py and more) and
   on real mail.
3. Authentication-Results: apps.verification.engine.trust.parse_authentication_results against
   authres, on labelled header values (those of the tests, common receivers' forms, malformed
   ones) and on every such header in the corpora.
4. Lookalike domains: apps.verification.engine.similarity.lookalike_of against
   confusable_homoglyphs, on labelled brand domains and lookalikes.

For each pair it prints the cases, the agreement, where one is right and the other wrong (with
examples), the errors raised and the median microseconds per call.

    python benchmarks/parser_libraries.py [--corpus PATH] [--labelled PATH] [--sample 600]
                                          [--examples 3]

--sample 0 runs the slow comparisons on the whole corpus (about two minutes).

The libraries are not project dependencies:
    pip install dateparser mail-parser-reply email-reply-parser authres confusable-homoglyphs
"""

from __future__ import annotations

import argparse
import csv
import difflib
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import authres  # noqa: E402
import email_reply_parser  # noqa: E402
import mailparser_reply  # noqa: E402
from confusable_homoglyphs import confusables  # noqa: E402
from dateparser.search import search_dates  # noqa: E402

from apps.inbox.engine import ParsedMessage, UnparseableMessage, parse_message  # noqa: E402
from apps.inbox.engine.quotes import split_reply  # noqa: E402
from apps.triage.engine.deadlines import find_deadlines  # noqa: E402
from apps.verification.engine.similarity import (  # noqa: E402
    WELL_KNOWN_DOMAINS,
    lookalike_of,
    to_unicode,
)
from apps.verification.engine.trust import parse_authentication_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path("/work/shared/data/spamassassin")
DEFAULT_LABELLED = ROOT / "samples" / "business" / "messages"
LIBRARIES = (
    "dateparser", "mail-parser-reply", "email-reply-parser", "authres", "confusable-homoglyphs",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Measuring and printing


@dataclass
class Timed:
    """Durations and errors of many calls, to one function or one library."""

    micros: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)

    def call(self, function: Callable, *args, **kwargs):
        """function(*args, **kwargs), timed; an exception is counted and gives None."""
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a library's errors are what is measured
            self.errors[type(exc).__name__] += 1
            return None
        finally:
            self.micros.append((time.perf_counter() - start) * 1e6)

    @property
    def median(self) -> str:
        return f"{statistics.median(self.micros):,.0f}" if self.micros else "-"

    @property
    def error_text(self) -> str:
        return ", ".join(f"{name} x{count}" for name, count in self.errors.most_common()) or "0"


def table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for number, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  " + "  ".join("-" * w for w in widths))


def examples(title: str, items: list[str], limit: int) -> None:
    if not items:
        return
    print(f"  {title} ({len(items)}; first {min(limit, len(items))}):")
    for item in items[:limit]:
        print("    - " + item)


def short(text: str | None, length: int = 90) -> str:
    flat = " | ".join(line.strip() for line in (text or "").splitlines() if line.strip())
    return repr(flat if len(flat) <= length else flat[: length - 3] + "...")


def percent(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"


# --------------------------------------------------------------------------------------------
# Corpora


@dataclass
class Mail:
    name: str  # folder/file
    group: str  # ham, spam or labelled
    message: ParsedMessage
    raw_headers: list[tuple[str, str]]


def _raw_headers(raw: bytes) -> list[tuple[str, str]]:
    """Undecoded (name, value) pairs of the header section, folded lines joined."""
    section = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("latin-1")
    pairs: list[tuple[str, str]] = []
    for line in section.split("\n"):
        if line.startswith("From "):
            continue
        if line[:1] in (" ", "\t") and pairs:
            pairs[-1] = (pairs[-1][0], pairs[-1][1] + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            pairs.append((name.strip(), value.strip()))
    return pairs


def load_mail(folder: Path, group_of: Callable[[Path], str]) -> list[Mail]:
    mails = []
    if not folder.is_dir():
        return mails
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.lower().endswith((".md", ".csv", ".json")):
            continue
        raw = path.read_bytes()
        try:
            message = parse_message(raw)
        except UnparseableMessage:
            continue
        name = f"{path.parent.name}/{path.name}"
        mails.append(Mail(name, group_of(path), message, _raw_headers(raw)))
    return mails


def spread(items: list, count: int) -> list:
    """count items taken at even steps through the list (all of them when count >= len)."""
    if count <= 0 or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def load_notes(messages: Path) -> dict[str, str]:
    """Message-ID -> the labeller's note, from the labels*.csv files beside the messages."""
    notes = {}
    for path in sorted(messages.parent.glob("labels*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("message_id"):
                    notes[row["message_id"].strip()] = row.get("note") or ""
    return notes


# --------------------------------------------------------------------------------------------
# 1. Deadlines

# Message date of every labelled sentence: Wednesday 4 March 2026, 10:00 UTC (as in the tests).
SENT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)

# (language, sentence, due) where due is None (no deadline in the sentence), a date (any time of
# that day is right: the sentence names no hour) or a date and time (that minute is right).
# The first ten are tests/triage/test_steps.py's own cases.
LABELLED_DEADLINES: list[tuple[str, str, tuple | None]] = [
    ("en", "Please fix this by Friday 5pm.", (2026, 3, 6, 17, 0)),
    ("en", "We need it by tomorrow at 9am.", (2026, 3, 5, 9, 0)),
    ("en", "The report is due March 10.", (2026, 3, 10)),
    ("en", "no later than 2026-03-08 12:00", (2026, 3, 8, 12, 0)),
    ("en", "Please answer within 24 hours.", (2026, 3, 5, 10, 0)),
    ("en", "Send it by EOD.", (2026, 3, 4)),
    ("en", "before next Monday", (2026, 3, 9)),
    ("en", "by 3pm today", (2026, 3, 4, 15, 0)),
    ("en", "deadline: 15 March", (2026, 3, 15)),
    ("en", "We bought it in March and it works well.", None),
    ("en", "Could you send the invoice before Thursday?", (2026, 3, 5)),
    ("en", "The offer is valid until March 20, 2026.", (2026, 3, 20)),
    ("en", "Please reply by 12 March at 14:00.", (2026, 3, 12, 14, 0)),
    ("en", "Payment is due on 3/20.", (2026, 3, 20)),
    ("en", "Can you get back to me by end of the week?", (2026, 3, 6)),
    ("en", "Upgrade to version 2.4.1 for the fix.", None),
    ("en", "I already sent the form 2 days ago.", None),
    ("en", "We met in Berlin on 14 February 2026 to discuss the contract.", None),
    ("en", "The outage on Monday lasted 3 hours.", None),
    ("en", "Thanks for your quick reply yesterday.", None),
    ("en", "Ticket 4521 was opened at 10:15 this morning.", None),
    ("en", "Our office has 24 desks and 3 meeting rooms.", None),
    ("de", "Bitte schicken Sie den Vertrag bis Freitag, 17 Uhr.", (2026, 3, 6, 17, 0)),
    ("de", "Bis morgen um 9 Uhr bitte.", (2026, 3, 5, 9, 0)),
    ("de", "Die Rechnung ist bis zum 15. März fällig.", (2026, 3, 15)),
    ("de", "Bitte antworten Sie innerhalb von 24 Stunden.", (2026, 3, 5, 10, 0)),
    ("de", "Wir haben das Problem am Montag gemeldet.", None),
    ("de", "Seit Version 3.2 funktioniert der Export wieder.", None),
    ("fr", "Merci de répondre avant le 15 mars.", (2026, 3, 15)),
    ("fr", "Pouvez-vous l'envoyer d'ici demain 10h ?", (2026, 3, 5, 10, 0)),
    ("fr", "La facture doit être payée avant vendredi.", (2026, 3, 6)),
    ("fr", "Nous avons besoin d'une réponse sous 48 heures.", (2026, 3, 6, 10, 0)),
    ("fr", "Nous avons reçu votre colis il y a 3 jours.", None),
    ("es", "Necesitamos la factura antes del viernes.", (2026, 3, 6)),
    ("es", "Envíe el informe antes del 10 de marzo a las 12:00.", (2026, 3, 10, 12, 0)),
    ("es", "Responda en un plazo de 48 horas, por favor.", (2026, 3, 6, 10, 0)),
    ("es", "Compramos el producto hace dos semanas.", None),
    ("it", "Entro lunedì prossimo, per favore.", (2026, 3, 9)),
    ("it", "Il pagamento è dovuto entro il 20 marzo.", (2026, 3, 20)),
    ("it", "Ci serve una risposta entro domani alle 15:00.", (2026, 3, 5, 15, 0)),
    ("it", "Abbiamo aggiornato alla versione 5.1 la settimana scorsa.", None),
    ("pt", "Preciso disso até amanhã às 10h.", (2026, 3, 5, 10, 0)),
    ("pt", "O relatório deve ser entregue até sexta-feira.", (2026, 3, 6)),
    ("pt", "Por favor, pague até 18 de março.", (2026, 3, 18)),
    ("pt", "Recebemos o pedido há 2 dias.", None),
    ("nl", "Graag vóór vrijdag 12:00 reageren.", (2026, 3, 6, 12, 0)),
    ("nl", "Kunt u dit binnen 24 uur doen?", (2026, 3, 5, 10, 0)),
    ("nl", "De factuur moet uiterlijk 16 maart betaald zijn.", (2026, 3, 16)),
    ("nl", "Wij hebben gisteren de update geïnstalleerd.", None),
]

# dateparser's languages among those py3langid gives; others fall back to English.
DATEPARSER_LANGUAGES = {"en", "de", "fr", "es", "it", "pt", "nl", "sv", "da", "pl", "cs"}


def ours_deadlines(text: str, sent: datetime) -> list[tuple[str, datetime]]:
    """(phrase, due) pairs, due in the message's own zone without tzinfo."""
    found = find_deadlines(text, sent)
    return [(d.text, d.due.astimezone(sent.tzinfo).replace(tzinfo=None)) for d in found]


def library_deadlines(text: str, sent: datetime, language: str) -> list[tuple[str, datetime]]:
    settings = {
        "RELATIVE_BASE": sent.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    found = search_dates(text, languages=[language], settings=settings) or []
    return [(phrase, due.replace(tzinfo=None)) for phrase, due in found]


# The library as a fallback for languages other than English, sketched: words that put a date
# under a deadline, per language; a date the library found is kept only when one of these stands
# right before it (an article or one word between) and it is not in the past.
DEADLINE_TRIGGERS = {
    "de": r"bis|bis zum|bis spätestens|spätestens|innerhalb von|innerhalb|vor|fällig am|frist",
    "fr": r"avant|avant le|d'ici|d’ici|au plus tard|sous|dans les|jusqu'au|jusqu’au|pour le",
    "es": r"antes|antes de|antes del|a más tardar|en un plazo de|plazo de|hasta|para el",
    "it": r"entro|entro il|prima di|non oltre|scadenza|per il",
    "pt": r"até|antes de|no prazo de|prazo de|até ao|até o",
    "nl": r"voor|vóór|uiterlijk|binnen|op zijn laatst|deadline",
}


def combined_deadlines(text: str, sent: datetime, language: str) -> list[tuple[str, datetime]]:
    """Ours for English; elsewhere the library's future dates that follow a deadline word."""
    if language not in DEADLINE_TRIGGERS:
        return ours_deadlines(text, sent)
    triggers = DEADLINE_TRIGGERS[language]
    before_date = re.compile(rf"\b(?:{triggers})\W+(?:\w+\W+)?$", re.I)
    starts_with = re.compile(rf"^(?:{triggers})\b", re.I)
    kept = []
    base = sent.replace(tzinfo=None)
    for phrase, due in library_deadlines(text, sent, language):
        start = text.find(phrase)
        before = text[max(0, start - 40) : start] if start >= 0 else ""
        if due >= base and (before_date.search(before) or starts_with.match(phrase)):
            kept.append((phrase, due))
    return kept


def _judge(found: list[tuple[str, datetime]], due: tuple | None) -> tuple[bool, bool, int]:
    """(right day found, right moment found, false dates) for one labelled sentence."""
    if due is None:
        return False, False, len(found)
    day = datetime(*due[:3]).date()
    on_day = [when for _, when in found if when.date() == day]
    moment = bool(on_day) if len(due) == 3 else datetime(*due) in on_day
    return bool(on_day), moment, len(found) - len(on_day)


def _format_found(found: list[tuple[str, datetime]] | None) -> str:
    if found is None:
        return "error"
    if not found:
        return "nothing"
    return "; ".join(f"{phrase!r} -> {when:%a %d %b %H:%M}" for phrase, when in found)


def deadline_pair(
    mails: list[Mail], labelled: list[Mail], notes: dict[str, str], show: int
) -> None:
    print(
        "\n" + "=" * 100 + "\n1. DEADLINES: find_deadlines (ours) vs dateparser.search.search_dates"
    )

    # Labelled sentences.
    ours_time, lib_time, combined_time = Timed(), Timed(), Timed()
    by_language: dict[str, Counter] = {}
    ours_only, lib_only, lib_false, ours_false, combined_misses = [], [], [], [], []
    for language, text, due in LABELLED_DEADLINES:
        ours = ours_time.call(ours_deadlines, text, SENT) or []
        lib = lib_time.call(library_deadlines, text, SENT, language)
        combined = combined_time.call(combined_deadlines, text, SENT, language) or []
        ours_day, ours_moment, ours_wrong = _judge(ours, due)
        lib_day, lib_moment, lib_wrong = _judge(lib or [], due)
        both_day, both_moment, both_wrong = _judge(combined, due)
        tally = by_language.setdefault(language, Counter())
        tally["positives" if due else "negatives"] += 1
        tally["ours_day"] += ours_day
        tally["ours_moment"] += ours_moment
        tally["lib_day"] += lib_day
        tally["lib_moment"] += lib_moment
        tally["ours_false"] += bool(ours_wrong)
        tally["lib_false"] += bool(lib_wrong)
        tally["both_day"] += both_day
        tally["both_moment"] += both_moment
        tally["both_false"] += bool(both_wrong)
        line = f"[{language}] {text!r}: ours {_format_found(ours)}; library {_format_found(lib)}"
        if due and ours_moment and not lib_moment:
            ours_only.append(line)
        if due and lib_moment and not ours_moment:
            lib_only.append(line)
        if lib_wrong:
            lib_false.append(line)
        if ours_wrong:
            ours_false.append(line)
        if due and not both_moment:
            combined_misses.append(f"[{language}] {text!r}: combined {_format_found(combined)}")

    rows = []
    total = Counter()
    for language, tally in by_language.items():
        total.update(tally)
        rows.append(_deadline_row(language, tally))
    rows.append(_deadline_row("all", total))
    table(
        f"Labelled sentences ({len(LABELLED_DEADLINES)}, message date {SENT:%a %d %b %Y %H:%M} "
        "UTC). day = a date found on the due day; moment = the due minute when the sentence "
        "names an hour, else the day; false = sentences with a date that is not the deadline; "
        "combined = ours for English, else dateparser's future dates after a deadline word",
        [
            "lang",
            "with/without",
            "ours day",
            "ours moment",
            "ours false",
            "lib day",
            "lib moment",
            "lib false",
            "comb. moment",
            "comb. false",
        ],
        rows,
    )
    table(
        "Speed on the labelled sentences",
        ["", "errors raised", "median us/call"],
        [
            ["ours", ours_time.error_text, ours_time.median],
            ["dateparser", lib_time.error_text, lib_time.median],
            ["combined", combined_time.error_text, combined_time.median],
        ],
    )
    examples("ours right, library wrong", ours_only, show * 4)
    examples("library right, ours wrong", lib_only, show * 6)
    examples("library: a date that is not a deadline", lib_false, show * 6)
    examples("ours: a date that is not a deadline", ours_false, show * 4)
    examples("combined: deadline missed or wrong moment", combined_misses, show * 4)

    # Real mail: dates before the message's own are certainly not deadlines; in the labelled set,
    # the labellers' notes say which messages set a deadline (a hint, not an exhaustive label).
    for title, group, group_notes in (
        ("Corpus", mails, {}),
        ("Labelled business set", labelled, notes),
    ):
        group = [m for m in group if m.message.date and m.message.new_text]
        if not group:
            print(f"\n{title}: no messages with a date and new text.")
            continue
        _deadlines_on_mail(title, group, show, group_notes)


def _deadline_row(language: str, tally: Counter) -> list:
    positives, negatives = tally["positives"], tally["negatives"]
    everything = positives + negatives
    return [
        language,
        f"{positives}/{negatives}",
        percent(tally["ours_day"], positives),
        percent(tally["ours_moment"], positives),
        percent(tally["ours_false"], everything),
        percent(tally["lib_day"], positives),
        percent(tally["lib_moment"], positives),
        percent(tally["lib_false"], everything),
        percent(tally["both_moment"], positives),
        percent(tally["both_false"], everything),
    ]


# A label's note that speaks of a deadline ("wants it by Friday", "due Nov 3", "14-day deadline").
_NOTE_DEADLINE = re.compile(
    r"deadline|\bdue\b|\bby (?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\bby tomorrow\b|"
    r"\bby (?:the )?end of\b|\bends\b|\bexpires?\b|\bwithin\b",
    re.I,
)

DEADLINE_FINDERS: dict[str, Callable[[str, datetime, str], list[tuple[str, datetime]]]] = {
    "ours": lambda text, sent, language: ours_deadlines(text, sent),
    "dateparser": library_deadlines,
    "combined": combined_deadlines,
}


def _deadlines_on_mail(title: str, mails: list[Mail], show: int, notes: dict[str, str]) -> None:
    timings = {name: Timed() for name in DEADLINE_FINDERS}
    counts = {name: Counter() for name in DEADLINE_FINDERS}
    only_lib, only_ours, lib_past = [], [], []
    noted = [m for m in mails if _NOTE_DEADLINE.search(notes.get(m.message.message_id or "", ""))]
    unnoted = {m.name for m in mails if (m.message.message_id or "") in notes} - {
        m.name for m in noted
    }
    for mail in mails:
        message = mail.message
        language = message.language if message.language in DATEPARSER_LANGUAGES else "en"
        sent = message.date.astimezone(message.date.tzinfo).replace(tzinfo=None)
        found = {}
        for name, finder in DEADLINE_FINDERS.items():
            found[name] = timings[name].call(finder, message.new_text, message.date, language)
            found[name] = found[name] or []
            future = [w for _, w in found[name] if w >= sent - timedelta(minutes=1)]
            tally = counts[name]
            tally["messages"] += bool(found[name])
            tally["dates"] += len(found[name])
            tally["past"] += len(future) < len(found[name])
            tally["noted_found"] += bool(future) and mail in noted
            tally["unnoted_found"] += bool(future) and mail.name in unnoted
        ours, lib = found["ours"], found["dateparser"]
        ours_days = {w.date() for _, w in ours}
        lib_days = {w.date() for _, w in lib}
        counts["dateparser"]["agree"] += (not ours and not lib) or bool(ours_days & lib_days)
        if lib and not ours:
            only_lib.append(f"{mail.name}: {_format_found(lib[:3])}")
        if ours and not lib_days & ours_days:
            only_ours.append(
                f"{mail.name}: ours {_format_found(ours[:2])}; library {_format_found(lib[:2])}"
            )
        past = [(p, w) for p, w in lib if w < sent - timedelta(minutes=1)]
        if past:
            lib_past.append(f"{mail.name} (sent {sent:%d %b %Y}): {_format_found(past[:3])}")
    n = len(mails)
    header = ["", "messages with a date", "dates found", "messages with a past date"]
    if noted:
        header += [
            f"future date, note names a deadline ({len(noted)})",
            f"future date, note does not ({len(unnoted)})",
        ]
    rows = []
    for name, tally in counts.items():
        row = [name, percent(tally["messages"], n), tally["dates"], percent(tally["past"], n)]
        if noted:
            row += [
                percent(tally["noted_found"], len(noted)),
                percent(tally["unnoted_found"], len(unnoted)),
            ]
        rows.append(row + [timings[name].error_text, timings[name].median])
    table(
        f"{title}: new text of {n} messages (message date as the base, detected language)",
        header + ["errors raised", "median us/message"],
        rows,
    )
    agree = counts["dateparser"]["agree"]
    print(f"  ours and dateparser agree (both none, or a common due day): {percent(agree, n)}")
    examples("library finds dates, ours no deadline", only_lib, show)
    examples("ours finds a deadline the library does not resolve to the same day", only_ours, show)
    examples("library dates before the message was sent", lib_past, show)


# --------------------------------------------------------------------------------------------
# 2. Quoted history and signatures

# (name, text, expected new text). The first three are tests/inbox/test_parser.py's cases.
LABELLED_REPLIES: list[tuple[str, str, str]] = [
    ("test: top-posted, sign-off, Gmail header",
     "Thanks, the fix works.\n\nBest regards,\nJane Doe\nACME Corp\n\n"
     "On Tue, 3 Mar 2026 at 10:00, Support <support@example.com> wrote:\n> Please try again.\n",
     "Thanks, the fix works."),
    ("test: Outlook header, dash signature",
     "Can you check again?\n-- \nJoe\n555-1234\n\nFrom: Support\nSent: Monday\n"
     "To: Joe\nSubject: RE: issue\n\nWe looked into it.\n",
     "Can you check again?"),
    ("test: interleaved answers",
     "On Mon, Bob wrote:\n> Does it work?\nYes, since this morning.\n> And the export?\n"
     "Still broken.\n",
     "Yes, since this morning.\nStill broken."),
    ("en: header wrapped before 'wrote:'",
     "Works for me.\n\nOn Tue, 3 Mar 2026 at 10:00, Support Team <support@example.com>\n"
     "wrote:\n> Can you confirm?\n",
     "Works for me."),
    ("en: mobile footer, Apple Mail header",
     "Approved.\n\nSent from my iPhone\n\nOn Mar 3, 2026, at 10:00, Jane <jane@example.com> "
     "wrote:\n\n> Can you approve the quote?\n",
     "Approved."),
    ("en: Outlook underscore separator",
     "Yes, go ahead.\n\n________________________________\nFrom: Jane <jane@example.com>\n"
     "Sent: Tuesday, March 3, 2026 10:00 AM\nTo: Bob\nSubject: quote\n\nCan you approve?\n",
     "Yes, go ahead."),
    ("en: no history, sign-off",
     "Hello,\n\nOur export fails with error 42 since Monday.\nCan you help?\n\nThanks,\nBob\n",
     "Hello,\n\nOur export fails with error 42 since Monday.\nCan you help?"),
    ("en: hyphen list in the body",
     "Here is the plan:\n- migrate the data\n- switch DNS\n- notify users\n\nLet me know.\n",
     "Here is the plan:\n- migrate the data\n- switch DNS\n- notify users\n\nLet me know."),
    ("de: Thunderbird header, sign-off",
     "Danke, passt so.\n\nViele Grüße\nAnna\n\nAm 03.03.2026 um 10:00 schrieb Support "
     "<support@example.com>:\n> Bitte erneut versuchen.\n",
     "Danke, passt so."),
    ("fr: Outlook header, sign-off",
     "Merci, c'est réglé.\n\nCordialement,\nMarie\n\nDe : Support\n"
     "Envoyé : lundi 2 mars 2026 10:00\nÀ : Marie\nObjet : RE: facture\n\n"
     "Nous avons corrigé la facture.\n",
     "Merci, c'est réglé."),
    ("es: Gmail header",
     "Perfecto, gracias.\n\nEl mar, 3 mar 2026 a las 10:00, Soporte (<soporte@example.com>) "
     "escribió:\n> ¿Funciona ahora?\n",
     "Perfecto, gracias."),
    ("it: Gmail header",
     "Va bene, grazie.\n\nIl giorno mar 3 mar 2026 alle ore 10:00 Supporto <s@example.com> "
     "ha scritto:\n> Funziona?\n",
     "Va bene, grazie."),
    ("nl: Gmail header, sign-off",
     "Dank je, het werkt.\n\nMet vriendelijke groet,\nJan\n\nOp di 3 mrt 2026 om 10:00 schreef "
     "Support <support@example.com>:\n> Probeer het opnieuw.\n",
     "Dank je, het werkt."),
    ("pt: Gmail header",
     "Obrigado, resolvido.\n\nEm ter., 3 de mar. de 2026 às 10:00, Suporte <s@example.com> "
     "escreveu:\n> Tente novamente.\n",
     "Obrigado, resolvido."),
]  # fmt: skip

# mail-parser-reply's languages that our mail is written in.
REPLY_LANGUAGES = ["en", "de", "fr", "es", "it", "nl"]
_MULTILINGUAL = mailparser_reply.EmailReplyParser(languages=REPLY_LANGUAGES)


def ours_reply(text: str) -> str:
    return split_reply(text).new_text


def multilingual_reply(text: str) -> str:
    """mail-parser-reply's newest reply, without its headers, signature and disclaimers."""
    replies = _MULTILINGUAL.read(text).replies
    return replies[0].body if replies else ""


def simple_reply(text: str) -> str:
    return email_reply_parser.EmailReplyParser.parse_reply(text)


REPLY_PARSERS: dict[str, Callable[[str], str]] = {
    "ours": ours_reply,
    "mail-parser-reply": multilingual_reply,
    "email-reply-parser": simple_reply,
}


def normalise(text: str | None) -> str:
    """The non-blank lines, stripped: the libraries re-indent and re-space paragraphs."""
    lines = (line.strip() for line in (text or "").replace("\r\n", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


# A sign-off line in the languages of our mail; one followed by a short line (a name) ends the
# new text, so a new text that still has one kept the signature.
_ANY_SIGN_OFF = re.compile(
    r"^(?:best|best regards|kind regards|warm regards|regards|many thanks|thanks|thank you|cheers|"
    r"sincerely|all the best|mit freundlichen grüßen|freundliche grüße|viele grüße|beste grüße|"
    r"liebe grüße|gruß|cordialement|bien à vous|bien cordialement|merci|saludos|un saludo|"
    r"atentamente|cordiali saluti|saluti|grazie|atenciosamente|cumprimentos|obrigad[oa]|"
    r"met vriendelijke groet|groeten|hartelijke groet)\b[\w ,.!]{0,20}$",
    re.I,
)


def _flaws(new_text: str, full_text: str) -> set[str]:
    """What is certainly wrong in a new text taken from full_text."""
    flaws = set()
    lines = new_text.split("\n")
    if any(line.startswith(">") for line in lines):
        flaws.add("keeps '>' quoted lines")
    if any(line.lower().rstrip().endswith("wrote:") for line in lines):
        flaws.add("keeps a 'wrote:' attribution")
    if full_text.strip() and not new_text:
        flaws.add("empty")
    # Cut where a "- " list starts: the two input lines after the last one kept are list items.
    source = normalise(full_text).split("\n")
    if new_text and lines[-1] in source:
        after = source[source.index(lines[-1]) + 1 :][:2]
        if len(after) == 2 and all(re.match(r"-\s?\w", line) for line in after):
            flaws.add("cut at a list")
    tail = lines[-7:]
    if any(_ANY_SIGN_OFF.match(line) and i + 1 < len(tail) for i, line in enumerate(tail)):
        flaws.add("keeps a sign-off")
    return flaws


def _difference(ours: str, theirs: str) -> str:
    """The lines only one of the two new texts has, shortened."""
    diff = list(difflib.ndiff(ours.split("\n"), theirs.split("\n")))
    only_ours = [line[2:] for line in diff if line.startswith("- ") and line[2:].strip()]
    only_theirs = [line[2:] for line in diff if line.startswith("+ ") and line[2:].strip()]
    return (
        f"only ours {len(only_ours)} lines {short(chr(10).join(only_ours), 70)}; "
        f"only theirs {len(only_theirs)} lines {short(chr(10).join(only_theirs), 70)}"
    )


def reply_pair(mails: list[Mail], labelled: list[Mail], show: int) -> None:
    print(
        "\n" + "=" * 100 + "\n2. QUOTED HISTORY AND SIGNATURES: split_reply (ours) vs "
        "mail-parser-reply vs email-reply-parser"
    )

    # Labelled replies.
    timings = {name: Timed() for name in REPLY_PARSERS}
    right = Counter()
    misses: dict[str, list[str]] = {name: [] for name in REPLY_PARSERS}
    for case, text, expected in LABELLED_REPLIES:
        for name, parser in REPLY_PARSERS.items():
            got = normalise(timings[name].call(parser, text))
            if got == normalise(expected):
                right[name] += 1
            else:
                misses[name].append(f"{case}: got {short(got)}")
    n = len(LABELLED_REPLIES)
    table(
        f"Labelled replies ({n}; new text compared line by line, whitespace aside)",
        ["", "right", "errors raised", "median us/call"],
        [
            [name, percent(right[name], n), timings[name].error_text, timings[name].median]
            for name in REPLY_PARSERS
        ],
    )
    for name in REPLY_PARSERS:
        examples(f"{name} wrong", misses[name], show * 3)

    for title, group in (
        ("Corpus (ham)", [m for m in mails if m.group == "ham"]),
        ("Labelled business set", labelled),
    ):
        group = [m for m in group if m.message.text.strip()]
        if group:
            _replies_on_mail(title, group, show)
        else:
            print(f"\n{title}: no messages with text.")


def _replies_on_mail(title: str, mails: list[Mail], show: int) -> None:
    timings = {name: Timed() for name in REPLY_PARSERS}
    flaws = {name: Counter() for name in REPLY_PARSERS}
    flawed_examples: dict[str, list[str]] = {name: [] for name in REPLY_PARSERS}
    agree = Counter()
    kept_share = {name: [] for name in REPLY_PARSERS}
    differs: dict[str, list[str]] = {name: [] for name in REPLY_PARSERS if name != "ours"}
    for mail in mails:
        text = mail.message.text
        outputs = {}
        for name, parser in REPLY_PARSERS.items():
            outputs[name] = normalise(timings[name].call(parser, text))
            kept_share[name].append(len(outputs[name]) / max(1, len(normalise(text))))
            found = _flaws(outputs[name], text)
            flaws[name].update(found)
            flaws[name]["any"] += bool(found)
            if found:
                flawed_examples[name].append(
                    f"{mail.name} ({', '.join(sorted(found))}): {short(outputs[name])}"
                )
        for name in differs:
            if outputs[name] == outputs["ours"]:
                agree[name] += 1
            else:
                differs[name].append(f"{mail.name}: {_difference(outputs['ours'], outputs[name])}")
    n = len(mails)
    table(
        f"{title}: {n} messages' whole text",
        [
            "",
            "same as ours",
            "keeps '>' lines",
            "keeps 'wrote:'",
            "keeps a sign-off",
            "cut at a list",
            "empty",
            "any flaw",
            "median kept share",
            "errors raised",
            "median us/message",
        ],
        [
            [
                name,
                "-" if name == "ours" else percent(agree[name], n),
                flaws[name]["keeps '>' quoted lines"],
                flaws[name]["keeps a 'wrote:' attribution"],
                flaws[name]["keeps a sign-off"],
                flaws[name]["cut at a list"],
                flaws[name]["empty"],
                percent(flaws[name]["any"], n),
                f"{statistics.median(kept_share[name]):.2f}",
                timings[name].error_text,
                timings[name].median,
            ]
            for name in REPLY_PARSERS
        ],
    )
    for name in REPLY_PARSERS:
        examples(f"{name}: certain flaws", flawed_examples[name], show)
    for name, items in differs.items():
        examples(f"ours and {name} differ", items, show)


# --------------------------------------------------------------------------------------------
# 3. Authentication-Results

# (source, header value, expected (authserv-id, dkim, spf, dmarc)); None for a verdict the header
# does not give, and an authserv-id of None where the value has none (Microsoft 365 writes its
# results without one: they are still the receiving server's verdicts).
LABELLED_AUTH_RESULTS: list[tuple[str, str, tuple]] = [
    ("tests/verification/test_trust.py",
     "mx.mailscore.test 1; spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; "
     'dkim=pass header.d=example.com header.s="sel 1"; dmarc=pass header.from=example.com',
     ("mx.mailscore.test", "pass", "pass", "pass")),
    ("tests/verification/test_trust.py",
     "mx.mailscore.test; spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com; "
     "dmarc=pass header.from=example.com",
     ("mx.mailscore.test", "pass", "pass", "pass")),
    ("tests/verification/test_trust.py",
     "mx.mailscore.test; spf=fail smtp.mailfrom=example.com; dkim=none; dmarc=fail "
     "header.from=example.com",
     ("mx.mailscore.test", "none", "fail", "fail")),
    ("tests/verification/test_trust.py",
     "mx.mailscore.test; dmarc=fail header.from=example.com",
     ("mx.mailscore.test", None, None, "fail")),
    ("tests/verification/test_trust.py",
     "forged.example; dmarc=pass header.from=example.com",
     ("forged.example", None, None, "pass")),
    ("tests/verification/test_evidence.py",
     "mx.mailscore.test; spf=pass smtp.mailfrom=sender.test; dmarc=quarantine "
     "header.from=sender.test",
     ("mx.mailscore.test", None, "pass", "quarantine")),
    ("tests/review/test_admin.py",
     "mx.mailscore.test; spf=pass smtp.mailfrom=builder.test; dkim=pass header.d=builder.test; "
     "dmarc=pass header.from=builder.test",
     ("mx.mailscore.test", "pass", "pass", "pass")),
    ("Gmail form",
     "mx.google.com; dkim=pass header.i=@example.com header.s=s1 header.b=AbC123; "
     "spf=pass (google.com: domain of a@example.com designates 192.0.2.1 as permitted sender) "
     "smtp.mailfrom=a@example.com; dmarc=pass (p=REJECT sp=REJECT dis=NONE) "
     "header.from=example.com",
     ("mx.google.com", "pass", "pass", "pass")),
    ("Microsoft 365 form (action=, compauth=)",
     "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.com; dkim=pass (signature was "
     "verified) header.d=example.com;dmarc=pass action=none header.from=example.com;"
     "compauth=pass reason=100",
     (None, "pass", "pass", "pass")),
    ("Microsoft 365 form, failing",
     "spf=softfail (sender IP is 192.0.2.9) smtp.mailfrom=example.com; dkim=none (message not "
     "signed) header.d=none;dmarc=fail action=quarantine header.from=example.com;"
     "compauth=fail reason=000",
     (None, "none", "softfail", "fail")),
    ("Fastmail form, two signatures",
     "mx.messagingengine.com; dkim=pass (2048-bit rsa key sha256) header.d=example.com "
     "header.i=@example.com header.b=AbC header.a=rsa-sha256 header.s=fm1; dkim=fail "
     "(bad signature) header.d=list.example header.b=XyZ; spf=pass smtp.mailfrom=example.com "
     "smtp.helo=out.example.com; dmarc=pass policy.published-domain-policy=none "
     "header.from=example.com",
     ("mx.messagingengine.com", "pass", "pass", "pass")),
    ("version number and upper case",
     "MX.Example.ORG 1; SPF=Pass smtp.mailfrom=example.com; DKIM=Neutral (body hash did not "
     "verify) header.d=example.com",
     ("mx.example.org", "neutral", "pass", None)),
    ("no results", "mx.example.org; none", ("mx.example.org", None, None, None)),
    ("auth and iprev methods",
     "mx.example.org; auth=pass smtp.auth=jane@example.org; iprev=pass policy.iprev=192.0.2.1",
     ("mx.example.org", None, None, None)),
    ("reason= property",
     'mx.example.org; dkim=permerror reason="key not found" header.d=example.com; '
     "spf=temperror smtp.mailfrom=example.com",
     ("mx.example.org", "permerror", "temperror", None)),
    ("folded over lines",
     "mx.example.org;\r\n\tdkim=pass header.d=example.com;\r\n\tspf=pass "
     "smtp.mailfrom=example.com;\r\n\tdmarc=pass header.from=example.com",
     ("mx.example.org", "pass", "pass", "pass")),
    ("malformed: no authserv-id",
     "spf=pass smtp.mailfrom=example.com; dkim=pass header.d=example.com",
     (None, "pass", "pass", None)),
    ("malformed: unterminated comment",
     "mx.example.org; spf=pass (sender IP smtp.mailfrom=example.com; dmarc=pass "
     "header.from=example.com",
     ("mx.example.org", None, "pass", None)),
    ("malformed: unterminated quote",
     'mx.example.org; dkim=pass header.s="sel1 header.d=example.com; dmarc=fail '
     "header.from=example.com",
     ("mx.example.org", "pass", None, None)),
    ("malformed: result without '='",
     "mx.example.org; spf pass; dmarc=fail header.from=example.com",
     ("mx.example.org", None, None, "fail")),
    ("malformed: empty", "", (None, None, None, None)),
    ("malformed: trailing semicolons",
     "mx.example.org; dmarc=pass header.from=example.com;;",
     ("mx.example.org", None, None, "pass")),
]  # fmt: skip


def _verdicts(results: list[tuple[str, str]]) -> dict[str, str]:
    """trust.assess_sender's reading: the last result per method, but dkim passes if any did."""
    verdicts = {method: result for method, result in results}
    if ("dkim", "pass") in results:
        verdicts["dkim"] = "pass"
    return verdicts


def ours_auth(value: str) -> tuple:
    server, results = parse_authentication_results(value)
    verdicts = _verdicts([(r.method, r.result) for r in results])
    return (server or None, verdicts.get("dkim"), verdicts.get("spf"), verdicts.get("dmarc"))


def library_auth(value: str) -> tuple:
    header = authres.AuthenticationResultsHeader.parse_value(value)
    results = [(str(r.method).lower(), str(r.result).lower()) for r in header.results]
    verdicts = _verdicts(results)
    server = (header.authserv_id or "").lower() or None
    return (server, verdicts.get("dkim"), verdicts.get("spf"), verdicts.get("dmarc"))


def auth_pair(mails: list[Mail], labelled: list[Mail], show: int, repeat: int = 200) -> None:
    print(
        "\n" + "=" * 100 + "\n3. AUTHENTICATION-RESULTS: parse_authentication_results (ours) "
        "vs authres"
    )
    ours_time, lib_time = Timed(), Timed()
    right, agree = Counter(), 0
    ours_only, lib_only, both_wrong = [], [], []
    for source, value, expected in LABELLED_AUTH_RESULTS:
        ours = ours_time.call(ours_auth, value)
        lib = lib_time.call(library_auth, value)
        right["ours"] += ours == expected
        right["lib"] += lib == expected
        agree += ours == lib
        line = f"{source}: expected {expected}, ours {ours}, authres {lib or 'error'}"
        if ours == expected and lib != expected:
            ours_only.append(line)
        elif lib == expected and ours != expected:
            lib_only.append(line)
        elif ours != expected:
            both_wrong.append(line)
    # Timing on repeats: one call is a few microseconds.
    for _ in range(repeat):
        for _, value, _ in LABELLED_AUTH_RESULTS[:12]:
            ours_time.call(ours_auth, value)
            lib_time.call(library_auth, value)
    n = len(LABELLED_AUTH_RESULTS)
    table(
        f"Labelled header values ({n}: the tests', common receivers' forms, malformed ones); "
        "a case is right when authserv-id and the dkim, spf and dmarc verdicts all are",
        ["", "right", "errors raised (incl. timing repeats)", "median us/call"],
        [
            ["ours", percent(right["ours"], n), ours_time.error_text, ours_time.median],
            ["authres", percent(right["lib"], n), lib_time.error_text, lib_time.median],
        ],
    )
    print(f"  agreement: {percent(agree, n)}")
    examples("ours right, authres wrong or raising", ours_only, show * 3)
    examples("authres right, ours wrong", lib_only, show * 3)
    examples("both wrong", both_wrong, show * 3)

    for title, group in (("Corpus", mails), ("Labelled business set", labelled)):
        values = [
            v for m in group for k, v in m.raw_headers if k.lower() == "authentication-results"
        ]
        print(f"\n{title}: {len(values)} Authentication-Results headers in {len(group)} messages.")
        if not values:
            continue
        same, errors, differing = 0, Counter(), []
        for value in values:
            ours = ours_auth(value)
            try:
                lib = library_auth(value)
            except Exception as exc:  # noqa: BLE001 - a library's errors are what is measured
                errors[type(exc).__name__] += 1
                lib = None
            same += ours == lib
            if ours != lib:
                differing.append(f"{short(value, 70)}: ours {ours}, authres {lib or 'error'}")
        print(f"  same verdicts: {percent(same, len(values))}; authres errors: {dict(errors)}")
        examples("differing", differing, show)


# --------------------------------------------------------------------------------------------
# 4. Lookalike domains

OWN_DOMAINS = ("brightdesk.io",)

# (domain, imitates a protected domain?)
LABELLED_DOMAINS: list[tuple[str, bool]] = [
    ("paypa1.com", True), ("rnicrosoft.com", True), ("micosoft.com", True),
    ("paypal-secure.com", True), ("xn--pypal-4ve.com", True), ("brightdesk-io.com", True),
    ("brlghtdesk.io", True), ("brightdesk.co", True), ("brightdessk.io", True),
    ("\u0430pple.com", True),  # Cyrillic а
    ("xn--pple-43d.com", True),  # the same, as the DNS writes it
    ("g\u043e\u043egle.com", True),  # Cyrillic о о
    ("micr\u03bfsoft.com", True),  # Greek ο
    ("\u0430\u0440\u0440\u04cf\u0435.com", True),  # all-Cyrillic "аррӏе"
    ("\u0261oogle.com", True),  # Latin script g, U+0261
    ("faceb00k.com", True), ("linkedln.com", True), ("g00gle.com", True),
    ("dropbox-login.com", True), ("arnazon.com", True), ("netfIix.com", True),
    ("paypal.com.secure-login.net", True), ("support-brightdesk.io", True),
    ("paypal.co", True), ("xn--80ak6aa92e.com", True),  # the all-Cyrillic one, as DNS writes it
    ("paypal.com", False), ("mail.paypal.com", False), ("google.com", False),
    ("amazonaws.com", False), ("brightdesk.io", False), ("help.brightdesk.io", False),
    ("example.org", False), ("m\u00fcnchen.de", False), ("b\u00fccher.de", False),
    ("\u044f\u043d\u0434\u0435\u043a\u0441.\u0440\u0444", False),  # яндекс.рф
    ("\u4f8b\u3048.jp", False), ("gmx.de", False), ("parcelhop.eu", False),
    ("lumenpay.co.uk", False), ("office365.com", False), ("github.io", False),
    ("appleid.apple.com", False), ("stripe.dev", False), ("zoom.com", False),
    ("mail.com", False), ("email.com", False), ("paypal-community.com", False),
    ("amazon.co.uk", False), ("microsoftonline.com", False), ("163.com", False),
]  # fmt: skip

PROTECTED = OWN_DOMAINS + WELL_KNOWN_DOMAINS
_lookalike_uncached = lookalike_of.__wrapped__


def ours_lookalike(domain: str) -> bool:
    return _lookalike_uncached(domain, PROTECTED) is not None


def library_dangerous(domain: str) -> bool:
    return bool(confusables.is_dangerous(to_unicode(domain)))


def library_confusable_with_latin(domain: str) -> bool:
    return bool(confusables.is_confusable(to_unicode(domain), preferred_aliases=["latin"]))


LOOKALIKE_CHECKS: dict[str, Callable[[str], bool]] = {
    "ours": ours_lookalike,
    "is_dangerous": library_dangerous,
    "is_confusable(latin)": library_confusable_with_latin,
}


def lookalike_pair(mails: list[Mail], labelled: list[Mail], show: int, repeat: int = 50) -> None:
    print("\n" + "=" * 100 + "\n4. LOOKALIKE DOMAINS: lookalike_of (ours) vs confusable_homoglyphs")
    timings = {name: Timed() for name in LOOKALIKE_CHECKS}
    verdicts = {name: {} for name in LOOKALIKE_CHECKS}
    for domain, _ in LABELLED_DOMAINS:
        for name, check in LOOKALIKE_CHECKS.items():
            verdicts[name][domain] = bool(timings[name].call(check, domain))
    for _ in range(repeat):
        for domain, _ in LABELLED_DOMAINS:
            for name, check in LOOKALIKE_CHECKS.items():
                timings[name].call(check, domain)
    verdicts["ours or is_dangerous"] = {
        d: verdicts["ours"][d] or verdicts["is_dangerous"][d] for d, _ in LABELLED_DOMAINS
    }
    lookalikes = [d for d, is_lookalike in LABELLED_DOMAINS if is_lookalike]
    genuine = [d for d, is_lookalike in LABELLED_DOMAINS if not is_lookalike]
    rows = []
    for name, found in verdicts.items():
        caught = sum(found[d] for d in lookalikes)
        false = sum(found[d] for d in genuine)
        timing = timings.get(name)
        rows.append(
            [
                name,
                percent(caught, len(lookalikes)),
                percent(false, len(genuine)),
                timing.error_text if timing else "-",
                timing.median if timing else "-",
            ]
        )
    protected = ", ".join(OWN_DOMAINS) + f" + the {len(WELL_KNOWN_DOMAINS)} WELL_KNOWN_DOMAINS"
    table(
        f"Labelled domains ({len(lookalikes)} lookalikes, {len(genuine)} genuine; protected: "
        f"{protected})",
        ["", "lookalikes caught", "genuine flagged", "errors raised", "median us/call"],
        rows,
    )
    table(
        "Per domain (x = flagged)",
        ["domain", "lookalike?"] + list(verdicts),
        [
            [
                f"{d} ({d.encode('idna').decode() if not d.isascii() else ''})".replace(" ()", ""),
                "yes" if is_lookalike else "no",
            ]
            + ["x" if verdicts[n][d] else "" for n in verdicts]
            for d, is_lookalike in LABELLED_DOMAINS
        ],
    )

    # Senders in the corpora: what each flags, where there is no label.
    senders = sorted(
        {
            m.message.from_address.rsplit("@", 1)[1].lower()
            for m in mails + labelled
            if m.message.from_address and "@" in m.message.from_address
        }
    )
    flagged = {name: [d for d in senders if check(d)] for name, check in LOOKALIKE_CHECKS.items()}
    print(
        f"\nSender domains in the corpora: {len(senders)} distinct; flagged by "
        + ", ".join(f"{name} {len(found)}" for name, found in flagged.items())
    )
    for name, found in flagged.items():
        shown = [
            f"{d} -> {_lookalike_uncached(d, PROTECTED)}" if name == "ours" else d for d in found
        ]
        examples(f"flagged by {name}", shown, show * 2)


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=DEFAULT_CORPUS,
        help="raw messages, one a file, in folders (spam folders named spam-*)",
    )
    parser.add_argument(
        "--labelled", type=Path, default=DEFAULT_LABELLED, help="a folder of .eml files (read only)"
    )
    parser.add_argument(
        "--sample", type=int, default=600, help="corpus messages for the slow comparisons (0: all)"
    )
    parser.add_argument("--examples", type=int, default=3, help="examples per finding")
    args = parser.parse_args()

    print("Libraries: " + ", ".join(f"{name} {version(name)}" for name in LIBRARIES))
    print(f"Python {sys.version.split()[0]}")
    start = time.perf_counter()
    corpus = load_mail(args.corpus, lambda p: "spam" if "spam" in p.parent.name else "ham")
    labelled = load_mail(args.labelled, lambda p: "labelled")
    sample = spread(corpus, args.sample)
    print(
        f"Corpus {args.corpus}: {len(corpus)} messages parsed, {len(sample)} in the sample; "
        f"labelled set {args.labelled}: {len(labelled)} messages "
        f"({time.perf_counter() - start:.1f}s)"
    )

    deadline_pair(sample, labelled, load_notes(args.labelled), args.examples)
    reply_pair(sample, labelled, args.examples)
    auth_pair(corpus, labelled, args.examples)
    lookalike_pair(corpus, labelled, args.examples)


if __name__ == "__main__":
    main()
