"""Read messages from .eml files, mbox files, maildirs and directories of any of them.

Each message comes with its source (the file, and its index inside an mbox); a file that cannot
be read comes as an error for that file, and reading goes on with the next. A file that is not
mail is an error when named, skipped in a folder, or, for ingest (keep_non_messages), handed
over with its bytes like any message, for the caller to refuse with a reason."""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_MBOX_SEPARATOR = re.compile(rb"^From \S+ +\w{3} \w{3} [ \d]?\d \d\d:\d\d(:\d\d)? \d{4}", re.M)
_HEADER_LINE = re.compile(rb"^(From |[!-9;-~]+:)")


@dataclass
class RawMessage:
    source: str
    raw: bytes | None = None
    error: str | None = None


def looks_like_message(head: bytes) -> bool:
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0]
    return bool(_HEADER_LINE.match(first))


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _read_file(path: Path, *, explicit: bool, keep_non_messages: bool) -> Iterator[RawMessage]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield RawMessage(str(path), error=f"cannot read {path}: {exc.strerror or exc}")
        return
    if not looks_like_message(data[:4096]):
        if keep_non_messages:
            yield RawMessage(str(path), raw=data)
        elif explicit:
            yield RawMessage(str(path), error=(
                f"{path} is not an email message: expected an RFC 822 message (.eml), an mbox "
                "file or a maildir"))  # fmt: skip
        return
    # Several "From sender date" separator lines: an mbox. One at the top: a single message
    # saved with its envelope line, as many archives do.
    if len(_MBOX_SEPARATOR.findall(data)) >= 2:
        try:
            box = mailbox.mbox(str(path), create=False)
            for index, key in enumerate(box.iterkeys()):
                yield RawMessage(f"{path}#{index}", raw=box.get_bytes(key))
        except (OSError, mailbox.Error) as exc:
            yield RawMessage(str(path), error=f"cannot read the mbox {path}: {exc}")
        return
    yield RawMessage(str(path), raw=data)


def iter_messages(
    paths: list[str | Path], *, keep_non_messages: bool = False
) -> Iterator[RawMessage]:
    for value in paths:
        path = Path(value)
        if not path.exists():
            yield RawMessage(str(path), error=f"{path} does not exist")
        elif path.is_dir() and _is_maildir(path):
            box = mailbox.Maildir(str(path), factory=None, create=False)
            for key in sorted(box.iterkeys()):
                try:
                    yield RawMessage(f"{path}/{key}", raw=box.get_bytes(key))
                except OSError as exc:
                    yield RawMessage(f"{path}/{key}", error=f"cannot read {key}: {exc}")
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir():
                    yield from iter_messages([child], keep_non_messages=keep_non_messages)
                else:
                    yield from _read_file(
                        child, explicit=False, keep_non_messages=keep_non_messages
                    )
        else:
            yield from _read_file(path, explicit=True, keep_non_messages=keep_non_messages)
