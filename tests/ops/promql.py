"""Helpers for tests/ops: the documented metric list (docs/operations.md)
and a small extractor of the metric names a PromQL expression reads.

promtool checks the syntax; this only answers "which series does it use",
so a rule or panel cannot depend on a metric the app never promised."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

_ROW = re.compile(r"^\|\s*`(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|\s*(?P<type>counter|gauge|histogram|summary)\s*\|")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def documented_metrics() -> dict[str, str]:
    """Metric name -> type, from the table under "## Prometheus metrics"."""
    text = OPERATIONS_DOC.read_text()
    section = text.split("## Prometheus metrics", 1)[1].split("\n## ", 1)[0]
    found = {m["name"]: m["type"] for line in section.splitlines() if (m := _ROW.match(line))}
    assert found, "no metric table found in docs/operations.md"
    return found


def allowed_series_names() -> set[str]:
    names = set()
    for name, kind in documented_metrics().items():
        names.add(name)
        if kind in {"histogram", "summary"}:
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
    return names


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = _LABEL_LISTS.sub(" ", text)  # by (le), on (job, instance), ...
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        token = match.group(0)
        followed_by_call = text[match.end() :].lstrip().startswith("(")
        if token in _KEYWORDS or followed_by_call:  # functions and aggregations
            continue
        names.add(token)
    return names
