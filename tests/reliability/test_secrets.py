"""No secret of the corpus leaves the process, on any export path; text that only looks close survives (#9)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import rfobs
from rfobs import _secrets
from rfobs._scrub_export import (
    ScrubbingLogExporter,
    ScrubbingMetricExporter,
    ScrubbingPrometheusReader,
    ScrubbingSpanExporter,
    configure,
    scrub_resource,
)
from rfobs._secrets import is_secret_key, scrub_text, set_configured_patterns
from rfobs.cli import health_table, main
from rfobs.config import describe_settings, load_config
from rfobs.exporters import log_exporter, metric_exporter, span_exporter
from rfobs.health import CheckResult, HealthChecker, Status
from rfobs.health.server import report_body
from rfobs.logs import OtelLogHandler
from rfobs.sdk import Telemetry
from tests.reliability.secret_corpus import CORPUS, NOT_SECRETS, Shape, leaked

QUIET: dict[str, Any] = {"metrics__prometheus_enabled": False, "logging__enabled": False, "health__enabled": False}


def leaks(outputs: Iterable[str]) -> list[str]:
    """Names of the corpus shapes of which some part appears in `outputs`."""
    joined = "\n\x00\n".join(outputs)
    return [shape.name for shape in CORPUS if leaked(shape.secret, joined)]


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in cast("dict[object, object]", value).items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in cast("list[object]", value):
            yield from strings(item)


def exported_span_strings(telemetry: Telemetry) -> list[str]:
    # The trace file written through the exporter rfobs.init() built.
    assert telemetry.force_flush(timeout=10)
    assert telemetry.trace_file is not None
    lines = Path(telemetry.trace_file).read_text(encoding="utf-8").splitlines()
    return [text for line in lines for text in strings(json.loads(line))]


def test_the_corpus_holds_at_least_45_distinct_realistic_shapes() -> None:
    assert len(CORPUS) >= 45
    assert len({shape.name for shape in CORPUS}) == len(CORPUS)
    assert leaks(shape.text for shape in CORPUS) == [shape.name for shape in CORPUS]  # the detector sees each one
    # Before this fix, the scrubber caught fewer than a third of them.
    assert leaks(scrub_text(shape.text) for shape in CORPUS) == []


def test_scrubbing_is_idempotent_keeps_what_surrounds_a_secret_and_leaves_non_secrets_alone() -> None:
    for shape in CORPUS:
        once = scrub_text(shape.text)
        assert scrub_text(once) == once, shape.name
    assert scrub_text("could not connect to postgres://app:pw123456@db:5432/app") == (
        "could not connect to postgres://app:***@db:5432/app"
    )
    assert scrub_text("-H 'Authorization: Bearer abc123def456ghi'") == "-H 'Authorization: Bearer ***'"
    assert scrub_text("{'password': 'hunter2', 'user': 'u1'}") == "{'password': '***', 'user': 'u1'}"
    assert scrub_text("AccountName=a;AccountKey=abc+/d==;x=1") == "AccountName=a;AccountKey=***;x=1"
    assert [scrub_text(text) for text in NOT_SECRETS] == list(NOT_SECRETS)  # close to secrets, but not secrets


@pytest.mark.parametrize(
    "key",
    ["password", "DB_PASSWORD", "PGPASSWORD", "x-api-key", "OPENAI_API_KEY", "apiKey", "client_secret", "accessToken",
     "Authorization", "proxy-authorization", "Cookie", "set-cookie", "AccountKey", "SharedAccessKey", "sig",
     "X-Amz-Signature", "private_key", "aws_secret_access_key", "db_pass", "Ocp-Apim-Subscription-Key", "jwt"],
)  # fmt: skip
def test_secret_key_names(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["session_id", "author", "tokenizer", "input_tokens", "max_tokens", "gen_ai.usage.output_tokens", "token_count",
     "llm.token_count.prompt", "api_key_id", "secret_name", "secret_backend", "token_provider", "password_file",
     "auth_type", "cache_key", "PWD", "primary_key", "passport", "keyboard", "signal", "design"],
)  # fmt: skip
def test_names_that_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


@given(
    before=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60),
    after=st.text(max_size=60),
    shape=st.sampled_from(CORPUS),
)
@settings(max_examples=300, deadline=None)
def test_a_secret_anywhere_in_any_text_is_hidden(before: str, after: str, shape: Shape) -> None:
    text = f"{before} {shape.text}\n{after}"
    scrubbed = scrub_text(text)
    assert not leaked(shape.secret, scrubbed)
    assert scrub_text(scrubbed) == scrubbed


# -- spans, through the exporter rfobs.init() builds (the trace file)


@pytest.mark.usefixtures("clean_globals")
def test_span_exporters_rfobs_builds_scrub() -> None:
    settings = load_config(overrides={"tracing__exporter": "console"})
    assert isinstance(span_exporter(settings), ScrubbingSpanExporter)
    assert isinstance(metric_exporter(settings.otlp), ScrubbingMetricExporter)
    assert isinstance(log_exporter(settings.otlp), ScrubbingLogExporter)


@pytest.mark.usefixtures("clean_globals")
def test_no_secret_in_span_names_attributes_events_or_links() -> None:
    from opentelemetry.trace import Link

    telemetry = rfobs.init(tracing__exporter="file", **QUIET)
    tracer = telemetry.tracer
    with tracer.start_as_current_span("anchor") as anchor:
        anchor_context = anchor.get_span_context()
    for shape in CORPUS:
        link = Link(anchor_context, {"detail": shape.text})
        with tracer.start_as_current_span(shape.text, links=[link]) as span:
            span.set_attribute("note", shape.text)
            span.set_attribute("api_key", shape.secret)
            span.set_attribute("notes", [shape.text, "ok"])
            span.add_event(shape.text, {"detail": shape.text})
    with tracer.start_as_current_span("close calls") as span:
        for number, text in enumerate(NOT_SECRETS):
            span.set_attribute(f"text.{number}", text)
    exported = exported_span_strings(telemetry)
    telemetry.shutdown(timeout=2)
    assert leaks(exported) == []
    assert set(NOT_SECRETS) <= set(exported)


@pytest.mark.usefixtures("clean_globals")
def test_no_secret_in_exception_messages_stack_traces_or_captured_arguments() -> None:
    telemetry = rfobs.init(tracing__exporter="file", **QUIET)

    @rfobs.task("corpus", "fail")
    def fail(text: str) -> None:
        raise RuntimeError(text)

    @rfobs.task("corpus", "call", capture_args=True)
    def call(dsn: str, note: str) -> str:
        return note

    for shape in CORPUS:
        with pytest.raises(RuntimeError):
            fail(shape.text)
        call(shape.text, note=shape.text)
    exported = exported_span_strings(telemetry)
    telemetry.shutdown(timeout=2)
    assert leaks(exported) == []
    assert any(text.startswith("RuntimeError: could not connect to postgres://app:***@") for text in exported)


@pytest.mark.usefixtures("clean_globals")
def test_no_secret_in_resource_attributes() -> None:
    attributes = {f"note.{shape.name}": shape.text for shape in CORPUS} | {"team.session_id": NOT_SECRETS[0]}
    telemetry = rfobs.init(tracing__exporter="file", service__resource_attributes=attributes, **QUIET)
    with telemetry.tracer.start_as_current_span("work"):
        pass
    exported = exported_span_strings(telemetry)
    telemetry.shutdown(timeout=2)
    assert leaks(exported) == []
    assert NOT_SECRETS[0] in exported
    resource = Resource({"note": CORPUS[0].text, "service.name": "agent"})
    assert scrub_resource(resource).attributes == {"note": scrub_text(CORPUS[0].text), "service.name": "agent"}
    plain = Resource({"service.name": "agent"})
    assert scrub_resource(plain) is plain


# -- logs


@pytest.mark.parametrize("json_format", [True, False], ids=["json", "text"])
def test_no_secret_in_log_lines(json_format: bool) -> None:
    stream = io.StringIO()
    handler = rfobs.setup_logging("INFO", json_format=json_format, stream=stream)
    log = logging.getLogger("agent.corpus")
    try:
        for shape in CORPUS:
            log.info(shape.text)
            log.info("calling %s", shape.text)
            log.info("request", extra={"detail": shape.text, "api_key": shape.secret, "nested": {"body": shape.text}})
            try:
                raise RuntimeError(shape.text)
            except RuntimeError:
                log.exception("failed")
        for text in NOT_SECRETS:
            log.info(text)
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    if json_format:
        lines = [text for line in output.splitlines() for text in strings(json.loads(line))]
        assert leaks(lines) == []
        assert set(NOT_SECRETS) <= set(lines)
    else:
        assert leaks([output]) == []
        assert all(f"agent.corpus: {text}\n" in output for text in NOT_SECRETS)


def test_no_secret_in_otel_log_records() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource({"note": CORPUS[1].text}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(ScrubbingLogExporter(exporter)))
    handler = OtelLogHandler(provider)
    log = logging.getLogger("agent.otel")
    log.addHandler(handler)
    log.propagate = False
    try:
        for shape in CORPUS:
            log.warning(shape.text, extra={"detail": shape.text, "client_secret": shape.secret})
        for text in NOT_SECRETS:
            log.warning(text, extra={"session_id": "s-1", "max_tokens": 5})
        provider.get_logger("structured").emit(body={"prompt": CORPUS[2].text, "password": "pw-123456"})
    finally:
        log.removeHandler(handler)
        provider.shutdown()
    records = [record.log_record for record in exporter.get_finished_logs()]
    outputs = [json.dumps(record.to_json()) for record in exporter.get_finished_logs()]
    assert leaks(outputs) == []
    assert leaks(f"{record.body} {dict(record.attributes or {})}" for record in records) == []
    bodies = [record.body for record in records]
    assert set(NOT_SECRETS) <= set(map(str, bodies))
    assert bodies[-1] == {"prompt": scrub_text(CORPUS[2].text), "password": "***"}
    attributes = dict(records[-2].attributes or {})
    assert (attributes["session_id"], attributes["max_tokens"]) == ("s-1", 5)


# -- metrics


def metrics_text(registry: CollectorRegistry) -> list[str]:
    found: list[str] = []
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.append(sample.name)
            for name, value in sample.labels.items():
                found.extend((name, value))
    return found


def record_corpus(provider: MeterProvider) -> None:
    counter = provider.get_meter("corpus").create_counter("corpus_calls")
    for shape in CORPUS:
        counter.add(1, {"note": shape.text, "api_key": shape.secret})
    for text in NOT_SECRETS:
        counter.add(1, {"note": text})


def test_no_secret_in_prometheus_labels_or_target_info() -> None:
    registry = CollectorRegistry(auto_describe=True)
    resource = Resource({f"note.{shape.name}": shape.text for shape in CORPUS} | {"service.name": "agent"})
    provider = MeterProvider(metric_readers=[ScrubbingPrometheusReader(registry=registry)], resource=resource)
    record_corpus(provider)
    shown = metrics_text(registry)
    provider.shutdown()
    assert leaks(shown) == []
    assert set(NOT_SECRETS) <= set(shown)
    assert "target_info" in shown and "agent" in shown


@pytest.mark.usefixtures("clean_globals")
def test_no_secret_on_the_metrics_endpoint_rfobs_init_serves() -> None:
    attributes = {f"note.{shape.name}": shape.text for shape in CORPUS}
    telemetry = rfobs.init(
        tracing__exporter="none",
        metrics__prometheus_port=0,
        logging__enabled=False,
        health__enabled=False,
        service__resource_attributes=attributes,
    )
    assert telemetry.meter_provider is not None and telemetry.prometheus_registry is not None
    record_corpus(telemetry.meter_provider)
    shown = metrics_text(telemetry.prometheus_registry)
    telemetry.shutdown(timeout=2)
    assert leaks(shown) == []


def test_no_secret_in_otlp_metric_exports() -> None:
    class Keep(MetricExporter):
        def __init__(self) -> None:
            super().__init__()
            self.exported: list[MetricsData] = []

        def export(self, metrics_data: MetricsData, timeout_millis: float = 0, **kwargs: Any) -> MetricExportResult:
            self.exported.append(metrics_data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource({"note": CORPUS[3].text}))
    record_corpus(provider)
    data = reader.get_metrics_data()
    assert data is not None
    inner = Keep()
    ScrubbingMetricExporter(inner).export(data)
    provider.shutdown()
    (exported,) = inner.exported
    assert leaks([exported.to_json()]) == []
    assert all(json.dumps(text)[1:-1] in exported.to_json() for text in NOT_SECRETS)
    assert leaks([data.to_json()]) != []  # the wrapper's input held the secrets: its output is a copy


# -- health, config and errors


class Reporting:
    critical = False

    def __init__(self, name: str, text: str, *, raises: bool = False) -> None:
        self.name, self._text, self._raises = name, text, raises

    async def run(self) -> CheckResult:
        if self._raises:
            raise ConnectionError(self._text)
        return CheckResult(self.name, Status.DEGRADED, self._text, {"detail": self._text, "count": 1})


def test_no_secret_in_health_responses() -> None:
    checker = HealthChecker()
    for number, shape in enumerate(CORPUS):
        checker.register(Reporting(f"check{number}", shape.text))
        checker.register(Reporting(f"raising{number}", shape.text, raises=True))
    checker.register(Reporting("close", NOT_SECRETS[0]))
    report = asyncio.run(checker.check_all())
    body = json.loads(report_body(report))
    shown = list(strings(body))
    assert leaks(shown) == []
    assert NOT_SECRETS[0] in shown
    assert leaks([health_table(report)]) == []
    assert body["checks"][0]["values"]["count"] == 1
    # The checker feeds the health gauges while it lives; the raised errors' tracebacks hold it in a cycle.
    del checker, report
    gc.collect()


def test_no_secret_in_config_errors() -> None:
    errors: list[str] = []
    shown: list[str] = []
    for shape in CORPUS:
        for key in ("tracing__sampler", "otlp__endpoint", "metrics__namespace", "health__dependencies"):
            try:
                settings = load_config(overrides={key: shape.text})
            except rfobs.ConfigError as error:
                errors.append(str(error))
            else:  # a valid value (a dependency URL with a password, say) is shown by `config show` instead
                shown.extend(value for _, value, _ in describe_settings(settings))
    assert len(errors) > 3 * len(CORPUS)
    assert leaks(errors) == []
    assert leaks(shown) == []
    with pytest.raises(rfobs.ConfigError) as caught:
        load_config(overrides={"tracing__sampler": "http://u:pw1234@x/?password=hunter2&sig=abc%3D"})
    assert "'http://u:***@x/?password=***&sig=***'" in str(caught.value)


def test_no_secret_in_config_show(capsys: pytest.CaptureFixture[str]) -> None:
    table = {f"note_{number}": shape.text for number, shape in enumerate(CORPUS)} | {"session_id": NOT_SECRETS[0]}
    document = "[default.service]\nresource_attributes = {" + ", ".join(
        f"{key} = {json.dumps(value)}" for key, value in table.items()
    )
    Path("settings.toml").write_text(document + "}\n", encoding="utf-8")
    rows = describe_settings(load_config())
    assert leaks(value for _, value, _ in rows) == []
    assert main(["config", "show", "--json"]) == 0
    assert main(["config", "show"]) == 0
    shown = capsys.readouterr().out
    assert leaks([shown]) == []
    assert NOT_SECRETS[0] in shown


# -- extending the scrubber


@pytest.fixture
def no_added_patterns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_secrets, "_added", ())
    yield
    set_configured_patterns(())


@pytest.mark.usefixtures("no_added_patterns")
def test_added_patterns_are_scrubbed_everywhere_rfobs_scrubs() -> None:
    assert scrub_text("order acme_9f8e7d6c5b4a3210 shipped") == "order acme_9f8e7d6c5b4a3210 shipped"
    rfobs.add_secret_pattern(r"acme_[0-9a-f]{16}")
    rfobs.add_secret_pattern(r"tenant=(?P<secret>[A-Z]{6})\b")
    assert scrub_text("order acme_9f8e7d6c5b4a3210 shipped") == "order *** shipped"
    assert scrub_text("tenant=QWERTY ok") == "tenant=*** ok"
    assert scrub_text("tenant=qwerty ok") == "tenant=qwerty ok"


@pytest.mark.usefixtures("no_added_patterns")
def test_scrub_patterns_from_the_settings_apply_once_configured() -> None:
    configure(load_config(overrides={"sdk__scrub_patterns": "internal-[0-9]{6},ticket #[0-9]{4}"}))
    assert scrub_text("see internal-123456 and ticket #1234") == "see *** and ***"
    configure(load_config())
    assert scrub_text("see internal-123456") == "see internal-123456"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a+)+b", "repeats a group holding a variable repeat or an alternation"),
        ("(a|ab)*c", "repeats a group holding a variable repeat or an alternation"),
        (r"(?:[a-z]+\.)+com", "repeats a group holding a variable repeat or an alternation"),
        ("x*", "matches the empty string"),
        ("acme_[", "does not compile"),
        ("", "expected a non-empty regular expression string"),
    ],
)
@pytest.mark.usefixtures("no_added_patterns")
def test_patterns_that_cannot_be_scrub_patterns_are_refused(pattern: str, reason: str) -> None:
    with pytest.raises(rfobs.ConfigError, match=re.escape(reason)):
        rfobs.add_secret_pattern(pattern)
    assert _secrets._added == ()  # pyright: ignore[reportPrivateUsage]
    if pattern:  # the settings refuse an empty item before it is a pattern
        with pytest.raises(rfobs.ConfigError, match=r"sdk\.scrub_patterns = .*" + re.escape(reason)):
            load_config(overrides={"sdk__scrub_patterns": [pattern]})
