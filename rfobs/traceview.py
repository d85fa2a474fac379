"""Read OTLP/JSON-lines trace files and render them as plain-text span trees for `rfobs traces`."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rfobs._otlp_json import AttributeValue, SpanEvent, SpanRecord, decode_otlp_json_line

__all__ = [
    "AttributeValue",
    "LoadResult",
    "SpanEvent",
    "SpanNode",
    "SpanRecord",
    "Trace",
    "build_traces",
    "load_spans",
    "read_trace_file",
    "render_file",
    "render_loaded",
    "render_traces",
    "select_traces",
]

_KEY_ATTRIBUTE_PREFIXES = ("gen_ai.", "rfobs.", "http.")
_KIND = "openinference.span.kind"
_KEY_ATTRIBUTES = frozenset({"error.type", _KIND})
# Already said by the span's name ("{agent}.{task}", "{service}.{endpoint}").
_NAME_ATTRIBUTES = frozenset({"rfobs.agent", "rfobs.task", "rfobs.api.service", "rfobs.api.endpoint"})
_VALUE_LIMIT = 40
_HEX = frozenset(string.hexdigits)


@dataclass
class SpanNode:
    """A span and its children, sorted by start time."""

    span: SpanRecord
    children: list[SpanNode] = field(default_factory=list["SpanNode"])


@dataclass(frozen=True)
class Trace:
    """All spans of one trace, as trees; more than one root when parents are missing from the file."""

    trace_id: str
    roots: list[SpanNode]
    spans: list[SpanRecord]

    @property
    def start_ns(self) -> int:
        """When the earliest span started."""
        return min(span.start_ns for span in self.spans)

    @property
    def duration_ns(self) -> int:
        """From the earliest start to the latest end."""
        return max(0, max(span.end_ns for span in self.spans) - self.start_ns)

    @property
    def error_count(self) -> int:
        """How many spans have status ERROR."""
        return sum(span.status_code == "ERROR" for span in self.spans)

    @property
    def service_name(self) -> str:
        """The service of the first root span."""
        return self.roots[0].span.service_name


@dataclass(frozen=True)
class LoadResult:
    """What `read_trace_file` found: the spans, how many lines it could not read, and the files it read."""

    spans: list[SpanRecord]
    skipped_lines: int
    files: list[Path]


def read_trace_file(path: str | os.PathLike[str]) -> LoadResult:
    """Read a trace file and its rotated backups (`path.1`, `path.2`, ...), oldest first.

    Lines that are not OTLP/JSON trace requests are skipped and counted. An unterminated last
    line that does not parse is ignored without counting: a writer may be appending it right now.

    Args:
        path: The file written by `OtlpJsonFileSpanExporter`. It need not exist.

    Returns:
        The spans in file order, the number of skipped lines and the files read.

    Raises:
        OSError: If a file exists but cannot be read.
    """
    spans: list[SpanRecord] = []
    skipped = 0
    files = _trace_files(Path(path))
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # rotated away between listing and reading
            continue
        lines = text.split("\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                spans.extend(decode_otlp_json_line(line))
            except (ValueError, KeyError, TypeError, RecursionError):
                if number < len(lines):
                    skipped += 1
    return LoadResult(spans=spans, skipped_lines=skipped, files=files)


def load_spans(path: str | os.PathLike[str]) -> list[SpanRecord]:
    """Read the spans of a trace file and its rotated backups; see `read_trace_file`.

    Args:
        path: The file written by `OtlpJsonFileSpanExporter`.

    Returns:
        The spans in file order.
    """
    return read_trace_file(path).spans


def _trace_files(path: Path) -> list[Path]:
    backups: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        prefix = path.name + "."
        for candidate in path.parent.iterdir():
            suffix = candidate.name.removeprefix(prefix)
            if candidate.name.startswith(prefix) and suffix.isdigit():
                backups.append((int(suffix), candidate))
    files = [backup for _, backup in sorted(backups, reverse=True)]
    return [*files, path] if path.is_file() else files


def build_traces(spans: Sequence[SpanRecord]) -> list[Trace]:
    """Group spans by trace and link each to its parent.

    A span whose parent is not among `spans` becomes a root. Children are sorted by start time;
    traces are ordered newest first. A span seen twice keeps its first copy.

    Args:
        spans: Spans from any number of traces, in any order.

    Returns:
        The traces, newest first.
    """
    by_trace: dict[str, dict[str, SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, {}).setdefault(span.span_id, span)
    traces = [_build_trace(trace_id, members) for trace_id, members in by_trace.items()]
    traces.sort(key=lambda trace: (trace.start_ns, trace.trace_id), reverse=True)
    return traces


def _build_trace(trace_id: str, members: dict[str, SpanRecord]) -> Trace:
    nodes = {span_id: SpanNode(span) for span_id, span in members.items()}
    parents: dict[str, SpanNode] = {}
    roots: list[SpanNode] = []
    for span_id, node in nodes.items():
        parent = nodes.get(node.span.parent_span_id or "")
        if parent is None or parent is node:
            roots.append(node)
        else:
            parent.children.append(node)
            parents[span_id] = parent
    # Corrupt input can hold a parent cycle, which no root reaches; cut each cycle at one span.
    reached = _reachable(roots)
    for span_id, node in nodes.items():
        if span_id not in reached:
            parents[span_id].children.remove(node)
            roots.append(node)
            reached |= _reachable([node])
    for node in nodes.values():
        node.children.sort(key=_start_order)
    roots.sort(key=_start_order)
    return Trace(trace_id=trace_id, roots=roots, spans=[node.span for node in nodes.values()])


def _reachable(roots: list[SpanNode]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node.span.span_id not in seen:
            seen.add(node.span.span_id)
            stack.extend(node.children)
    return seen


def _start_order(node: SpanNode) -> tuple[int, str, str]:
    return (node.span.start_ns, node.span.name, node.span.span_id)


def render_traces(
    traces: Sequence[Trace],
    *,
    trace_id: str | None = None,
    last: int | None = None,
    errors_only: bool = False,
    width: int = 100,
    source: str | None = None,
) -> str:
    """Render traces as plain-text span trees, newest first.

    Each trace starts with a header (trace id, service, start time in UTC, duration, span and
    error counts), followed by its tree: one line per span with its duration, status and key
    attributes, and one `•` line per span event. No line is longer than `width`.

    Args:
        traces: The traces, as returned by `build_traces`.
        trace_id: Show only the trace whose id starts with this (at least 8 hex characters).
        last: Show only the `last` newest traces (after the other filters).
        errors_only: Show only traces with at least one ERROR span.
        width: The maximum line length.
        source: Where the traces came from, named in the "nothing to show" messages.

    Returns:
        The text, without a trailing newline.

    Raises:
        ValueError: If `trace_id` is not 8 to 32 hex characters or `last` is less than 1.
    """
    where = f" in {source}" if source else ""
    if not traces:
        return f"no traces{where}"
    selected = select_traces(traces, trace_id=trace_id, errors_only=errors_only)
    if not selected:
        criteria = [f"--trace-id {_trace_id_prefix(trace_id)}"] if trace_id is not None else []
        return f"no trace matches {' '.join([*criteria, *(['--errors'] if errors_only else [])])}{where}"
    hidden = 0
    if last is not None:
        if last < 1:
            msg = f"last must be at least 1, got {last!r}"
            raise ValueError(msg)
        hidden = max(0, len(selected) - last)
        selected = selected[:last]
    blocks = ["\n".join(_render_trace(trace, width)) for trace in selected]
    if hidden:
        blocks.append(_fit(f"… {hidden} older trace{'s' if hidden > 1 else ''} not shown", width))
    return "\n\n".join(blocks)


def select_traces(traces: Sequence[Trace], *, trace_id: str | None = None, errors_only: bool = False) -> list[Trace]:
    """The traces whose id starts with `trace_id` and, with `errors_only`, that hold an ERROR span; newest first.

    Raises:
        ValueError: If `trace_id` is not 8 to 32 hex characters.
    """
    selected = sorted(traces, key=lambda trace: (trace.start_ns, trace.trace_id), reverse=True)
    if trace_id is not None:
        prefix = _trace_id_prefix(trace_id)
        selected = [trace for trace in selected if trace.trace_id.startswith(prefix)]
    if errors_only:
        selected = [trace for trace in selected if trace.error_count]
    return selected


def render_file(
    path: str | os.PathLike[str],
    *,
    trace_id: str | None = None,
    last: int | None = None,
    errors_only: bool = False,
    width: int = 100,
) -> str:
    """Read a trace file and render it, noting any unreadable lines; this is `rfobs traces`.

    Args:
        path: The file written by `OtlpJsonFileSpanExporter`.
        trace_id: Show only the trace whose id starts with this (at least 8 hex characters).
        last: Show only the `last` newest traces.
        errors_only: Show only traces with at least one ERROR span.
        width: The maximum line length.

    Returns:
        The text, without a trailing newline.

    Raises:
        ValueError: If `trace_id` is not 8 to 32 hex characters or `last` is less than 1.
    """
    return render_loaded(
        read_trace_file(path), os.fspath(path), trace_id=trace_id, last=last, errors_only=errors_only, width=width
    )


def render_loaded(
    loaded: LoadResult,
    source: str,
    *,
    trace_id: str | None = None,
    last: int | None = None,
    errors_only: bool = False,
    width: int = 100,
) -> str:
    """Render what `read_trace_file` read from `source`, noting any unreadable lines; see `render_file`.

    Raises:
        ValueError: If `trace_id` is not 8 to 32 hex characters or `last` is less than 1.
    """
    text = render_traces(
        build_traces(loaded.spans), trace_id=trace_id, last=last, errors_only=errors_only, width=width, source=source
    )
    if loaded.skipped_lines:
        plural = "s" if loaded.skipped_lines > 1 else ""
        text += "\n\n" + _fit(f"({loaded.skipped_lines} unreadable line{plural} skipped)", width)
    return text


def _trace_id_prefix(trace_id: str) -> str:
    prefix = trace_id.strip().lower()
    if not 8 <= len(prefix) <= 32 or not _HEX.issuperset(prefix):
        msg = f"trace id {trace_id!r} is not 8 to 32 hex characters; copy it from a trace header"
        raise ValueError(msg)
    return prefix


def _render_trace(trace: Trace, width: int) -> list[str]:
    errors = trace.error_count
    spans = len(trace.spans)
    # The service name comes last: it is the same for most traces in a file, so it is what gets cut.
    header = (
        f"{trace.trace_id}  {_format_timestamp(trace.start_ns)}  {_format_duration(trace.duration_ns)}"
        f"  {spans} span{'s' if spans != 1 else ''}  {errors} error{'s' if errors != 1 else ''}"
        f"{_cost_and_conversation(trace)}  {trace.service_name}"
    )
    lines = [_fit(header.rstrip(), width)]
    for root in trace.roots:
        _render_tree(root, trace.service_name, width, lines)
    return lines


def _cost_and_conversation(trace: Trace) -> str:
    """The LLM calls' summed `gen_ai.usage.cost` (agents' totals left out) and the root's conversation id, if any."""
    costs = [s.attributes.get("gen_ai.usage.cost") for s in trace.spans if s.attributes.get(_KIND) != "AGENT"]
    priced = [cost for cost in costs if isinstance(cost, int | float) and not isinstance(cost, bool)]
    conversation = _one_line(str(trace.roots[0].span.attributes.get("gen_ai.conversation.id") or ""))
    return (f"  ${sum(priced):.6f}" if priced else "") + (f"  conversation {conversation}" if conversation else "")


def _render_tree(root: SpanNode, service_name: str, width: int, lines: list[str]) -> None:
    # Iterative, so that a deep trace cannot hit the recursion limit.
    stack: list[tuple[SpanNode, str, str]] = [(root, "", "")]
    while stack:
        node, lead, child_prefix = stack.pop()
        event_prefix = child_prefix + ("│ " if node.children else "" if lead else "  ")
        lines.extend(_span_lines(lead, event_prefix + "  ", node.span, service_name, width))
        lines.extend(_fit(f"{event_prefix}• {_format_event(event)}", width) for event in node.span.events)
        for index in range(len(node.children) - 1, -1, -1):
            is_last = index == len(node.children) - 1
            connector, indent = ("└── ", "    ") if is_last else ("├── ", "│   ")
            stack.append((node.children[index], child_prefix + connector, child_prefix + indent))


def _span_lines(lead: str, detail_prefix: str, span: SpanRecord, service_name: str, width: int) -> list[str]:
    name = _one_line(span.name)
    if span.service_name != service_name:
        name += f" @{span.service_name}"
    if span.status_code == "ERROR":
        message = _one_line(span.status_message)
        status = f"✗ ERROR: {message}" if message else "✗ ERROR"
    else:
        status = "✓"
    lines = [_fit(f"{lead}{name}  {_format_duration(span.duration_ns)}  {status}", width)]
    separator = "  "
    # Key attributes follow on the span's line; those that do not fit wrap onto indented lines below it.
    for key, value in span.attributes.items():
        if (key.startswith(_KEY_ATTRIBUTE_PREFIXES) or key in _KEY_ATTRIBUTES) and key not in _NAME_ATTRIBUTES:
            piece = f"{key}={_format_value(value)}"
            if len(lines[-1]) + len(separator) + len(piece) <= width:
                lines[-1] += separator + piece
            else:
                lines.append(_fit(detail_prefix + piece, width))
            separator = " "
    return lines


def _format_event(event: SpanEvent) -> str:
    attributes = event.attributes
    if event.name == "exception":
        kind = _one_line(str(attributes.get("exception.type", "")))
        message = _one_line(str(attributes.get("exception.message", "")))
        return " ".join(part for part in ("exception", f"{kind}:" if kind and message else kind, message) if part)
    pairs = [f"{key}={_format_value(value)}" for key, value in attributes.items()]
    return " ".join([_one_line(event.name), *pairs])


def _format_value(value: AttributeValue, limit: int = _VALUE_LIMIT) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = _one_line(value)
        if not text or text != value or " " in text:
            text = json.dumps(text, ensure_ascii=False)
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    elif isinstance(value, list):
        text = "[" + ",".join(_format_value(item, limit) for item in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ",".join(f"{key}={_format_value(item, limit)}" for key, item in value.items()) + "}"
    elif isinstance(value, float):
        text = f"{value:.4g}"  # a backoff delay of 0.01665847397324 s reads as 0.01666
    else:
        text = "null" if value is None else str(value)
    return _fit(text, limit)


def _format_duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.0f}µs"
    if ns < 1_000_000_000:
        ms = ns / 1_000_000
        return f"{ms:.2f}ms" if ms < 10 else f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
    if ns < 60_000_000_000:
        return f"{ns / 1_000_000_000:.2f}s"
    minutes, seconds = divmod(ns // 1_000_000_000, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _format_timestamp(ns: int) -> str:
    ms = ns // 1_000_000
    moment = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"
