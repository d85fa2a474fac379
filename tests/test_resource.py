"""`service.instance.id` on the resource: a random UUID4 per process, unless the user set one.

A forked child's id is tests/reliability/test_fork.py's.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from opentelemetry.sdk.resources import ServiceInstanceIdResourceDetector

import rfobs

pytestmark = [pytest.mark.usefixtures("clean_globals"), pytest.mark.timeout(60)]


def quiet_init(**settings: Any) -> rfobs.Telemetry:
    return rfobs.init(metrics__prometheus_enabled=False, tracing__exporter="none", logging__enabled=False, **settings)


def instance_ids(telemetry: rfobs.Telemetry) -> list[object]:
    """The `service.instance.id` of the tracer provider's resource and of the meter provider's."""
    assert telemetry.tracer_provider is not None and telemetry.meter_provider is not None
    meter_resource = telemetry.meter_provider._sdk_config.resource  # pyright: ignore[reportPrivateUsage]
    return [
        telemetry.tracer_provider.resource.attributes.get("service.instance.id"),
        meter_resource.attributes.get("service.instance.id"),
    ]


def test_the_resource_carries_a_uuid4_that_stays_for_the_process() -> None:
    telemetry = quiet_init()
    first, second = instance_ids(telemetry)
    telemetry.shutdown(timeout=5)
    assert isinstance(first, str) and uuid.UUID(first).version == 4 and str(uuid.UUID(first)) == first
    # The SDK's own detector (asked again after a fork by the providers): the same id within the process.
    assert second == first == ServiceInstanceIdResourceDetector().detect().attributes["service.instance.id"]


def test_an_id_set_in_the_settings_wins() -> None:
    telemetry = quiet_init(service__resource_attributes={"service.instance.id": "pod-7", "team": "a"})
    assert instance_ids(telemetry) == ["pod-7", "pod-7"]
    telemetry.shutdown(timeout=5)


def test_an_id_set_in_otel_resource_attributes_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=worker-3,team=b")
    telemetry = quiet_init()
    assert instance_ids(telemetry) == ["worker-3", "worker-3"]
    telemetry.shutdown(timeout=5)
