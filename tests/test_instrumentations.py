"""`init(instrument=[...])`: the official OpenAI and httpx instrumentations on rfobs's providers, beside `@llm_call`.

The real `openai` client talks to a local OpenAI-compatible server (`tests/e2e/openai_stub.py`); spans are read
from an in-memory exporter on the provider `init()` built, metrics from its Prometheus registry.
"""

from __future__ import annotations

import importlib
import types
import warnings
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.resources.chat.completions import Completions
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

import rfobs
from rfobs._instrumentations import LIBRARIES, Library, UsageBelowLLMCallProcessor
from rfobs.config import load_config
from rfobs.exceptions import ConfigError
from rfobs.testing import Capture, reset_global_telemetry, span_as_dict
from tests.e2e.openai_stub import COMPLETION_ID, COMPLETION_TOKENS, PROMPT_TOKENS, REPLY, OpenAIStub, serve_openai

pytestmark = [pytest.mark.usefixtures("clean_globals"), pytest.mark.timeout(60)]

QUIET: dict[str, Any] = {"metrics__prometheus_port": 0, "logging__enabled": False, "tracing__exporter": "none"}
# The official instrumentation ships no type information: its class is taken as it comes.
OpenAIInstrumentor: Any = importlib.import_module("opentelemetry.instrumentation.genai.openai").OpenAIInstrumentor
GENAI_SCOPE = "opentelemetry.instrumentation.genai.openai"
HTTPX_SCOPE = "opentelemetry.instrumentation.httpx"
ALLOWED = "names from openai, anthropic, google-genai, httpx, requests, aiohttp"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with serve_openai() as running:
        yield running


def start(*names: str) -> tuple[rfobs.Telemetry, InMemorySpanExporter]:
    telemetry = rfobs.init(instrument=list(names), **QUIET)
    exporter = InMemorySpanExporter()
    assert telemetry.tracer_provider is not None
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return telemetry, exporter


def client_for(stub: OpenAIStub) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub.base_url, api_key="sk-test", max_retries=0, timeout=5.0)


def spans(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    """Finished spans with their scope, in the order they ended."""
    return [
        {**span_as_dict(s), "scope": s.instrumentation_scope and s.instrumentation_scope.name}
        for s in exporter.get_finished_spans()
    ]


def histogram(telemetry: rfobs.Telemetry, name: str, **labels: str) -> tuple[float, float]:
    """(sum, count) of a histogram over every instrumentation scope, as Prometheus serves it."""
    assert telemetry.prometheus_registry is not None
    total = count = 0.0
    for family in telemetry.prometheus_registry.collect():
        for sample in family.samples:
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                if sample.name == f"{name}_sum":
                    total += sample.value
                elif sample.name == f"{name}_count":
                    count += sample.value
    return total, count


def openai_create() -> Any:
    return Completions.__dict__["create"]


def openai_is_wrapped() -> bool:
    """Whether `Completions.create` is an instrumentation's wrapper (the unpatched method is a plain function)."""
    return type(openai_create()) is not types.FunctionType  # type(): a wrapt proxy claims its wrapped's class


# -- turning instrumentations on and off


def test_init_turns_on_openai_and_httpx_and_shutdown_turns_them_off_again_each_time() -> None:
    assert not openai_is_wrapped()
    telemetry = rfobs.init(instrument=["openai", "httpx"], **QUIET)
    assert OpenAIInstrumentor().is_instrumented_by_opentelemetry
    assert HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
    with pytest.warns(RuntimeWarning, match="already called"):
        assert rfobs.init(instrument=["openai"], **QUIET) is telemetry
    assert type(openai_create().__wrapped__) is types.FunctionType  # wrapped once, not twice
    assert telemetry.shutdown(timeout=2)
    assert not openai_is_wrapped()
    assert not OpenAIInstrumentor().is_instrumented_by_opentelemetry
    assert not HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
    reset_global_telemetry()
    again = rfobs.init(instrument=["openai"], **QUIET)
    assert openai_is_wrapped()
    assert not HTTPX2ClientInstrumentor().is_instrumented_by_opentelemetry
    assert again.shutdown(timeout=2)
    assert not openai_is_wrapped()


def test_an_instrumentation_the_application_turned_on_itself_is_left_on_at_shutdown() -> None:
    OpenAIInstrumentor().instrument(tracer_provider=NoOpTracerProvider())
    try:
        telemetry = rfobs.init(instrument=["openai"], **QUIET)
        assert telemetry.shutdown(timeout=2)
        assert OpenAIInstrumentor().is_instrumented_by_opentelemetry
        assert openai_is_wrapped()
    finally:
        OpenAIInstrumentor().uninstrument()


def test_the_setting_takes_a_list_or_comma_separated_names_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RFOBS_SDK__INSTRUMENT", "OpenAI, httpx,openai")
    assert load_config().sdk.instrument == ("openai", "httpx")
    assert load_config(overrides={"sdk__instrument": ["google-genai"]}).sdk.instrument == ("google-genai",)
    monkeypatch.delenv("RFOBS_SDK__INSTRUMENT")
    assert load_config().sdk.instrument == ()


def test_an_unknown_name_is_a_config_error_naming_it_and_the_names_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as raised:
        rfobs.init(instrument=["openai", "langchain"], **QUIET)
    assert "sdk.instrument" in str(raised.value)
    assert "langchain" in str(raised.value)
    assert f"{ALLOWED} ('langchain' is not one)" in str(raised.value)
    assert rfobs.sdk.active() is None
    assert not openai_is_wrapped()
    monkeypatch.setenv("RFOBS_SDK__INSTRUMENT", "openai,crewai")
    with pytest.raises(ConfigError, match=r"'crewai' is not one"):
        load_config()


def test_a_known_library_whose_instrumentation_is_missing_earns_one_warning_naming_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("google-genai", "aiohttp"):
        absent = Library((("rfobs-test-instrumentation-not-installed", (name,)),), LIBRARIES[name].install)
        monkeypatch.setitem(LIBRARIES, name, absent)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        telemetry = rfobs.init(instrument=["google-genai", "openai", "aiohttp"], **QUIET)
    ours = [(str(w.message), w.category, w.filename) for w in caught if str(w.message).startswith("rfobs:")]
    assert ours == [
        (
            "rfobs: sdk.instrument names 'google-genai', but no OpenTelemetry instrumentation of it is installed: "
            "pip install 'rfobs[instrument-google-genai]'",
            RuntimeWarning,
            __file__,
        ),
        (
            "rfobs: sdk.instrument names 'aiohttp', but no OpenTelemetry instrumentation of it is installed: "
            "pip install opentelemetry-instrumentation-aiohttp-client (the release matching "
            "opentelemetry-instrumentation)",
            RuntimeWarning,
            __file__,
        ),
    ]
    assert openai_is_wrapped()  # the installed one is on all the same
    assert telemetry.shutdown(timeout=2)


def test_an_instrumentation_that_cannot_start_is_a_warning_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if the installed openai were too old for the instrumentation: it raises DependencyConflictError.
    def too_new(self: object) -> tuple[str, ...]:
        return ("openai >= 999",)

    monkeypatch.setattr(OpenAIInstrumentor, "instrumentation_dependencies", too_new)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        telemetry = rfobs.init(instrument=["openai"], **QUIET)
    ours = [str(w.message) for w in caught if str(w.message).startswith("rfobs:")]
    assert len(ours) == 1
    assert ours[0].startswith(
        "rfobs: the openai instrumentation (opentelemetry-instrumentation-genai-openai) could not be turned on: "
    )
    assert "openai >= 999" in ours[0]
    assert not openai_is_wrapped()
    assert telemetry.shutdown(timeout=2)


# -- the real client against the local server


def test_the_client_spans_nest_under_the_agent_and_the_usage_is_counted_once(stub: OpenAIStub) -> None:
    telemetry, exporter = start("openai", "httpx")
    client = client_for(stub)

    @rfobs.agent("researcher")
    def research(question: str) -> str:
        response = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
        return response.choices[0].message.content or ""

    assert research("What is the transformer paper called?") == REPLY
    assert stub.requests == [
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is the transformer paper called?"}]}
    ]
    http, chat, agent = spans(exporter)
    assert (http["name"], http["kind"], http["scope"]) == ("POST", "CLIENT", HTTPX_SCOPE)
    assert (chat["name"], chat["kind"], chat["scope"]) == ("chat gpt-4o-mini", "CLIENT", GENAI_SCOPE)
    assert (agent["name"], agent["scope"]) == ("invoke_agent researcher", "rfobs")
    assert http["parent_id"] == chat["span_id"]
    assert chat["parent_id"] == agent["span_id"]
    assert agent["parent_id"] is None
    assert len({http["trace_id"], chat["trace_id"], agent["trace_id"]}) == 1
    assert http["attributes"]["http.status_code"] == 200
    assert chat["attributes"]["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
    assert chat["attributes"]["gen_ai.response.id"] == COMPLETION_ID
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="input") == (PROMPT_TOKENS, 1)
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="output") == (COMPLETION_TOKENS, 1)
    assert telemetry.shutdown(timeout=2)


def test_llm_call_around_the_instrumented_client_leaves_the_usage_to_the_instrumentation_span(
    stub: OpenAIStub,
) -> None:
    telemetry, exporter = start("openai", "httpx")
    client = client_for(stub)

    @rfobs.llm_call("openai")
    def ask(*, model: str, messages: list[dict[str, str]]) -> Any:
        return client.chat.completions.create(model=model, messages=messages)  # pyright: ignore[reportArgumentType]

    @rfobs.agent("researcher")
    def research(question: str) -> str:
        return ask(model="gpt-4o-mini", messages=[{"role": "user", "content": question}]).choices[0].message.content

    assert research("Which paper?") == REPLY
    http, chat, llm, agent = spans(exporter)
    assert [s["scope"] for s in (http, chat, llm, agent)] == [HTTPX_SCOPE, GENAI_SCOPE, "rfobs", "rfobs"]
    assert (http["parent_id"], chat["parent_id"], llm["parent_id"]) == (
        chat["span_id"],
        llm["span_id"],
        agent["span_id"],
    )
    carrying = [s["name"] for s in (http, chat, llm, agent) if "gen_ai.usage.input_tokens" in s["attributes"]]
    assert carrying == ["chat gpt-4o-mini"]  # exactly one span carries the request's usage: the client's
    assert chat["attributes"]["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS
    assert llm["name"] == "chat gpt-4o-mini"
    assert llm["attributes"]["rfobs.llm.usage_recorded_by"] == GENAI_SCOPE
    assert sorted(key for key in llm["attributes"] if key.startswith(("gen_ai.usage.", "llm.token_count."))) == [
        "gen_ai.usage.cost"
    ]
    assert llm["attributes"]["gen_ai.response.id"] == COMPLETION_ID
    assert agent["attributes"]["gen_ai.usage.cost"] == llm["attributes"]["gen_ai.usage.cost"]
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="input") == (PROMPT_TOKENS, 1)
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="output") == (COMPLETION_TOKENS, 1)
    assert histogram(telemetry, "gen_ai_client_operation_duration_seconds", otel_scope_name="rfobs")[1] == 0
    assert histogram(telemetry, "gen_ai_client_operation_duration_seconds")[1] == 1
    assert telemetry.shutdown(timeout=2)


def test_a_streaming_llm_call_around_the_instrumented_client_counts_the_usage_once(stub: OpenAIStub) -> None:
    telemetry, exporter = start("openai", "httpx")
    client = client_for(stub)

    @rfobs.llm_call("openai", "gpt-4o-mini")
    def ask(question: str) -> Iterator[Any]:
        yield from client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": question}],
            stream=True,
            stream_options={"include_usage": True},
        )

    assert "".join(chunk.choices[0].delta.content or "" for chunk in ask("Which paper?") if chunk.choices) == REPLY
    assert stub.requests[0]["stream"] is True
    http, chat, llm = spans(exporter)
    assert [s["scope"] for s in (http, chat, llm)] == [HTTPX_SCOPE, GENAI_SCOPE, "rfobs"]
    assert (http["parent_id"], chat["parent_id"]) == (chat["span_id"], llm["span_id"])
    assert (chat["attributes"]["gen_ai.usage.input_tokens"], chat["attributes"]["gen_ai.usage.output_tokens"]) == (
        PROMPT_TOKENS,
        COMPLETION_TOKENS,
    )
    assert llm["attributes"]["rfobs.llm.usage_recorded_by"] == GENAI_SCOPE
    assert llm["attributes"]["gen_ai.request.stream"] is True
    assert "gen_ai.usage.input_tokens" not in llm["attributes"]
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="input") == (PROMPT_TOKENS, 1)
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="output") == (COMPLETION_TOKENS, 1)
    assert telemetry.shutdown(timeout=2)


def test_without_the_openai_instrumentation_llm_call_keeps_the_usage(stub: OpenAIStub) -> None:
    telemetry, exporter = start("httpx")
    client = client_for(stub)

    @rfobs.llm_call("openai")
    def ask(*, model: str, messages: list[dict[str, str]]) -> Any:
        return client.chat.completions.create(model=model, messages=messages)  # pyright: ignore[reportArgumentType]

    ask(model="gpt-4o-mini", messages=[{"role": "user", "content": "Which paper?"}])
    http, llm = spans(exporter)
    assert (http["scope"], http["parent_id"]) == (HTTPX_SCOPE, llm["span_id"])
    assert llm["attributes"]["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert "rfobs.llm.usage_recorded_by" not in llm["attributes"]
    assert histogram(telemetry, "gen_ai_client_token_usage", gen_ai_token_type="input") == (PROMPT_TOKENS, 1)
    assert histogram(telemetry, "gen_ai_client_operation_duration_seconds", otel_scope_name="rfobs")[1] == 1
    assert telemetry.shutdown(timeout=2)


# -- the double-span rule on its own, with the `capture` fixture


def test_only_a_genai_span_directly_under_an_llm_call_marks_it(capture: Capture) -> None:
    capture.tracer_provider.add_span_processor(UsageBelowLLMCallProcessor())  # pyright: ignore[reportArgumentType]
    other = capture.tracer_provider.get_tracer("some.instrumentation")

    @rfobs.llm_call("openai", "gpt-4o-mini")
    def ask(operation: str | None) -> dict[str, object]:
        attributes = {} if operation is None else {"gen_ai.operation.name": operation}
        with other.start_as_current_span("inner", attributes=attributes):
            return {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}

    @rfobs.task("researcher", "plan")
    def plan() -> None:
        with other.start_as_current_span("chat other", attributes={"gen_ai.operation.name": "chat"}):
            pass

    ask("chat")
    ask(None)  # an HTTP span, say
    ask("invoke_agent")  # not an inference
    plan()
    marked = [s["name"] for s in capture.spans() if "rfobs.llm.usage_recorded_by" in s["attributes"]]
    llm_spans = [s for s in capture.spans() if s["name"] == "chat gpt-4o-mini"]
    assert [s["attributes"].get("rfobs.llm.usage_recorded_by") for s in llm_spans] == [
        "some.instrumentation",
        None,
        None,
    ]
    assert [s["attributes"].get("gen_ai.usage.input_tokens") for s in llm_spans] == [None, 3, 3]
    assert marked == ["chat gpt-4o-mini"]  # not the task around "chat other"
    points = capture.metric("gen_ai.client.token.usage")
    assert sorted((p["attributes"]["gen_ai.token.type"], p["sum"], p["count"]) for p in points) == [
        ("input", 6, 2),
        ("output", 8, 2),
    ]


def test_a_failed_request_under_an_instrumented_client_has_its_duration_recorded_once(capture: Capture) -> None:
    capture.tracer_provider.add_span_processor(UsageBelowLLMCallProcessor())  # pyright: ignore[reportArgumentType]
    other = capture.tracer_provider.get_tracer("some.instrumentation")

    @rfobs.llm_call("openai", "gpt-4o-mini")
    def ask(instrumented: bool) -> dict[str, object]:
        if instrumented:
            with other.start_as_current_span("chat gpt-4o-mini", attributes={"gen_ai.operation.name": "chat"}):
                raise TimeoutError("the provider did not answer")
        raise TimeoutError("the provider did not answer")

    for instrumented in (True, False):
        with pytest.raises(TimeoutError):
            ask(instrumented)
    # The instrumented request's duration is the instrumentation's to record: rfobs records only the other one.
    (point,) = capture.metric("gen_ai.client.operation.duration")
    assert (point["count"], point["attributes"]["error.type"]) == (1, "TimeoutError")
