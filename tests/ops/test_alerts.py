"""ops/alerts.yml: valid for promtool, every alert fires at its threshold
after its ``for`` and not below it (promtool's rule unit tests, generated
here), and every metric it reads is documented and defined by the app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

import voiceai.ops.metrics
from tests.ops.promql import ROOT, allowed_series_names, documented_metrics, metric_names

ALERTS = ROOT / "ops" / "alerts.yml"
GIB = 1024**3


def _promtool() -> str:
    path = shutil.which("promtool")
    # .ci/run installs Debian's "prometheus" package, which ships promtool.
    assert path, "promtool not found: apt-get install prometheus (see .ci/run)"
    return path


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_it_passes_promtool_check_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_it_reads_only_documented_metrics() -> None:
    allowed = allowed_series_names()
    for name, rule in _rules().items():
        used = metric_names(rule["expr"])
        assert used, f"{name}: no metric found in {rule['expr']!r}"
        assert used <= allowed, f"{name} reads undocumented {sorted(used - allowed)}"


def test_it_documents_exactly_what_the_app_defines() -> None:
    """docs/operations.md and voiceai/ops/metrics.py agree on names, types, labels."""
    defined: dict[str, tuple[str, tuple[str, ...]]] = {}
    for obj in vars(voiceai.ops.metrics).values():
        if isinstance(obj, Counter):
            defined[f"{obj._name}_total"] = ("counter", tuple(obj._labelnames))
        elif isinstance(obj, Gauge):
            defined[obj._name] = ("gauge", tuple(obj._labelnames))
        elif isinstance(obj, Histogram):
            defined[obj._name] = ("histogram", tuple(obj._labelnames))
    documented = {n: t for n, t in documented_metrics().items() if n.startswith("voiceai_")}
    assert set(documented) == set(defined)
    labels = _documented_labels()
    for name, (kind, label_names) in defined.items():
        assert documented[name] == kind, name
        assert labels[name] == set(label_names), name


def _documented_labels() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            out[cells[0].strip("`")] = set(re.findall(r"`([a-z_]+)`", cells[2]))
    return out


def test_it_uses_the_designs_thresholds_like_the_cloudwatch_alarms() -> None:
    import tests.infra.conftest  # noqa: F401  (silences jsii's Node banner before aws_cdk loads)
    from infra.voiceai_infra import alarms as cw

    rules = _rules()

    def threshold(alert: str) -> float:
        return float(re.search(r"(>=|>)\s*([0-9.]+)\s*$", rules[alert]["expr"].strip())[2])

    assert threshold("VoiceAILiveSessionsHigh") == cw.LIVE_SESSIONS_MAX == 800
    assert rules["VoiceAILiveSessionsHigh"]["for"] == "2m"
    assert threshold("VoiceAIErrorRateHigh") * 100 == cw.ERROR_RATE_MAX_PERCENT == 5
    assert rules["VoiceAIErrorRateHigh"]["for"] == "5m"
    assert threshold("VoiceAICpuHigh") * 100 == cw.CPU_MAX_PERCENT == 70
    assert rules["VoiceAICpuHigh"]["for"] == "10m"
    assert "0.8 * 2 * 1024 * 1024 * 1024" in rules["VoiceAIMemoryHigh"]["expr"]
    assert cw.MEMORY_MAX_PERCENT == 80 and rules["VoiceAIMemoryHigh"]["for"] == "10m"
    assert threshold("VoiceAIEngineQuotaHigh") == cw.ENGINE_QUOTA_MAX_FRACTION == 0.8
    assert {r["labels"]["severity"] for r in rules.values()} == {"critical", "warning"}


# --- promtool unit tests -----------------------------------------------------------


@dataclass
class Case:
    """Series, and the alerts expected (labels beyond alertname/severity) at each time."""

    alert: str
    series: dict[str, str]
    expect: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def _s(name: str, **labels: str) -> str:
    labels = {"job": "voiceai", **labels}
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


A = {"job": "voiceai", "instance": "a"}
CASES = [
    # sum > 800 for 2m: pending at 1m, firing at 3m; exactly 800 never fires.
    Case(
        "VoiceAILiveSessionsHigh",
        {
            _s("voiceai_live_sessions", instance="a", clinic="c1"): "450+0x20",
            _s("voiceai_live_sessions", instance="b", clinic="c2"): "451+0x20",
        },
        {"1m": [], "3m": [{}]},
    ),
    Case(
        "VoiceAILiveSessionsHigh",
        {
            _s("voiceai_live_sessions", instance="a", clinic="c1"): "400+0x20",
            _s("voiceai_live_sessions", instance="b", clinic="c2"): "400+0x20",
        },
        {"15m": []},
    ),
    # 10 % errors: firing after 5m; 4 % never.
    Case(
        "VoiceAIErrorRateHigh",
        {
            _s("voiceai_http_requests_total", instance="a", status_class="2xx"): "0+90x30",
            _s("voiceai_http_requests_total", instance="a", status_class="5xx"): "0+10x30",
        },
        {"3m": [], "8m": [{}]},
    ),
    Case(
        "VoiceAIErrorRateHigh",
        {
            _s("voiceai_http_requests_total", instance="a", status_class="2xx"): "0+96x30",
            _s("voiceai_http_requests_total", instance="a", status_class="5xx"): "0+4x30",
        },
        {"20m": []},
    ),
    # Process a down from 2m: firing at 4m for a only; b stays up.
    Case(
        "VoiceAIProcessDown",
        {_s("up", instance="a"): "1 1 0 0 0 0 0", _s("up", instance="b"): "1+0x6"},
        {"2m": [], "4m": [A]},
    ),
    Case("VoiceAINoProcessUp", {_s("up", instance="a"): "1 1 0 0 0 0 0", _s("up", instance="b"): "1+0x6"}, {"5m": []}),
    Case(
        "VoiceAINoProcessUp",
        {_s("up", instance="a"): "0+0x6", _s("up", instance="b"): "0+0x6"},
        {"3m": [{}]},
    ),
    Case(
        "VoiceAIDurableAckLagHigh",
        {_s("voiceai_durable_ack_lag_seconds", instance="a"): "15+0x10"},
        {"1m": [], "3m": [{"instance": "a"}]},
    ),
    Case("VoiceAIDurableAckLagHigh", {_s("voiceai_durable_ack_lag_seconds", instance="a"): "10+0x10"}, {"5m": []}),
    # 0.8 core for 10m fires; 0.67 core never. (rate() over 5m reaches the
    # full value once the window is full, at 5m: true from 5m, firing by 15m.)
    Case("VoiceAICpuHigh", {_s("process_cpu_seconds_total", instance="a"): "0+48x30"}, {"6m": [], "17m": [A]}),
    Case("VoiceAICpuHigh", {_s("process_cpu_seconds_total", instance="a"): "0+40x30"}, {"25m": []}),
    Case(
        "VoiceAIMemoryHigh",
        {_s("process_resident_memory_bytes", instance="a"): f"{int(0.85 * 2 * GIB)}+0x20"},
        {"5m": [], "12m": [A]},
    ),
    Case(
        "VoiceAIMemoryHigh",
        {_s("process_resident_memory_bytes", instance="a"): f"{int(0.75 * 2 * GIB)}+0x20"},
        {"15m": []},
    ),
    # 12 + 8 = 20 of a 25 quota is exactly 80 %: fires (>=); 19 does not.
    Case(
        "VoiceAIEngineQuotaHigh",
        {
            _s("voiceai_engine_streams_active", instance="a"): "12+0x10",
            _s("voiceai_engine_streams_active", instance="b"): "8+0x10",
            _s("voiceai_engine_stream_quota", instance="a"): "25+0x10",
            _s("voiceai_engine_stream_quota", instance="b"): "25+0x10",
        },
        {"0m": [], "2m": [{}]},
    ),
    Case(
        "VoiceAIEngineQuotaHigh",
        {
            _s("voiceai_engine_streams_active", instance="a"): "11+0x10",
            _s("voiceai_engine_streams_active", instance="b"): "8+0x10",
            _s("voiceai_engine_stream_quota", instance="a"): "25+0x10",
            _s("voiceai_engine_stream_quota", instance="b"): "25+0x10",
        },
        {"5m": []},
    ),
    # Per region once the gauges carry a region label: only the busy region fires.
    Case(
        "VoiceAIEngineQuotaHigh",
        {
            _s("voiceai_engine_streams_active", instance="a", region="ap-northeast-1"): "21+0x10",
            _s("voiceai_engine_streams_active", instance="a", region="us-west-2"): "3+0x10",
            _s("voiceai_engine_stream_quota", instance="a", region="ap-northeast-1"): "25+0x10",
            _s("voiceai_engine_stream_quota", instance="a", region="us-west-2"): "25+0x10",
        },
        {"2m": [{"region": "ap-northeast-1"}]},
    ),
    Case(
        "VoiceAIEngineQueueBacklog",
        {_s("voiceai_engine_queue_length", instance="a"): "2+0x10"},
        {"3m": [], "6m": [{}]},
    ),
    Case("VoiceAIEngineQueueBacklog", {_s("voiceai_engine_queue_length", instance="a"): "0+0x10"}, {"8m": []}),
    Case(
        "VoiceAIStorageErrors",
        {_s("voiceai_storage_errors_total", instance="a", operation="put"): "0+1x20"},
        {"4m": [{}]},
    ),
    Case(
        "VoiceAIStorageErrors",
        {_s("voiceai_storage_errors_total", instance="a", operation="put"): "3+0x20"},
        {"10m": []},
    ),
    # Every observation between 1 s and 2 s: p95 > 1 s, firing after 10m.
    Case(
        "VoiceAITranscriptLatencyHigh",
        {
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="0.5"): "0+0x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="1.0"): "0+0x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="2.0"): "0+10x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="+Inf"): "0+10x30",
        },
        {"6m": [], "13m": [{}]},
    ),
    Case(
        "VoiceAITranscriptLatencyHigh",
        {
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="0.5"): "0+10x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="1.0"): "0+10x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="2.0"): "0+10x30",
            _s("voiceai_frame_to_transcript_seconds_bucket", instance="a", le="+Inf"): "0+10x30",
        },
        {"25m": []},
    ),
]


def _render(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def _promtool_tests(rules: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tests = []
    for case in CASES:
        rule = rules[case.alert]
        alert_tests = []
        for at, expected in case.expect.items():
            exp_alerts = []
            for extra in expected:
                labels = {**extra, "severity": rule["labels"]["severity"]}
                exp_alerts.append(
                    {
                        "exp_labels": labels,
                        "exp_annotations": {k: _render(v, labels) for k, v in rule["annotations"].items()},
                    }
                )
            alert_tests.append({"eval_time": at, "alertname": case.alert, "exp_alerts": exp_alerts})
        tests.append(
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
                "alert_rule_test": alert_tests,
            }
        )
    return {"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}


def test_it_fires_each_alert_at_its_threshold_after_its_for_and_not_below(tmp_path: Path) -> None:
    rules = _rules()
    assert {c.alert for c in CASES} == set(rules), "every alert needs a firing and a quiet case"
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(json.dumps(_promtool_tests(rules), indent=1))  # JSON is YAML
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_it_catches_a_wrong_threshold(tmp_path: Path) -> None:
    """The unit tests above are not vacuous: lowering one threshold breaks them."""
    broken_rules = tmp_path / "alerts.yml"
    original = ALERTS.read_text()
    broken = original.replace(
        'voiceai_live_sessions{job="voiceai"}) > 800', 'voiceai_live_sessions{job="voiceai"}) > 700'
    )
    assert broken != original
    broken_rules.write_text(broken)
    spec = _promtool_tests(_rules())
    spec["rule_files"] = [str(broken_rules)]
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(json.dumps(spec))
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "VoiceAILiveSessionsHigh" in result.stdout + result.stderr


@pytest.mark.parametrize("alert", sorted(_rules()))
def test_it_explains_every_alert(alert: str) -> None:
    rule = _rules()[alert]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    assert re.fullmatch(r"\d+m", rule["for"])
