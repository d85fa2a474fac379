"""The testing kit records even when the developer's shell has OpenTelemetry variables set."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from rfobs.testing import Capture


@pytest.mark.usefixtures("clean_globals")
@pytest.mark.parametrize(("variable", "value"), [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_SAMPLER", "always_off")])
def test_capture_ignores_sdk_environment_variables(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    captured = Capture()
    try:
        with captured.tracer_provider.get_tracer("t").start_as_current_span("recorded"):
            pass
        assert [s["name"] for s in captured.spans()] == ["recorded"]
    finally:
        captured.tracer_provider.shutdown()
        captured.meter_provider.shutdown()
    assert trace.get_tracer_provider() is not captured.tracer_provider
