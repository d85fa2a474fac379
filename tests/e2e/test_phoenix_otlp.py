"""Spans sent by rfobs over OTLP/HTTP and OTLP/gRPC arrive in a real trace backend (Arize Phoenix)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

import rfobs
from tests.e2e.servers import PhoenixHandle

pytestmark = pytest.mark.usefixtures("clean_globals")


def run_agent(endpoint: str, protocol: str, project: str) -> None:
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
    assert telemetry.shutdown(timeout=10) is True


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_phoenix_receives_the_span_tree(phoenix_server: PhoenixHandle, protocol: str) -> None:
    project = f"rfobs-e2e-{protocol.replace('/', '-')}-{uuid.uuid4().hex[:8]}"
    endpoint = phoenix_server.http_url if protocol == "http/protobuf" else phoenix_server.grpc_endpoint
    run_agent(endpoint, protocol, project)

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
    statuses = sorted((s["status_code"], s["status_message"]) for s in searches)
    assert statuses == [("ERROR", "TimeoutError: arxiv did not answer"), ("UNSET", "")]
    failed = next(s for s in searches if s["status_code"] == "ERROR")
    assert failed["attributes"]["error.type"] == "TimeoutError"
    assert [e["name"] for e in failed["events"]] == ["exception"]
