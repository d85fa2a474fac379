"""The one scrubbing pass every exported value goes through, done on the export thread, not the agent's.

`rfobs.exporters` wraps each span, log record and metric exporter it builds in one of these wrappers, and
`rfobs.init()` reads `/metrics` through `ScrubbingPrometheusReader` and builds its Resource through
`scrub_resource`. A wrapper hands the exporter scrubbed copies: span names, attributes (user-set ones too),
events, links, status descriptions and resources; log bodies, attributes and resources; metric label values
and resources (which Prometheus shows as `target_info`). A value under a secret-looking key (`api_key`,
`db.password`) becomes `***`; every string goes through `scrub_text`. A span, record or data point with
nothing to hide is passed on as it is, without a copy.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from rfobs._limits import Limits, configure_limits
from rfobs._secrets import REDACTED, is_secret_key, scrub_text, secret_patterns, set_configured_patterns

if TYPE_CHECKING:
    from opentelemetry.util.types import Attributes

    from rfobs._settings_model import Settings

__all__ = [
    "ScrubbingLogExporter",
    "ScrubbingMetricExporter",
    "ScrubbingPrometheusReader",
    "ScrubbingSpanExporter",
    "configure",
    "scrub_attributes",
    "scrub_log_record",
    "scrub_metrics_data",
    "scrub_resource",
    "scrub_span",
]

_T = TypeVar("_T")


def configure(settings: Settings) -> None:
    """Apply the scrubbing and size settings: `sdk.scrub_patterns` and the text limits (called by `init()`)."""
    set_configured_patterns(settings.sdk.scrub_patterns)
    tracing = settings.tracing
    # The SDK cuts attribute values at max_attribute_length without a mark: keep rfobs's own texts, marker
    # included, under it.
    ceiling = tracing.max_attribute_length or tracing.max_stacktrace_length
    configure_limits(
        Limits(
            exception_message=min(tracing.max_exception_length, ceiling),
            stacktrace=min(tracing.max_stacktrace_length, ceiling),
            log_message=settings.logging.max_message_length,
        )
    )


def _hides(key: str, value: object) -> bool:
    """Whether `value` is hidden whole because of its key (`api_key`, `db.password`)."""
    return value is not None and not isinstance(value, bool) and value not in ("", ()) and is_secret_key(key)


def _cacheable(value: object) -> bool:
    return isinstance(value, (int, float, tuple)) or (isinstance(value, str) and len(value) <= 256)


def _scrub_value(key: str, value: object) -> object:
    if _cacheable(value):
        try:
            return _scrub_short_value(key, value, secret_patterns())
        except TypeError:  # a tuple holding something unhashable
            pass
    return _scrub_any_value(key, value)


# Attribute keys and short values repeat from span to span: one lookup instead of a key judgement and a scrub,
# per set of scrub patterns. Typed, so that `1` and `True` are kept apart.
@functools.lru_cache(maxsize=8192, typed=True)
def _scrub_short_value(key: str, value: object, patterns: tuple[re.Pattern[str], ...]) -> object:
    return _scrub_any_value(key, value)


def _scrub_any_value(key: str, value: object) -> object:
    if _hides(key, value):
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, (tuple, list)):
        items = cast("Sequence[object]", value)
        return tuple(scrub_text(item) if isinstance(item, str) else item for item in items)
    return value


def scrub_attributes(attributes: Attributes) -> dict[str, Any] | None:
    """Scrubbed copy of `attributes`, or None when nothing in them needed hiding."""
    if not attributes:
        return None
    scrubbed: dict[str, Any] | None = None
    for index, (key, value) in enumerate(attributes.items()):
        new = _scrub_value(key, value)
        if scrubbed is None and new != value:
            scrubbed = dict(list(attributes.items())[:index])  # the first change: copy what came before
        if scrubbed is not None:
            scrubbed[key] = new
    return scrubbed


def _bounded(values: dict[str, Any], original: Attributes) -> BoundedAttributes:
    """`values` as immutable attributes that keep the dropped-attribute count of `original`."""
    bounded = BoundedAttributes(maxlen=None, attributes=values, immutable=True)
    bounded.dropped = original.dropped if isinstance(original, BoundedAttributes) else 0
    return bounded


def _with_dropped(items: list[_T], original: Sequence[_T]) -> Sequence[_T]:
    """`items` as a list that keeps the dropped count of `original` (a BoundedList of events or links)."""
    if not isinstance(original, BoundedList):
        return items
    bounded: BoundedList[_T] = BoundedList(None)
    bounded.extend(items)
    bounded.dropped = original.dropped
    return bounded


# The last resource scrubbed and its result: every span of a provider shares one Resource object.
_resource_cache: tuple[Resource, Resource] | None = None


def scrub_resource(resource: Resource) -> Resource:
    """`resource` with its attributes scrubbed (the same object when there was nothing to hide)."""
    global _resource_cache
    cached = _resource_cache
    if cached is not None and cached[0] is resource:
        return cached[1]
    attributes = scrub_attributes(resource.attributes)
    scrubbed = resource if attributes is None else Resource(attributes, resource.schema_url)
    _resource_cache = (resource, scrubbed)
    return scrubbed


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` with everything scrubbed, or `span` itself when nothing needed hiding."""
    name = scrub_text(span.name)
    attributes = scrub_attributes(span.attributes)
    events = _scrub_events(span.events)
    links = _scrub_links(span.links)
    status = span.status
    if status.description and (description := scrub_text(status.description)) != status.description:
        status = Status(status.status_code, description)
    resource = scrub_resource(span.resource)
    unchanged = name == span.name and attributes is None and events is None and links is None
    if unchanged and status is span.status and resource is span.resource:
        return span
    return ReadableSpan(
        name=name,
        context=span.context,
        parent=span.parent,
        resource=resource,
        attributes=span.attributes if attributes is None else _bounded(attributes, span.attributes),
        events=span.events if events is None else events,
        links=span.links if links is None else links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _scrub_events(events: Sequence[Event]) -> Sequence[Event] | None:
    scrubbed: list[Event] = []
    changed = False
    for event in events:
        name, attributes = scrub_text(event.name), scrub_attributes(event.attributes)
        if name == event.name and attributes is None:
            scrubbed.append(event)
            continue
        changed = True
        values = event.attributes if attributes is None else _bounded(attributes, event.attributes)
        scrubbed.append(Event(name, values, event.timestamp))
    return _with_dropped(scrubbed, events) if changed else None


def _scrub_links(links: Sequence[Link]) -> Sequence[Link] | None:
    scrubbed: list[Link] = []
    changed = False
    for link in links:
        attributes = scrub_attributes(link.attributes)
        if attributes is None:
            scrubbed.append(link)
            continue
        changed = True
        scrubbed.append(Link(link.context, _bounded(attributes, link.attributes)))
    return _with_dropped(scrubbed, links) if changed else None


def _scrub_body(body: Any) -> Any:
    if isinstance(body, str):
        return scrub_text(body)
    if isinstance(body, Mapping):
        items: Mapping[str, Any] = body  # pyright: ignore[reportUnknownVariableType]
        return {key: REDACTED if _hides(key, value) else _scrub_body(value) for key, value in items.items()}
    if isinstance(body, (list, tuple)):
        return [_scrub_body(item) for item in body]  # pyright: ignore[reportUnknownVariableType]
    return body


def scrub_log_record(readable: ReadableLogRecord) -> ReadableLogRecord:
    """A copy of a log record with its body, attributes, event name and resource scrubbed (or the record)."""
    record = readable.log_record
    body = _scrub_body(record.body)
    attributes = scrub_attributes(record.attributes)
    resource = scrub_resource(readable.resource)
    event_name = scrub_text(record.event_name) if record.event_name else record.event_name
    if body == record.body and attributes is None and resource is readable.resource and event_name == record.event_name:
        return readable
    scrubbed = copy.copy(record)
    scrubbed.body = body
    scrubbed.event_name = event_name
    if attributes is not None:
        scrubbed.attributes = _bounded(attributes, record.attributes)
    return dataclasses.replace(readable, log_record=scrubbed, resource=resource)


def scrub_metrics_data(data: MetricsData) -> MetricsData:
    """`data` with label values and resources scrubbed (the same object when there was nothing to hide)."""
    resource_metrics: list[ResourceMetrics] = []
    changed = False
    for entry in data.resource_metrics:
        resource = scrub_resource(entry.resource)
        scopes: list[ScopeMetrics] = []
        for scope in entry.scope_metrics:
            metrics: list[Metric] = []
            for metric in scope.metrics:
                points: list[Any] = []
                for point in metric.data.data_points:
                    attributes = scrub_attributes(point.attributes)
                    points.append(point if attributes is None else dataclasses.replace(point, attributes=attributes))
                if any(new is not old for new, old in zip(points, metric.data.data_points, strict=True)):
                    changed = True
                    metric = dataclasses.replace(metric, data=dataclasses.replace(metric.data, data_points=points))
                metrics.append(metric)
            scopes.append(dataclasses.replace(scope, metrics=metrics))
        changed = changed or resource is not entry.resource
        resource_metrics.append(dataclasses.replace(entry, resource=resource, scope_metrics=scopes))
    return dataclasses.replace(data, resource_metrics=resource_metrics) if changed else data


class ScrubbingSpanExporter(SpanExporter):
    """Hands `inner` scrubbed copies of the spans it exports (see the module docstring)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Scrub, then export through the wrapped exporter."""
        return self.inner.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


class ScrubbingLogExporter(LogRecordExporter):
    """Hands `inner` scrubbed copies of the log records it exports."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """Scrub, then export through the wrapped exporter."""
        return self.inner.export([scrub_log_record(record) for record in batch])

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)


class ScrubbingMetricExporter(MetricExporter):
    """Hands `inner` metrics with scrubbed label values and resources."""

    def __init__(self, inner: MetricExporter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        """Scrub, then export through the wrapped exporter."""
        return self.inner.export(scrub_metrics_data(metrics_data), timeout_millis=timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]


class ScrubbingPrometheusReader(PrometheusMetricReader):
    """The Prometheus reader behind `/metrics`, fed scrubbed label values and a scrubbed `target_info`."""

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        if metrics_data is not None:  # pyright: ignore[reportUnnecessaryComparison] - the SDK passes None
            metrics_data = scrub_metrics_data(metrics_data)
        super()._receive_metrics(metrics_data, timeout_millis, **kwargs)  # pyright: ignore[reportUnknownMemberType]
