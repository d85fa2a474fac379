"""Spans sent by rfobs over OTLP/HTTP and OTLP/gRPC arrive in a real trace backend (Arize Phoenix)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import pytest

import rfobs
from tests.e2e.phoenix_server import PhoenixHandle

pytestmark = pytest.mark.usefixtures("clean_globals")


def run_agent(endpoint: str, protocol: str, project: str) -> rfobs.Telemetry:
    telemetry = rfobs.init(
        otlp__endpoint=endpoint,
        otlp__protocol=protocol,
        # Phoenix files spans by this resource attribute (its x-project-name header works over HTTP only).
        service__resource_attributes={"openinference.project.name": project},
        service__name="rfobs-e2e",
        metrics__prometheus_port=0,
        logging__enabled=False,
    )

    @rfobs.api_call("arxiv", "search")
    def search(query: str) -> list[str]:
        if query == "broken":
            raise TimeoutError("arxiv did not answer")
        return [query]

    @rfobs.task("researcher", "answer")
    def answer() -> None:
        search("agents")
        with contextlib.suppress(TimeoutError):
            search("broken")

    answer()
    logging.getLogger("researcher").warning("answered")  # a log record: Phoenix takes traces only
    telemetry.force_flush(timeout=10)
    logging.getLogger("researcher").warning("answered again")
    telemetry.shutdown(timeout=10)
    return telemetry


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_phoenix_receives_the_span_tree(
    phoenix_server: PhoenixHandle, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    project = f"rfobs-e2e-{protocol.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
    endpoint = phoenix_server.http_url if protocol == "http/protobuf" else phoenix_server.grpc_endpoint
    with caplog.at_level(logging.WARNING, logger="rfobs"):
        telemetry = run_agent(endpoint, protocol, project)

    # Phoenix refuses logs (HTTP 405 / gRPC UNIMPLEMENTED): said once, then not sent again, and counted.
    refusals = [r.getMessage() for r in caplog.records if "does not accept logs" in r.getMessage()]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert telemetry.drops.get("logs", "unsupported_by_backend") == 2
    assert telemetry.drops.get("logs", "export_failed") == 0

    spans = phoenix_server.wait_for_spans(project, 3)
    assert len(spans) == 3
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(str(span["name"]), []).append(span)
    (root,) = by_name["researcher.answer"]
    searches = by_name["arxiv.search"]
    root_id = root["context"]["span_id"]
    trace_id = root["context"]["trace_id"]
    assert root["parent_id"] is None
    assert [s["parent_id"] for s in searches] == [root_id, root_id]
    assert {s["context"]["trace_id"] for s in spans} == {trace_id}
    assert root["attributes"]["gen_ai.agent.name"] == "researcher"
    assert root["span_kind"] == "AGENT"
    assert [s["span_kind"] for s in searches] == ["TOOL", "TOOL"]  # API calls are not "unknown" in Phoenix
    statuses = sorted((s["status_code"], s["status_message"]) for s in searches)
    assert statuses == [("ERROR", "TimeoutError: arxiv did not answer"), ("UNSET", "")]
    failed = next(s for s in searches if s["status_code"] == "ERROR")
    assert failed["attributes"]["error.type"] == "TimeoutError"
    assert [e["name"] for e in failed["events"]] == ["exception"]
