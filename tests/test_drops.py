"""`telemetry.dropped`: one list of every (signal, reason) pair, each pair of an exported signal published at 0."""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path

import pytest
from opentelemetry.metrics import CallbackOptions

import rfobs
from rfobs import _drops
from rfobs._drops import DROP_REASONS, DropCounter
from rfobs.testing import Capture

pytestmark = pytest.mark.timeout(60)

PACKAGE = Path(rfobs.__file__).parent
SERIES = re.compile(r"^researchflow_agents_telemetry_dropped_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)


def constants(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` (and `NAME: Final = "text"`) of a module, and those of `rfobs._drops`."""
    found = {"UNSUPPORTED": _drops.UNSUPPORTED}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            found[target.id] = value.value
    return found


def drop_call_sites() -> list[tuple[str, str | None, str | None]]:
    """Every `<...>drops.add(signal, reason, ...)` in rfobs: where, and the signal and reason when they are fixed."""
    sites: list[tuple[str, str | None, str | None]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = constants(tree)

        def fixed(node: ast.expr, names: dict[str, str] = names) -> str | None:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            return names.get(node.id) if isinstance(node, ast.Name) else None

        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add"):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if owner_name.lstrip("_") != "drops":
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            sites.append((where, fixed(node.args[0]), fixed(node.args[1])))
    return sites


def test_every_drop_call_site_counts_a_listed_pair() -> None:
    sites = drop_call_sites()
    assert len(sites) >= 8, sites  # the batch processor's five, the metric exporter's one, the export watch's two
    listed = {reason for reasons in DROP_REASONS.values() for reason in reasons}
    for where, signal, reason in sites:
        assert reason is not None, f"{where}: the reason of a drop must be a literal or a constant"
        assert reason in listed, f"{where}: reason {reason!r} is not in rfobs._drops.DROP_REASONS"
        if signal is not None:
            assert reason in DROP_REASONS.get(signal, ()), f"{where}: ({signal!r}, {reason!r}) is not listed"


def test_a_pair_missing_from_the_list_is_counted_and_reported(capture: Capture) -> None:
    capture.allow_internal_errors = True
    drops = DropCounter()
    drops.add("spans", "eaten_by_a_grue", 2)
    assert drops.get("spans", "eaten_by_a_grue") == 2
    assert capture.internal_errors() == 1


def test_an_expected_signal_shows_every_reason_at_zero_also_in_a_forked_child() -> None:
    drops = DropCounter()
    assert list(drops.observe(CallbackOptions())) == []
    drops.expect("metrics")
    drops.add("metrics", "export_failed", 3)

    def observed() -> list[tuple[object, object, float]]:
        points = drops.observe(CallbackOptions())
        return [(dict(p.attributes or {})["signal"], dict(p.attributes or {})["reason"], p.value) for p in points]

    assert observed() == [("metrics", "export_failed", 3), ("metrics", "unsupported_by_backend", 0)]
    drops.restart_after_fork()
    assert observed() == [("metrics", "export_failed", 0), ("metrics", "unsupported_by_backend", 0)]


def refused_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def scraped_drops(telemetry: rfobs.Telemetry) -> dict[tuple[str, str], float]:
    from prometheus_client import generate_latest

    assert telemetry.prometheus_registry is not None
    text = generate_latest(telemetry.prometheus_registry).decode()
    found: dict[tuple[str, str], float] = {}
    for match in SERIES.finditer(text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        found[labels["signal"], labels["reason"]] = float(match["value"])
    return found


@pytest.mark.usefixtures("clean_globals")
def test_the_embedded_default_shows_the_span_drop_series_at_zero_from_init() -> None:
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
    try:
        assert scraped_drops(telemetry) == {
            ("spans", "queue_full"): 0.0,
            ("spans", "after_shutdown"): 0.0,
            ("spans", "shutdown_timeout"): 0.0,
            ("spans", "export_failed"): 0.0,
        }
    finally:
        telemetry.shutdown(timeout=5)


@pytest.mark.usefixtures("clean_globals")
def test_otlp_export_of_every_signal_shows_all_their_drop_series_at_zero_from_init() -> None:
    telemetry = rfobs.init(
        otlp__endpoint=refused_endpoint(),
        otlp__timeout=0.5,
        metrics__otlp_export=True,
        metrics__export_interval=3600,
        metrics__prometheus_port=0,
        logging__enabled=False,
    )
    try:
        expected = {(signal, reason): 0.0 for signal, reasons in DROP_REASONS.items() for reason in reasons}
        assert scraped_drops(telemetry) == expected
        assert set(DROP_REASONS) == {"spans", "logs", "metrics"}
    finally:
        telemetry.shutdown(timeout=2)


@pytest.mark.usefixtures("clean_globals")
def test_no_exporter_no_drop_series() -> None:
    telemetry = rfobs.init(metrics__prometheus_port=0, tracing__exporter="none", logging__enabled=False)
    try:
        assert scraped_drops(telemetry) == {}
    finally:
        telemetry.shutdown(timeout=5)
