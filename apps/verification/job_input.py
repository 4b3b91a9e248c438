"""The addresses of a bulk job, read from what a client sends: a JSON body {"emails": [...]} or a
CSV file. Each problem is an InputError whose message says what is wrong, where, and what is
accepted; nothing is stored from an input with one.

CSV: UTF-8 (a byte-order mark is fine), separated by commas, semicolons or tabs. The address
column is the one whose header is "email" (or "e-mail", "email address", any case); without
such a header, the first column, and a first row with no "@" in it is taken as a header and
skipped. Rows whose address cell is empty are skipped and counted.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from apps.core.api import unstorable

# Longer than any address can be (RFC 5321: 254): such a cell is not an address gone wrong but
# something else in the column.
MAX_CELL_CHARACTERS = 1000
JSON_ACCEPTED = 'Send {"emails": ["alice@example.com", "bob@example.org"]}.'
CSV_ACCEPTED = (
    'Send a UTF-8 CSV with the addresses in a column headed "email" (else the first column), '
    'as a text/csv body or as a multipart file field named "file".'
)
ADDRESS_HEADERS = {"email", "emailaddress", "mail", "emails"}
SEPARATORS = ",;\t"


class InputError(ValueError):
    """The input cannot become a job. field: where (e.g. "emails[3]" or "file").
    code: "too_many" when the only thing wrong is its size."""

    def __init__(self, field: str, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.field, self.message, self.code = field, message, code


@dataclass
class JobInput:
    emails: list[str]
    source: str  # json or csv
    skipped_rows: int = 0
    column: str | None = None  # the CSV column the addresses were read from


def _check_count(count: int, limit: int, where: str) -> None:
    if count == 0:
        raise InputError(
            where, f"There are no addresses. {JSON_ACCEPTED if where == 'emails' else CSV_ACCEPTED}"
        )
    if count > limit:
        raise InputError(
            where,
            f"{count:,} addresses; a job takes at most {limit:,} (MAILSCORE_JOB_MAX_ADDRESSES). "
            "Split the list into several jobs.",
            code="too_many",
        )


def _check_cell(value: str, where: str) -> None:
    if len(value) > MAX_CELL_CHARACTERS:
        raise InputError(where, f"{where} is {len(value):,} characters long; an address has at "
                                f"most 254, and a job takes cells of up to {MAX_CELL_CHARACTERS}.")  # fmt: skip
    problem = unstorable(value)
    if problem:
        raise InputError(where, f"{where} holds {problem}, which is not text.")


def from_json(body, limit: int) -> JobInput:
    if not isinstance(body, dict):
        raise InputError("body", f"The body must be a JSON object. {JSON_ACCEPTED}")
    unknown = sorted(set(body) - {"emails"})
    if unknown:
        raise InputError(unknown[0], f"Unknown field {unknown[0]!r}. {JSON_ACCEPTED}")
    emails = body.get("emails")
    if emails is None:
        raise InputError("emails", f'"emails" is required. {JSON_ACCEPTED}')
    if not isinstance(emails, list):
        raise InputError("emails", f'"emails" must be a list of strings. {JSON_ACCEPTED}')
    _check_count(len(emails), limit, "emails")
    for index, email in enumerate(emails):
        where = f"emails[{index}]"
        if not isinstance(email, str):
            raise InputError(
                where, f"{where} is {type(email).__name__}, not a string. {JSON_ACCEPTED}"
            )
        _check_cell(email, where)
    return JobInput(emails=list(emails), source="json")


def _is_address_header(cell: str) -> bool:
    return re.sub(r"[^a-z]", "", cell.strip().lower()) in ADDRESS_HEADERS


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    first_line = sample.splitlines()[0] if sample else ""
    try:
        return csv.Sniffer().sniff(first_line, delimiters=SEPARATORS)
    except csv.Error:
        return csv.excel  # one column: no separator to find


def from_csv(data: bytes, limit: int, where: str = "file") -> JobInput:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            where, f"The CSV is not UTF-8 text (byte {exc.start:,} is not). {CSV_ACCEPTED}"
        ) from exc
    if "\x00" in text:
        raise InputError(
            where, f"The CSV holds a NUL character; it is not a text file. {CSV_ACCEPTED}"
        )
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text[:4096]))
    emails: list[str] = []
    column, header, skipped = 0, None, 0
    try:
        for line_number, row in enumerate(reader, start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None and not emails and not skipped:
                named = [i for i, cell in enumerate(row) if _is_address_header(cell)]
                if named:
                    column, header = named[0], row[named[0]].strip()
                    continue
                if not any("@" in cell for cell in row):
                    header = row[0].strip()  # a header without an address column: the first
                    continue
                header = ""
            cell = row[column].strip() if column < len(row) else ""
            if not cell:
                skipped += 1
                continue
            _check_cell(cell, f"row {line_number}")
            emails.append(cell)
            if len(emails) > limit:
                break
    except csv.Error as exc:
        raise InputError(
            where, f"The CSV cannot be read at row {reader.line_num}: {exc}. {CSV_ACCEPTED}"
        ) from exc
    if len(emails) > limit:
        raise InputError(
            where,
            f"More than {limit:,} addresses; a job takes at most {limit:,} "
            "(MAILSCORE_JOB_MAX_ADDRESSES). Split the list into several jobs.",
            code="too_many",
        )
    _check_count(len(emails), limit, where)
    return JobInput(emails=emails, source="csv", skipped_rows=skipped, column=header or None)
