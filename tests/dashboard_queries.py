"""The PromQL of collector/'s Grafana dashboards, ready for a plain Prometheus, and the rule names of its rule files.

`dashboard_queries()` gives every target of every dashboard with Grafana's variables filled in: the filter
variables match everything (`.*`, so the dashboards must use them with `=~`), the interval variables become `1m`.
PyYAML is not a dependency: rule names are read with a regex, which holds for the block style the rule files use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

COLLECTOR = Path(__file__).resolve().parent.parent / "collector"
DASHBOARDS = COLLECTOR / "grafana" / "dashboards"
ALERTS = COLLECTOR / "alerts.yml"
RECORDING = COLLECTOR / "recording.yml"

# What each Grafana variable stands for when a query runs against Prometheus directly.
SUBSTITUTIONS = {
    "service": ".*",
    "agent": ".*",
    "environment": ".*",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1m",
}
# $name, ${name} and ${name:format}; `$1`-style regex replacement references are not variables.
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?::[^}]*)?\}|([A-Za-z_]\w*))")


def dashboard_files() -> list[Path]:
    """Every dashboard JSON file Grafana provisions from collector/grafana/dashboards."""
    return sorted(DASHBOARDS.glob("*.json"))


def load_dashboard(path: Path) -> dict[str, Any]:
    """One dashboard's JSON model."""
    return cast("dict[str, Any]", json.loads(path.read_text(encoding="utf-8")))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those inside rows (collapsed rows nest theirs) included; rows themselves too."""
    for panel in cast("list[dict[str, Any]]", dashboard.get("panels", [])):
        yield panel
        yield from cast("list[dict[str, Any]]", panel.get("panels", []))


def targets() -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query target of every dashboard."""
    for path in dashboard_files():
        for panel in panels(load_dashboard(path)):
            for target in cast("list[dict[str, Any]]", panel.get("targets", [])):
                yield str(panel.get("title", "")), target


def substitute(query: str) -> str:
    """`query` with every Grafana variable replaced by its `SUBSTITUTIONS` value; an unknown one raises `KeyError`."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in SUBSTITUTIONS:
            raise KeyError(f"unknown Grafana variable ${name} in {query!r}")
        return SUBSTITUTIONS[name]

    return VARIABLE.sub(value, query)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every dashboard, runnable as is against a plain Prometheus."""
    return [(title, substitute(str(target["expr"]))) for title, target in targets()]


def alert_names() -> set[str]:
    """The names of the alerting rules in collector/alerts.yml."""
    return set(re.findall(r"^\s*- alert:\s*(\S+)\s*$", ALERTS.read_text(encoding="utf-8"), re.M))


def recording_rule_names() -> set[str]:
    """The names of the recording rules in collector/recording.yml."""
    return set(re.findall(r"^\s*- record:\s*(\S+)\s*$", RECORDING.read_text(encoding="utf-8"), re.M))
