"""ops/grafana-dashboard.json: importable shape, valid PromQL, documented
metrics only, and a panel for everything an alert watches."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.promql import ROOT, allowed_series_names, metric_names

DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"
ALERTS = ROOT / "ops" / "alerts.yml"
# Grafana's built-in interval variables, as Prometheus would see them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def _exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _panels(dashboard) for t in p["targets"]]


def _as_prometheus(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def test_it_is_an_importable_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "voiceai-overview" and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]


def test_its_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_reads_documented_metrics_only(dashboard: dict[str, Any]) -> None:
    allowed = allowed_series_names()
    for title, expr in _exprs(dashboard):
        used = metric_names(_as_prometheus(expr))
        assert used, f"{title}: no metric in {expr!r}"
        assert used <= allowed, f"{title} reads undocumented {sorted(used - allowed)}"


def test_every_panel_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: apt-get install prometheus (see .ci/run)"
    # promtool parses each expression as a recording rule.
    rules = [{"record": f"panel:{i}", "expr": _as_prometheus(e)} for i, (_, e) in enumerate(_exprs(dashboard))]
    rules_file = tmp_path / "panels.yml"
    rules_file.write_text(json.dumps({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_shows_everything_an_alert_watches(dashboard: dict[str, Any]) -> None:
    shown = set().union(*(metric_names(_as_prometheus(e)) for _, e in _exprs(dashboard)))
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    watched = set().union(*(metric_names(r["expr"]) for g in groups for r in g["rules"]))
    assert watched <= shown, f"no panel for {sorted(watched - shown)}"
