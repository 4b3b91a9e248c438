"""Build the triage engine from Django settings, once per process."""

from __future__ import annotations

import threading

from django.conf import settings

from apps.triage.engine.pipeline import TriageConfig, Triager

_triager: Triager | None = None
_lock = threading.Lock()


def triage_config(**overrides) -> TriageConfig:
    values = {**settings.MAILSCORE_TRIAGE, **overrides}
    return TriageConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def get_triager(**overrides) -> Triager:
    """The process's triager; models load on first use and stay loaded."""
    global _triager
    if overrides:
        return Triager(triage_config(**overrides))
    with _lock:
        if _triager is None:
            _triager = Triager(triage_config())
        return _triager
