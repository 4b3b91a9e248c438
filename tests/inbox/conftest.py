"""Fixtures for the inbox tests: the real-mail corpus, where this machine has it."""

from pathlib import Path

import pytest
from django.conf import settings


@pytest.fixture(scope="session")
def spam_corpus() -> Path:
    """The SpamAssassin corpus (MAILSCORE_SPAM_CORPUS); tests that read it skip without it."""
    corpus = Path(settings.MAILSCORE_SPAM_CORPUS)
    if not corpus.is_dir():
        pytest.skip(f"No SpamAssassin corpus at {corpus}: set MAILSCORE_SPAM_CORPUS to its folder.")
    return corpus
