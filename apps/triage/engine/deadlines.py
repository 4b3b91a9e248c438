"""Deadlines in text ("by Friday 5pm", "within 24 hours", "before March 3", "bis Freitag, 17 Uhr",
"avant le 15 mars"), resolved against the message's own date, not the time we read it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

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

# German, French, Spanish, Italian, Portuguese and Dutch: the words for the same deadlines, each
# mapped to the English one the resolver understands.
_DAYS_ELSEWHERE = {
    "tonight": r"heute abend|ce soir|esta noche|stasera|hoje à noite|vanavond",
    "today": r"heute|aujourd'hui|hoy|oggi|hoje|vandaag",
    "tomorrow": r"morgen|demain|mañana|domani|amanhã",
    "end of day": r"ende des tages|tagesende|fin de (?:la )?journée|fin del día|"
                  r"fine (?:della )?giornata|fim do dia|eind(?:e)? van de dag",
    "end of week": r"ende der woche|fin de (?:la )?semaine|final de la semana|fin de semana|"
                   r"fine settimana|fim da semana|eind(?:e)? van de week",
    "monday": r"montag|lundi|lunes|luned[iì]|segunda(?:-feira)?|maandag",
    "tuesday": r"dienstag|mardi|martes|marted[iì]|terça(?:-feira)?|dinsdag",
    "wednesday": r"mittwoch|mercredi|miércoles|mercoled[iì]|quarta(?:-feira)?|woensdag",
    "thursday": r"donnerstag|jeudi|jueves|gioved[iì]|quinta(?:-feira)?|donderdag",
    "friday": r"freitag|vendredi|viernes|venerd[iì]|sexta(?:-feira)?|vrijdag",
    "saturday": r"samstag|samedi|sábado|sabato|zaterdag",
    "sunday": r"sonntag|dimanche|domingo|domenica|zondag",
}  # fmt: skip
_MONTHS_ELSEWHERE = [
    r"januar|jänner|janvier|enero|gennaio|janeiro|januari",
    r"februar|février|febrero|febbraio|fevereiro|februari",
    r"märz|mars|marzo|março|maart",
    r"april|avril|abril|aprile",
    r"mai|mayo|maggio|maio|mei",
    r"juni|juin|junio|giugno|junho",
    r"juli|juillet|julio|luglio|julho",
    r"august|août|agosto|augustus",
    r"september|septembre|septiembre|settembre|setembro",
    r"oktober|octobre|octubre|ottobre|outubro",
    r"november|novembre|noviembre|novembro",
    r"dezember|décembre|diciembre|dicembre|dezembro|december",
]
_UNITS_ELSEWHERE = {
    "business days": r"werktagen?|arbeitstagen?|jours ouvr(?:és|ables)|días hábiles|"
                     r"giorni lavorativi|dias úteis|werkdagen",
    "hours": r"stunden?|heures?|horas?|ore|ora|uur",
    "days": r"tagen?|jours?|días|dias|giorni|giorno|dagen|dag",
    "weeks": r"wochen?|semaines?|semanas?|settimane?|weken|week",
}  # fmt: skip
_ONE_ELSEWHERE = r"einer|einem|eine|ein|une|un|una|uno|uma|um|een"
_NEXT_BEFORE = r"nächsten|kommenden|próximo|próxima|volgende"
_NEXT_AFTER = r"prochain|prossimo|que viene"
# "bis" and "até" also end a time range ("von 9 bis 17 Uhr", "Montag bis Freitag") and a farewell
# ("Bis morgen!"); the resolver skips both.
_TRIGGER_ELSEWHERE = (
    r"(?P<trigger>bis(?: spätestens)?(?: zum| zur| am)?|spätestens(?: am| bis| zum)?|vor dem|vor|"
    r"avant(?: le| la)?|d'ici(?: le| la| à)?|au plus tard(?: le| la)?|jusqu'(?:au|à)|"
    r"antes del?|antes de la|para el|a más tardar(?: el)?|hasta el|"
    r"entro(?: e non oltre)?(?: il| la| le)?|prima di|"
    r"até(?: ao| à| o| a| dia)?|antes da|antes do|"
    r"uiterlijk(?: op)?|vóór|voor)"
)


def _alternatives(words: dict[str, str] | list[str]) -> str:
    return "|".join(words.values() if isinstance(words, dict) else words)


_DAY_ELSEWHERE = (
    rf"(?:(?P<next_before>{_NEXT_BEFORE})\s+)?(?P<day>{_alternatives(_DAYS_ELSEWHERE)})"
    rf"(?:\s+(?P<next_after>{_NEXT_AFTER}))?"
)
_DATE_ELSEWHERE = (
    rf"(?P<date>\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}\.\d{{1,2}}\.(?:\d{{2,4}})?|\d{{1,2}}/\d{{1,2}}"
    rf"(?:/\d{{2,4}})?|\d{{1,2}}\.?\s+(?:de\s+)?(?P<month>{_alternatives(_MONTHS_ELSEWHERE)})\b"
    rf"(?:\s+(?:de\s+)?\d{{4}})?)"
)
# "17 Uhr", "10h30", "avant 10 heures", "voor 12.00 uur", "alle 15:00". Not "1 hora": "até 1
# hora" is "up to an hour"; Spanish and Portuguese write a time "a las 10" or "às 10h".
_TIME_ELSEWHERE = (
    r"(?:(?:um|à|a las|alle|às|om)\s+)?"
    r"(?P<time>\d{1,2}(?:[:h.]\d{2})?\s*(?:uhr|h|heures?|uur)\b|\d{1,2}:\d{2})"
)
_PATTERNS_ELSEWHERE = [
    re.compile(rf"\b{_TRIGGER_ELSEWHERE}\s+{_DAY_ELSEWHERE}\b(?:\s*,?\s*{_TIME_ELSEWHERE})?", re.I),
    re.compile(rf"\b{_TRIGGER_ELSEWHERE}\s+{_DATE_ELSEWHERE}(?:\s*,?\s*{_TIME_ELSEWHERE})?", re.I),
    re.compile(rf"\b{_TRIGGER_ELSEWHERE}\s+{_TIME_ELSEWHERE}", re.I),
    re.compile(
        r"\b(?P<within>innerhalb(?: von| der nächsten)?|binnen|sous|dans les|en un plazo de|"
        r"en las próximas|en los próximos|dentro de|entro|nel giro di|no prazo de|nas próximas|"
        rf"nos próximos)\s+(?P<count>\d{{1,3}}|{_ONE_ELSEWHERE})\s+"
        rf"(?P<unit>{_alternatives(_UNITS_ELSEWHERE)})\b",
        re.I,
    ),
]
# A time or a weekday right before "bis": the end of a range ("9 bis 17 Uhr", "Montag bis
# Freitag"), where "heute bis 17 Uhr" is a deadline.
_RANGE_BEFORE = re.compile(
    rf"\b(\d{{1,2}}([:.h]\d{{2}})?\s*(uhr|h)?|"
    rf"{'|'.join(_DAYS_ELSEWHERE[day] for day in _WEEKDAYS)})\s*$",
    re.I,
)


# Chinese, Japanese and Korean put the deadline's word after the day: 明天之前, 金曜日まで,
# 내일까지 ("before tomorrow", "until Friday"); 今日中 is "within today". No spaces between words.
_DAYS_CJK = {
    "tonight": r"今晚|今夜|오늘\s*밤",
    "today": r"今天|今日|本日|当日|오늘",
    "tomorrow": r"明天|明日|내일",
    "end of day": r"下班|終業(?:時間)?|퇴근\s*전",
    "end of week": r"本周末?|这周末?|這週末?|本週末?|今週(?:末)?|이번\s*주(?:말)?",
}  # fmt: skip
# Weekdays: Chinese after 周 or 星期 ("周五"), Japanese before 曜日 ("金曜日"), Korean before 요일.
_WEEK_ZH = r"(?:周|星期|週|禮拜|礼拜)"
_DAYS_CJK |= {
    day: rf"{_WEEK_ZH}{zh}|{ja}曜(?:日)?|{ko}요일"
    for day, zh, ja, ko in zip(_WEEKDAYS, [*"一二三四五六", "[日天]"], "月火水木金土日", "월화수목금토일",
                               strict=True)
}  # fmt: skip
# A day, a date or a time of day (at least one of them), then the word that makes it a deadline.
_PATTERN_CJK = re.compile(
    rf"(?P<next>下(?={_WEEK_ZH})|来週|다음\s*주\s*)?"
    rf"(?:(?P<day>{_alternatives(_DAYS_CJK)})|(?P<month>\d{{1,2}})\s*[月월]\s*(?P<date>\d{{1,2}})\s*[日号號일])?"
    r"(?:的|の)?\s*(?:(?P<part>早上|上午|朝|午前|아침|中午|昼|正午|점심)|"
    r"(?P<half>上午|下午|午前|午後|오전|오후)?\s*(?P<hour>\d{1,2})\s*(?:[点點時时시]|:(?P<minute>\d{2}))"
    r"(?:\s*(?P<minute_word>\d{1,2})\s*[分분])?)?"
    r"\s*(?P<trigger>之前|以前|为止|為止|前|までに|まで|中(?!午)|까지|중으로|중에)"
)
_PART_CLOCK = {"早上": 9, "上午": 9, "朝": 9, "午前": 9, "아침": 9,
               "中午": 12, "昼": 12, "正午": 12, "점심": 12}  # fmt: skip
_CJK_LANGUAGES = ("zh", "ja", "ko")


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


def _clock_elsewhere(text: str | None, default: time) -> time:
    """ "17 Uhr", "10h30", "12:00", "15.00 uur" as a time of day."""
    if not text:
        return default
    hour, minute = re.match(r"(\d{1,2})(?:[:h.](\d{2}))?", text).groups()
    return time(int(hour), int(minute or 0))


def _english_day(word: str) -> str:
    word = word.lower()
    for english, words in _DAYS_ELSEWHERE.items():
        if re.fullmatch(words, word):
            return english
    return word


def _on_day(day: str, clock: time, sent: datetime, *, clock_given: bool) -> datetime:
    """The moment "by <day>" means, said at sent."""
    base = sent.date()
    if day == "tomorrow":
        base += timedelta(days=1)
    elif day.startswith("end of") and "week" in day:
        base += timedelta(days=(4 - sent.weekday()) % 7)
    elif day.replace("next ", "") in _WEEKDAYS:
        target = _WEEKDAYS.index(day.replace("next ", ""))
        ahead = (target - sent.weekday()) % 7 or 7
        if day.startswith("next ") and ahead < 7:
            ahead += 7 if ahead <= 2 else 0
        base += timedelta(days=ahead)
    if day == "tonight" and not clock_given:
        clock = time(21, 0)
    return datetime.combine(base, clock, tzinfo=sent.tzinfo)


def _on_date(day: date, clock: time, sent: datetime, *, year_given: bool) -> datetime:
    due = datetime.combine(day, clock, tzinfo=sent.tzinfo)
    if due < sent - timedelta(days=180) and not year_given:
        due = due.replace(year=due.year + 1)  # "by March 3" written in December
    return due


def _within(count: str, unit: str, sent: datetime) -> datetime:
    amount = _NUMBERS.get(count.lower()) or (1 if not count.isdigit() else int(count))
    if unit.startswith("hour"):
        return sent + timedelta(hours=amount)
    if unit.startswith("week"):
        return sent + timedelta(weeks=amount)
    return sent + timedelta(days=amount)


# "Until" also ends a period already over ("the site was down until 9am"): after a verb in the
# past tense, or at a clock time already past when the message was written, it is no deadline.
_PAST_BEFORE = re.compile(r"\b(was|were|had been|stayed|lasted|remained)\b[^.!?\n]{0,40}$", re.I)


def _resolve(match: re.Match, text: str, sent: datetime) -> datetime | None:
    groups = match.groupdict()
    end_of_day = time(17, 0)
    period = (groups.get("trigger") or "").lower() in ("until", "till")
    if period and _PAST_BEFORE.search(text[max(0, match.start() - 60) : match.start()]):
        return None
    if groups.get("within"):
        return _within(groups["count"], groups["unit"].lower(), sent)
    clock = _clock(groups.get("time"), end_of_day)
    if groups.get("date"):
        try:
            parsed = date_parser.parse(
                groups["date"], default=sent.replace(tzinfo=None), dayfirst=False
            )
        except (ValueError, OverflowError):
            return None
        year_given = bool(re.search(r"\d{4}", groups["date"]))
        due = _on_date(parsed.date(), clock, sent, year_given=year_given)
    else:
        day = (groups.get("day") or "").lower()
        due = _on_day(day, clock, sent, clock_given=bool(groups.get("time")))
        if not day and due <= sent:
            if period:
                return None  # "until 9am" written at 10: a period that has ended
            due += timedelta(days=1)  # "by 6am" written at 11pm: the next morning
    return due


def _resolve_elsewhere(match: re.Match, text: str, sent: datetime) -> datetime | None:
    groups = match.groupdict()
    trigger = groups.get("trigger") or ""
    if trigger.lower().startswith(("bis", "até", "vor")):
        before = text[max(0, match.start() - 24) : match.start()]
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        rest_of_line = text[match.end() : line_end if line_end != -1 else len(text)]
        before_on_line = text[line_start : match.start()].strip()
        opens_line = not before_on_line or before_on_line.endswith(",")
        farewell = opens_line and not rest_of_line.strip(" !.,")  # "Obrigado, até amanhã!"
        if _RANGE_BEFORE.search(before) or farewell:
            return None  # also "von 9 bis 17 Uhr", "Montag bis Freitag"
    if groups.get("within"):
        unit = groups["unit"].lower()
        english = next(
            (e for e, words in _UNITS_ELSEWHERE.items() if re.fullmatch(words, unit)), "days"
        )
        return _within(groups["count"], english, sent)
    clock = _clock_elsewhere(groups.get("time"), time(17, 0))
    if groups.get("date"):
        due = _date_elsewhere(groups, clock, sent)
    else:
        day = _english_day(groups.get("day") or "")
        if trigger.lower() == "voor" and day in ("today", "tonight"):
            return None  # "bedankt voor vandaag": thanks for today
        if day in _WEEKDAYS and (groups.get("next_before") or groups.get("next_after")):
            day = f"next {day}"
        due = _on_day(day, clock, sent, clock_given=bool(groups.get("time")))
    return due


def _date_elsewhere(groups: dict, clock: time, sent: datetime) -> datetime | None:
    """ "15. März", "18 de março", "15.03.", "15/03/2026": the day comes before the month."""
    text = groups["date"]
    numbers = [int(n) for n in re.findall(r"\d+", text)]
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return _on_date(date.fromisoformat(text), clock, sent, year_given=True)
        if groups.get("month"):
            month_word = groups["month"].lower()
            month = next(i for i, words in enumerate(_MONTHS_ELSEWHERE, 1)
                         if re.fullmatch(words, month_word))  # fmt: skip
            day, year = numbers[0], (numbers[1] if len(numbers) > 1 else None)
        else:
            day, month = numbers[0], numbers[1]
            year = numbers[2] if len(numbers) > 2 else None
        if year is not None and year < 100:
            year += 2000
        due_day = date(year or sent.year, month, day)
    except (ValueError, IndexError, StopIteration):
        return None
    return _on_date(due_day, clock, sent, year_given=year is not None)


def _resolve_cjk(match: re.Match, sent: datetime) -> datetime | None:
    groups = match.groupdict()
    if not (groups["day"] or groups["date"] or groups["part"] or groups["hour"]):
        return None  # a bare まで or 前: no moment named
    clock = time(17, 0)
    if groups["part"]:
        # 明日の朝まで: by tomorrow morning; 午前中: within the morning, so by noon.
        within = groups["trigger"] == "中"
        clock = time(max(_PART_CLOCK[groups["part"]], 12 if within else 0), 0)
    elif groups["hour"]:
        hour = int(groups["hour"])
        if groups["half"] in ("下午", "午後", "오후") and hour < 12:
            hour += 12
        clock = time(hour, int(groups["minute"] or groups["minute_word"] or 0))
    clock_given = bool(groups["part"] or groups["hour"])
    if groups["date"]:
        return _on_date(date(sent.year, int(groups["month"]), int(groups["date"])), clock, sent,
                        year_given=False)  # fmt: skip
    if not groups["day"]:
        due = _on_day("", clock, sent, clock_given=True)
        return due if due > sent else due + timedelta(days=1)  # "by 3" written at 5: tomorrow
    day = next(english for english, words in _DAYS_CJK.items()
               if re.fullmatch(words, groups["day"]))  # fmt: skip
    if day in _WEEKDAYS and groups["next"]:
        day = f"next {day}"
    return _on_day(day, clock, sent, clock_given=clock_given)


def find_deadlines(text: str, sent: datetime, language: str | None = None) -> list[Deadline]:
    """The deadlines in text, soonest first. language: the text's, where known; English text
    is not searched for the other languages' words, which would triple the time it takes."""
    found: list[Deadline] = []
    taken: list[tuple[int, int]] = []
    # Each pattern with the resolver that reads its matches.
    patterns = [(p, lambda match: _resolve(match, text, sent)) for p in _PATTERNS]
    if language != "en":
        patterns += [(p, lambda match: _resolve_elsewhere(match, text, sent))
                     for p in _PATTERNS_ELSEWHERE]  # fmt: skip
    if language in _CJK_LANGUAGES:
        patterns.append((_PATTERN_CJK, lambda match: _resolve_cjk(match, sent)))
    for pattern, resolve in patterns:
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            try:
                due = resolve(match)
            except (ValueError, OverflowError):
                due = None
            # A moment already past when the message was sent is not something still due.
            if due is not None and due > sent:
                taken.append(match.span())
                found.append(Deadline(" ".join(match.group(0).split()), due))
    return sorted(found, key=lambda d: d.due)
