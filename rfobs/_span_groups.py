"""Group a batch of spans by resource, then by instrumentation scope, as the OTLP request nests them."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

__all__ = ["ResourceGroup", "ScopeGroup", "group_spans"]

ScopeGroup = tuple[InstrumentationScope | None, list[ReadableSpan]]
ResourceGroup = tuple[Resource, list[ScopeGroup]]


def group_spans(spans: Sequence[ReadableSpan]) -> list[ResourceGroup]:
    """Group `spans` exactly as the SDK's `encode_spans` does.

    Groups are keyed by equality (hash, then `==`), in order of first appearance, and each group
    keeps the first object seen as its key; spans keep their order within a group. Unlike the
    SDK, each distinct object is hashed once: hashing a `Resource` serializes its attributes.

    Args:
        spans: Finished spans in any mix of resources and scopes.

    Returns:
        One `(resource, [(scope, spans), ...])` entry per distinct resource.
    """
    groups: list[ResourceGroup] = []
    resource_by_id: dict[int, _Scopes] = {}
    resource_by_value: dict[Resource, _Scopes] = {}
    for span in spans:
        resource = span.resource
        scopes = resource_by_id.get(id(resource))
        if scopes is None:
            scopes = resource_by_value.get(resource)
            if scopes is None:
                scopes = resource_by_value[resource] = _Scopes()
                groups.append((resource, scopes.groups))
            resource_by_id[id(resource)] = scopes
        scopes.add(span)
    return groups


class _Scopes:
    """The scope groups of one resource group."""

    __slots__ = ("by_id", "by_value", "groups")

    def __init__(self) -> None:
        self.groups: list[ScopeGroup] = []
        self.by_id: dict[int, list[ReadableSpan]] = {}
        self.by_value: dict[InstrumentationScope | None, list[ReadableSpan]] = {}

    def add(self, span: ReadableSpan) -> None:
        scope = span.instrumentation_scope
        members = self.by_id.get(id(scope))
        if members is None:
            members = self.by_value.get(scope)
            if members is None:
                members = self.by_value[scope] = []
                self.groups.append((scope, members))
            self.by_id[id(scope)] = members
        members.append(span)
