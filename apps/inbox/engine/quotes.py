"""Separate the new text of a message from the quoted history and the signature below it."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Attributions: "On ... wrote:" in the languages of our mail. Clients wrap them over more lines.
_ATTRIBUTION_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.I | re.S),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.I | re.S),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,80}:\s*$", re.I | re.S),
    re.compile(r"^\s*El\b.{0,300}\bescribió:\s*$", re.I | re.S),
    re.compile(r"^\s*Il giorno\b.{0,300}\bha scritto:\s*$", re.I | re.S),
    re.compile(r"^\s*Op\b.{0,300}\bschreef\b.{0,80}:\s*$", re.I | re.S),
    re.compile(r"^\s*Em\b.{0,300}\bescreveu:\s*$", re.I | re.S),
    re.compile(r"^\s*(Den|På)\b.{0,300}\bskrev\b.{0,80}:\s*$", re.I | re.S),
    # Chinese, Japanese and Korean, as Gmail and Thunderbird write them: "王伟 <w@…> 于2026年12月3日
    # 周四 上午10:00写道：", "2026年12月3日(木) 10:00 Support <s@…>:", "2026년 12월 3일 (목) 오전 10:00,
    # Support <s@…>님이 작성:", "田中 さんは書きました:".
    re.compile(r"^.{0,300}[于於]\s*\d{4}\s*年.{0,80}[写寫]道\s*[:：]\s*$", re.S),
    re.compile(r"^\s*\d{4}年\d{1,2}月\d{1,2}日.{0,40}\d{1,2}:\d{2}.{0,250}<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$", re.S),
    re.compile(r"^\s*\d{4}년\s*\d{1,2}월\s*\d{1,2}일.{0,300}님이\s*작성\s*[:：]?\s*$", re.S),
    re.compile(r"^.{0,300}さんは書きました\s*[:：]\s*$", re.S),
]  # fmt: skip
# The line above a forwarded message.
_FORWARD_HEADERS = [
    re.compile(r"^\s*-{2,}\s*(Forwarded message|Message transféré|Weitergeleitete Nachricht|"
               r"Mensaje reenviado|Messaggio inoltrato|Mensagem encaminhada|Doorgestuurd bericht)"
               r"\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*Begin forwarded message:\s*$", re.I),
]  # fmt: skip
# A line that opens the quoted history, in the forms common mail clients write.
_QUOTE_HEADERS = [
    *_ATTRIBUTION_HEADERS,
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),
    *_FORWARD_HEADERS,
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above the quoted From, Sent, To, Subject
]
# Where a client wraps a long attribution, its first line starts with one of these.
_WRAPPED_HEADER_STARTS = ("on ", "le ", "am ", "el ", "il giorno ", "op ", "em ", "den ", "på ")
# "Jane Doe wrote:", "--- In list@..., Bob <b@...> wrote:": an attribution in any form. Alone it
# could be the writer's own sentence, so it counts only right above ">" quoted lines.
_ATTRIBUTION = re.compile(
    r"(\b(wrote|writes|said|a écrit|schrieb|escribió|ha scritto|schreef|escreveu|skrev)\s*:"
    r"|([写寫]道|님이 작성|さんは書きました)\s*[:：])\s*$",
    re.I,
)
# Outlook's block above the quoted message: From, then Sent, To, Subject, in the languages of our
# mail and in Chinese, Japanese and Korean (with a full-width colon too).
_OUTLOOK_HEADER = re.compile(
    r"^\s*\*?(From|De|Von|Van|Da|发件人|發件人|寄件者|差出人|보낸 사람)\s*[:：]\*?\s", re.I
)
_OUTLOOK_FOLLOWERS = re.compile(
    r"^\s*\*?(Sent|Date|Envoyé|Gesendet|Enviado|Inviato|Verzonden|Datum|Fecha|Data|"
    r"To|À|An|Para|A|Aan|Subject|Objet|Betreff|Asunto|Oggetto|Assunto|Onderwerp|"
    r"发送时间|發送時間|寄件日期|日期|收件人|收件者|主题|主旨|送信日時|宛先|件名|"
    r"보낸 날짜|받는 사람|제목)\s*[:：]",
    re.I,
)
# Header lines of a forwarded message that Outlook's block does not name.
_OTHER_FORWARDED_FIELDS = re.compile(r"^\s*\*?(Cc|Enviada)\s*:", re.I)
_SIGN_OFF = re.compile(
    r"^\s*(best|kind|warm|many thanks|thanks|thank you|thx|cheers|regards|sincerely|best regards|"
    r"kind regards|warm regards|best wishes|all the best|yours|"
    r"cordialement|bien cordialement|bien à vous|merci|"
    r"mit freundlichen grüßen|freundliche grüße|viele grüße|beste grüße|liebe grüße|gruß|danke|"
    r"herzliche grüße|schöne grüße|mfg|lg|vielen dank|besten dank|"
    r"bonne journée|belle journée|salutations|sincères salutations|à bientôt|merci d'avance|"
    r"saludos|un saludo|un cordial saludo|atentamente|cordialmente|gracias|muchas gracias|"
    r"un abrazo|abrazos|quedo (atent[oa]|a la espera|a (su|tu) disposición)|"
    r"cordiali saluti|distinti saluti|saluti|un saluto|un caro saluto|buona giornata|a presto|grazie|"
    r"atenciosamente|att|cumprimentos|(com os )?melhores cumprimentos|obrigad[oa]|abraços|"
    r"(um )?abraço|"
    r"groeten|(met )?vriendelijke groet(en)?|(met )?hartelijke groet(en)?|groetjes|bedankt|"
    r"alvast bedankt)\b[\w ,.!/]{0,30}$"
    # Chinese, Japanese and Korean sign-offs stand alone on their line: with no spaces between
    # words, what follows on the line would be a sentence ("谢谢！问题已经解决了。").
    r"|^\s*(よろしくお願い(いた|致|)します|宜しくお願い(いた|致|)します|以上、?よろしくお願い(いた|致|)します|"
    r"谢谢|謝謝|此致|敬礼|祝好|감사합니다|고맙습니다)[\s,.!。！、，]*$",
    re.I,
)
_MOBILE_FOOTER = re.compile(
    r"^\s*(sent from my|get outlook for|sent via|envoyé de mon|enviado d[eo] meu|enviado desde mi|"
    r"von meinem \w+ gesendet|inviato da)\b",
    re.I,
)
# The line under a sign-off names the writer or the team ("Dr. Katrin Brenner", "The Atlassian
# team"): a few words, not a sentence ("It works again.").
_SIGNER = re.compile(r"^(?=.{1,40}$)\S+( \S+){0,5}$")
_SENTENCE_END = re.compile(r"(\S{4,}[.]|[?!:;,])$")
_QUESTION = re.compile(r"\?(\s|$)")  # not the "?" of a link's query
_POSTSCRIPT = re.compile(r"^\s*p\.?\s?s\b", re.I)
SIGNATURE_MAX_LINES = 12


@dataclass
class SplitText:
    new_text: str
    quoted: str
    signature: str
    sign_off_name: str | None = None


def _quote_header_length(lines: list[str], index: int) -> int:
    """How many lines the history's opening header at index takes (0 when there is none)."""
    line = lines[index]
    # "On Tue, 3 Mar 2024 at 10:00, Jane <jane@example.com>" often wraps before "wrote:".
    if any(pattern.match(line) for pattern in _QUOTE_HEADERS):
        return 1
    if line.strip().lower().startswith(_WRAPPED_HEADER_STARTS):
        for extra in (1, 2):
            if index + extra >= len(lines):
                break
            joined = " ".join(part.strip() for part in lines[index : index + extra + 1])
            if any(pattern.match(joined) for pattern in _ATTRIBUTION_HEADERS):
                return extra + 1
    if _OUTLOOK_HEADER.match(line):
        following = lines[index + 1 : index + 5]
        if sum(1 for f in following if _OUTLOOK_FOLLOWERS.match(f)) >= 2:
            return 1
    return 0


def _next_contents(lines: list[str]) -> list[str]:
    """For each line, the first non-blank line after it ("" at the end): one pass from the end,
    so that a message of many blank lines costs no more than its length."""
    following = [""] * len(lines)
    upcoming = ""
    for index in range(len(lines) - 1, -1, -1):
        following[index] = upcoming
        if lines[index].strip():
            upcoming = lines[index]
    return following


def split_reply(text: str) -> SplitText:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    following = _next_contents(lines)
    kept: list[str] = []
    quoted: list[str] = []
    written = False  # whether the writer's own text has begun
    index = 0
    while index < len(lines):
        line = lines[index]
        header = _quote_header_length(lines, index)
        above_quotes = following[index + max(header, 1) - 1].lstrip().startswith(">")
        if header and (above_quotes or not written):
            # An attribution above ">" quotes (bottom-posting, interleaved answers): only the
            # quoted lines are history; the writer's own lines between them are new. With
            # nothing written above it, the message is below it: a forward without a comment,
            # quotes marked some other way ("--]"), or a rule that is only layout (Teams).
            quoted.extend(lines[index : index + header])
            index += header
            continue
        if header:
            # Top-posting: everything from here down is the history, quoted or not.
            quoted.extend(lines[index:])
            break
        attribution = above_quotes and len(line) <= 200 and _ATTRIBUTION.search(line)
        if attribution or line.lstrip().startswith(">"):
            quoted.append(line)
        else:
            kept.append(line)
            written = written or bool(line.strip())
        index += 1

    signature: list[str] = []
    for index, line in enumerate(kept):
        if line.rstrip() in ("--", "-- ", "—") or _MOBILE_FOOTER.match(line):
            signature = kept[index:]
            kept = kept[:index]
            break
    sign_off_name = None
    # A sign-off near the end ("Best regards,\nJane") starts the signature block: the name,
    # title, company, address and the legal notice below it.
    tail_start = max(0, len(kept) - SIGNATURE_MAX_LINES - 4)
    for index in range(len(kept) - 1, tail_start - 1, -1):
        if _SIGN_OFF.match(kept[index]):
            if not any(line.strip() for line in kept[:index]):
                break  # "Thanks, it works now." is the whole message, not its signature
            after = [line.strip() for line in kept[index + 1 :] if line.strip()]
            if _is_signature(after):
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


def _is_signature(after: list[str]) -> bool:
    """Whether the non-blank lines under a sign-off are a signature rather than more of the
    message: they start with a name or a team, hold no question and no postscript."""
    if not after:
        return True
    if len(after) > SIGNATURE_MAX_LINES:
        return False
    if not _SIGNER.match(after[0]) or _SENTENCE_END.search(after[0]):
        return False
    # Below the name: title, company, address, phone, a legal notice; never a question.
    return not any(_QUESTION.search(line) or _POSTSCRIPT.match(line) for line in after)


def forwarded_message(quoted: str) -> str | None:
    """The message a forward carries: the quoted history below its forwarded-message line,
    without the From, Date, To and Subject lines; None where the history is not a forward."""
    first, _, rest = quoted.partition("\n")
    if not any(pattern.match(first) for pattern in _FORWARD_HEADERS):
        return None
    fields = (_OUTLOOK_HEADER, _OUTLOOK_FOLLOWERS, _OTHER_FORWARDED_FIELDS)
    lines = [line for line in rest.split("\n") if not any(f.match(line) for f in fields)]
    return "\n".join(lines).strip()
