"""The metric families mailscore exports, with their labels (docs/operations.md, "Metrics"):
what the alert rules and the dashboard may refer to."""

from __future__ import annotations

import re

# family -> its labels. Histograms also have le on their _bucket series.
MAILSCORE_FAMILIES: dict[str, set[str]] = {
    "mailscore_messages_ingested_total": {"source", "outcome"},
    "mailscore_ingest_store_group_size": {"mode"},
    "mailscore_ingest_direct_total": {"outcome"},
    "mailscore_messages_finished_total": {"category", "priority", "status"},
    "mailscore_step_duration_seconds": {"step"},
    "mailscore_step_failures_total": {"step"},
    "mailscore_inference_seconds": {"model"},
    "mailscore_inference_batch_size": {"model"},
    "mailscore_verifications_total": {"verdict", "reason", "source"},
    "mailscore_smtp_replies_total": {"code_class"},
    "mailscore_queue_depth": {"queue"},
    "mailscore_queue_oldest_age_seconds": {"queue"},
    "mailscore_partitions_months_ahead": {"table"},
    "mailscore_retention_last_run_timestamp_seconds": set(),
    "mailscore_webhook_deliveries_total": {"event", "outcome"},
}
HISTOGRAMS = {
    "mailscore_ingest_store_group_size",
    "mailscore_step_duration_seconds",
    "mailscore_inference_seconds",
    "mailscore_inference_batch_size",
}
# The labels of django-prometheus's django_http_* families.
DJANGO_HTTP_LABELS = {
    "status", "view", "method", "transport", "type", "templatename", "charset", "le",
}  # fmt: skip
# Labels Prometheus itself puts on every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}

_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
# Words of PromQL that look like metric names.
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def family_of(series: str) -> str:
    """The family a series name belongs to: a histogram's _bucket, _sum and _count are its own."""
    base = _HISTOGRAM_SUFFIX.sub("", series)
    return base if base in HISTOGRAMS else series


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names, strings,
    durations and numbers left out)."""
    stripped = _STRING.sub('""', expr)
    stripped = _MATCHERS.sub(" ", stripped)
    stripped = _RANGE.sub(" ", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    return {name for name in _NAME.findall(stripped) if name.lower() not in _KEYWORDS}


def selector_labels(expr: str) -> list[tuple[str, set[str]]]:
    """Each selector's metric name with the label names its matchers use."""
    stripped = _STRING.sub('""', expr)
    return [(name, set(_MATCHER_LABEL.findall(body))) for name, body in _SELECTOR.findall(stripped)]


def grouping_labels(expr: str) -> set[str]:
    """The label names of by (...), without (...), on (...) and ignoring (...) clauses."""
    return {
        label.strip()
        for _, labels in _GROUPING.findall(_STRING.sub('""', expr))
        for label in labels.split(",")
        if label.strip()
    }


def unknown_names(expr: str) -> set[str]:
    """Metric names in expr that are neither mailscore's families, Django's django_http_*, nor up."""
    return {
        name
        for name in metric_names(expr)
        if family_of(name) not in MAILSCORE_FAMILIES
        and not name.startswith("django_http_")
        and name != "up"
    }


def unknown_labels(expr: str) -> set[str]:
    """Label names in expr's matchers and groupings that no family it selects has."""
    known = set(TARGET_LABELS)
    unknown: set[str] = set()
    for name, labels in selector_labels(expr):
        family = family_of(name)
        if family in MAILSCORE_FAMILIES:
            allowed = MAILSCORE_FAMILIES[family] | TARGET_LABELS
            if family in HISTOGRAMS:
                allowed = allowed | {"le"}
            unknown |= labels - allowed
            known |= allowed
        else:  # django_http_* and up: their labels are the library's and Prometheus's own
            known |= labels
    for name in metric_names(expr):
        family = family_of(name)
        if family in MAILSCORE_FAMILIES:
            known |= MAILSCORE_FAMILIES[family] | ({"le"} if family in HISTOGRAMS else set())
        elif name.startswith("django_http_"):
            known |= DJANGO_HTTP_LABELS
    return unknown | (grouping_labels(expr) - known)
