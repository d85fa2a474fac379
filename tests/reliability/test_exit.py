"""A short script against a dead collector exits promptly and counts what it could not deliver."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.reliability._workers import run_script


def _refused_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_shutdown_against_a_refused_collector_skips_the_retry_backoff(tmp_path: Path, protocol: str) -> None:
    # The SDK's exporters back off 1, 2, 4 s between retries; before the fix a one-task script waited them out
    # at exit (5.5 s with the default 5 s shutdown timeout). Here the timeout is 30 s, so the bound below only
    # holds if shutdown stops the backoff.
    run = run_script(
        f"""
        telemetry = rfobs.init(**{{**SETTINGS, "otlp__endpoint": "{_refused_endpoint()}",
                                  "otlp__protocol": "{protocol}", "otlp__timeout": 30.0}})
        job(1)
        started = time.monotonic()
        delivered = telemetry.shutdown(timeout=30)
        print(json.dumps({{"seconds": time.monotonic() - started, "delivered": delivered,
                          "dropped": telemetry.drops.get("spans")}}))
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    assert outcome["seconds"] < 6, outcome
    assert outcome["dropped"] == 1  # the span that could not be delivered is counted
