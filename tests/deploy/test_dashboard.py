"""The Grafana dashboard: a panel for every metric family, on a data source the importer picks,
with queries that Prometheus parses and that read only series mailscore exports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.families import (
    MAILSCORE_FAMILIES,
    family_of,
    metric_names,
    unknown_labels,
    unknown_names,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "helm" / "mailscore" / "files" / "dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's range variables, given a value Prometheus accepts for the syntax check.
GRAFANA_RANGES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def graph_panels(dashboard: dict) -> list[dict]:
    """Every panel that shows data, those inside collapsed rows included."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def expressions(dashboard: dict) -> list[str]:
    return [target["expr"] for panel in graph_panels(dashboard) for target in panel["targets"]]


def test_dashboard_is_a_current_grafana_dashboard_with_a_datasource_variable(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_queries_through_the_datasource_variable(dashboard):
    panels = graph_panels(dashboard)
    assert len(panels) >= 15
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_panels_have_unique_ids_and_do_not_overlap(dashboard):
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(box["x"] + dx, box["y"] + dy) for dx in range(box["w"]) for dy in range(box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_metric_family_has_a_panel(dashboard):
    shown = {family_of(name) for expr in expressions(dashboard) for name in metric_names(expr)}
    assert set(MAILSCORE_FAMILIES) - shown == set()
    assert any(name.startswith("django_http_") for name in shown)


def test_queries_read_only_series_mailscore_exports(dashboard):
    for expr in expressions(dashboard):
        assert unknown_names(expr) == set(), expr
        assert unknown_labels(expr) == set(), expr


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed: `make promtool` installs it")  # fmt: skip
def test_prometheus_parses_every_query(dashboard, tmp_path):
    """promtool checks expressions inside rule files: each query becomes a recording rule."""
    rules = []
    for number, expr in enumerate(expressions(dashboard)):
        for variable, value in GRAFANA_RANGES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([shutil.which("promtool"), "check", "rules", str(path)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
