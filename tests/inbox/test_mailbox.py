"""Reading .eml files, mbox files, maildirs and folders, with an error per unreadable input."""

import mailbox

from apps.inbox.engine.mailbox import iter_messages

ONE = b"From: a@example.com\nSubject: one\n\nfirst\n"
TWO = b"From: b@example.com\nSubject: two\n\nsecond\n"


def test_eml_mbox_maildir_and_folders(tmp_path):
    (tmp_path / "single.eml").write_bytes(ONE)
    box = mailbox.mbox(str(tmp_path / "archive.mbox"))
    box.add(ONE)
    box.add(TWO)
    box.flush()
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"))
    maildir.add(TWO)
    (tmp_path / "notes.md").write_text("# not a message\n")
    items = list(iter_messages([tmp_path]))
    assert all(item.error is None for item in items)
    sources = [item.source.removeprefix(str(tmp_path) + "/") for item in items]
    assert sources[0].startswith("Maildir/")
    assert sources[1:] == ["archive.mbox#0", "archive.mbox#1", "single.eml"]  # notes.md skipped
    assert b"second" in items[2].raw


def test_unreadable_inputs_are_errors_for_that_input_only(tmp_path):
    (tmp_path / "ok.eml").write_bytes(ONE)
    (tmp_path / "notes.md").write_text("# not a message\n")
    items = list(
        iter_messages([tmp_path / "missing.eml", tmp_path / "notes.md", tmp_path / "ok.eml"])
    )
    assert "does not exist" in items[0].error
    assert "not an email message" in items[1].error
    assert items[2].error is None and items[2].raw == ONE


def test_a_single_message_with_an_envelope_line_is_one_message(tmp_path):
    path = tmp_path / "00001.txt"
    path.write_bytes(
        b"From someone@example.com  Thu Aug 22 12:36:23 2002\n" + ONE + b"\nFrom the desk of X\n"
    )
    [item] = list(iter_messages([path]))
    assert item.raw.startswith(b"From someone@example.com")
