"""One real triager per test session: the bundled encoder, taxonomy and spam head."""

from pathlib import Path

import pytest

from apps.inbox.engine import parse_message
from apps.triage.engine.pipeline import TriageConfig, Triager
from tests.inbox.conftest import spam_corpus  # noqa: F401

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="session")
def triager():
    return Triager(TriageConfig(device="cpu"))


def make_message(body: str, subject: str = "Hello", sender: str = "Jane Doe <jane@example.com>",
                 date: str = "Wed, 04 Mar 2026 10:00:00 +0000", extra: str = ""):  # fmt: skip
    raw = f"From: {sender}\nTo: support@example.com\nSubject: {subject}\nDate: {date}\n{extra}\n{body}\n"
    return parse_message(raw.encode())
