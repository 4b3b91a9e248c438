"""The Prometheus alert rules: valid for promtool, each one firing and staying quiet on recorded
series (alerts_test.yaml), every series they read exported by mailscore, every alert documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.families import unknown_labels, unknown_names

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "deploy" / "helm" / "mailscore" / "files"
RULES = FILES / "alerts.yaml"
RULE_TESTS = FILES / "alerts_test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}
RUNBOOK_PREFIX = "docs/operations.md#"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: `make promtool` installs it (Debian's prometheus package, "
    "as root)",
)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors a Markdown renderer gives headings: lower case, punctuation dropped, spaces
    to hyphens."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *arguments], cwd=FILES, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip


@needs_promtool
def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_each_alert_fires_and_stays_quiet_on_recorded_series():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_quiet():
    tests = yaml.safe_load(RULE_TESTS.read_text())
    assert tests["rule_files"] == [RULES.name]
    firing, quiet = set(), set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts with no case where they fire"
    assert names - quiet == set(), "alerts with no case where they must stay quiet"


def test_every_alert_has_a_wait_a_severity_and_its_runbook():
    anchors = heading_anchors(OPERATIONS.read_text())
    rules = alert_rules()
    assert len(rules) >= 9
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        runbook = annotations["runbook_url"]
        assert runbook.startswith(RUNBOOK_PREFIX), name
        anchor = runbook.removeprefix(RUNBOOK_PREFIX)
        assert anchor == name.lower(), f"{name}: runbook_url should point at its own heading"
        assert anchor in anchors, f"{name}: docs/operations.md has no heading '### {name}'"


def test_rules_read_only_series_mailscore_exports():
    for rule in alert_rules():
        assert unknown_names(rule["expr"]) == set(), rule["alert"]
        assert unknown_labels(rule["expr"]) == set(), rule["alert"]


def test_the_series_check_catches_a_misspelt_family_and_label():
    assert unknown_names('rate(mailscore_verification_total{reason="blocked"}[5m])') == {
        "mailscore_verification_total"
    }
    assert unknown_labels('max by (queues) (mailscore_queue_depth{pool="triage"})') == {
        "queues",
        "pool",
    }
