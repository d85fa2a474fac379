"""Checks of spans and metric points against the GenAI convention tables: each problem as one sentence.

A span is matched to its definition by `gen_ai.operation.name` and kind; a span without an operation is not a
GenAI span and may carry no `gen_ai.*` attribute but the conversation id. Every `gen_ai.*` name must be in the
registry (so a typo or a name of rfobs's own fails), with the registry's type and a well-known value or a
declared custom one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.genai_conventions import (
    ANY_SPAN,
    CUSTOM_VALUES,
    METRICS,
    REGISTRY,
    RFOBS_EXTENSIONS,
    SPAN_TYPES,
    R,
    SpanType,
)


@dataclass
class Violations:
    """What one signal does against the conventions, each as a sentence naming the signal."""

    found: list[str] = field(default_factory=list[str])

    def add(self, where: str, problem: str) -> None:
        """Record one problem of `where`."""
        self.found.append(f"{where}: {problem}")


def _has_type(kind: str, value: object) -> bool:
    if kind == "string[]":
        return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)  # pyright: ignore[reportUnknownVariableType]
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    # "any" on spans: the SDK has no structured attributes, and the conventions say it "MAY be recorded as a JSON
    # string if structured format is not supported".
    python = {"string": str, "double": float, "boolean": bool, "any": str}[kind]
    return isinstance(value, python)


def type_problem(name: str, value: object) -> str | None:
    """Why `value` is not of `name`'s registry type (and well-known or declared value), or None."""
    spec = REGISTRY[name]
    if not _has_type(spec.type, value):
        return f"{name}={value!r} is not of type {spec.type}"
    if spec.well_known and name != "error.type":
        allowed = set(spec.well_known) | CUSTOM_VALUES.get(name, frozenset())
        if value not in allowed:
            return f"{name}={value!r} is neither a well-known value nor a declared custom one"
    return None


def _content_problem(name: str, value: str) -> str | None:
    """Whether a JSON-string content attribute has the shape its JSON schema asks for."""
    try:
        document: Any = json.loads(value)
    except ValueError:
        return None if name == "gen_ai.tool.call.result" else f"{name} is not JSON"
    if name == "gen_ai.tool.call.arguments":
        return None if isinstance(document, dict) else f"{name} is not a JSON object"
    if name not in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"):
        return None
    if not isinstance(document, list):
        return f"{name} is not a JSON array"
    parts: list[Any] = []
    for item in document:  # pyright: ignore[reportUnknownVariableType]
        if name == "gen_ai.system_instructions":
            parts.append(item)
            continue
        required = ("role", "parts", "finish_reason") if name == "gen_ai.output.messages" else ("role", "parts")
        missing = [key for key in required if not isinstance(item, dict) or key not in item]
        if missing:
            return f"{name}: a message lacks {missing}"
        parts.extend(item["parts"])  # pyright: ignore[reportUnknownArgumentType]
    for part in parts:
        if not isinstance(part, dict) or "type" not in part:
            return f"{name}: a part has no type"
        if part["type"] == "text" and not isinstance(part.get("content"), str):  # pyright: ignore[reportUnknownMemberType]
            return f"{name}: a text part has no content"
    return None


def span_type_of(span: Mapping[str, Any]) -> SpanType | None:
    """The span definition a span claims by its `gen_ai.operation.name` and kind; None for a non-GenAI span."""
    operation = span["attributes"].get("gen_ai.operation.name")
    if operation is None:
        return None
    for spec in SPAN_TYPES:
        if operation in spec.operations and span["kind"] in spec.kinds:
            return spec
    return next((spec for spec in SPAN_TYPES if operation in spec.operations), None)


def expected_name(spec: SpanType, attributes: Mapping[str, Any]) -> str:
    """The span name the conventions give for these attributes (the fallback when a named attribute is absent)."""
    fields = re.findall(r"\{([^}]+)\}", spec.name_format)
    pattern = spec.name_format if all(f in attributes for f in fields) else spec.name_fallback
    return re.sub(r"\{([^}]+)\}", lambda m: str(attributes.get(m.group(1), m.group(0))), pattern)


def check_span(span: Mapping[str, Any]) -> list[str]:
    """Every way `span` (a `rfobs.testing.span_as_dict`) departs from the GenAI conventions."""
    attributes: Mapping[str, Any] = span["attributes"]
    where = f"span {span['name']!r}"
    problems = Violations()
    spec = span_type_of(span)
    allowed = {**ANY_SPAN, **(spec.attributes if spec else {})}
    for name, value in attributes.items():
        if not name.startswith("gen_ai.") and (spec is None or name not in spec.attributes):
            continue
        if (extension := RFOBS_EXTENSIONS.get(name)) is not None:
            if not isinstance(value, extension):
                problems.add(where, f"{name} must be a {extension.__name__}, not {value!r}")
            continue
        if name not in REGISTRY:
            problems.add(where, f"{name} is not a GenAI convention attribute")
            continue
        if name not in allowed:
            problems.add(where, f"{name} is not an attribute of {spec.id if spec else 'a non-GenAI span'}")
        problem = type_problem(name, value)
        if problem is None and REGISTRY[name].type == "any":
            problem = _content_problem(name, value)
        if problem is not None:
            problems.add(where, problem)
    if spec is None:
        return problems.found
    if span["kind"] not in spec.kinds:
        problems.add(where, f"kind {span['kind']} is not {' or '.join(spec.kinds)} ({spec.id})")
    for name in spec.required():
        if name not in attributes:
            problems.add(where, f"required {name} is missing ({spec.id})")
    if "server.address" in attributes and "server.port" not in attributes:
        problems.add(where, "server.port is conditionally required with server.address")
    if span["status"]["code"] == "ERROR" and "error.type" not in attributes:
        problems.add(where, "error.type is conditionally required on an error")
    if span["name"] != (name := expected_name(spec, attributes)):
        problems.add(where, f"name is not {name!r} ({spec.name_format})")
    return problems.found


def check_point(metric_name: str, point: Mapping[str, Any]) -> list[str]:
    """Every way one data point of `metric_name` departs from the GenAI conventions (unit aside: see `check_unit`)."""
    where = f"metric {metric_name} {point['attributes']}"
    problems = Violations()
    spec = METRICS.get(metric_name)
    if spec is None:
        problems.add(where, "not a GenAI convention metric")
        return problems.found
    attributes: Mapping[str, Any] = point["attributes"]
    for name in (n for n, level in spec.attributes.items() if level is R):
        if name not in attributes:
            problems.add(where, f"required {name} is missing")
    for name, value in attributes.items():
        if name not in REGISTRY:
            problems.add(where, f"{name} is not a GenAI convention attribute")
        elif name not in spec.attributes:
            problems.add(where, f"{name} is not an attribute of {metric_name} ({spec.source})")
        elif (problem := type_problem(name, value)) is not None:
            problems.add(where, problem)
    if "server.address" in attributes and "server.port" not in attributes:
        problems.add(where, "server.port is conditionally required with server.address")
    if "explicit_bounds" not in point:
        problems.add(where, f"not a {spec.instrument}")
    elif tuple(point["explicit_bounds"]) != tuple(float(b) for b in spec.buckets):
        problems.add(where, f"bucket boundaries {point['explicit_bounds']} are not the recommended {spec.buckets}")
    return problems.found
