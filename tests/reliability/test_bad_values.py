"""Values that used to pass validation and fail later now fail at `init()` or at decoration, naming themselves."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

import rfobs
from rfobs.config import load_config
from rfobs.exceptions import ConfigError
from rfobs.testing import Capture

SECRET = "s3cr3t-value-never-shown"

# ------------------------------------------------------------------------------------------- OTLP headers

HEADER_NAMES = "header names of letters, digits, '-', '_' and '.', not starting with 'grpc-' or ':'"


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"x api key": SECRET}, HEADER_NAMES),
        ({":authority": SECRET}, HEADER_NAMES),
        ({"x/key": SECRET}, HEADER_NAMES),
        ({"x-k\u00e9y": SECRET}, HEADER_NAMES),
        ({"grpc-timeout": "1S"}, HEADER_NAMES),
        ({"GRPC-Encoding": "gzip"}, HEADER_NAMES),
        ("Authorization: Bearer abc=def", HEADER_NAMES),
        ({"x-token-bin": SECRET}, "text headers; 'x-token-bin' ends in '-bin', which gRPC reserves for binary values"),
        ({"x-api-key": SECRET + "\r\nx-evil: 1"}, "header values of printable ASCII, without CR, LF or tabs"),
        ({"x-api-key": SECRET + "\n"}, "header values of printable ASCII, without CR, LF or tabs"),
        ({"x-api-key": SECRET + "\t"}, "header values of printable ASCII, without CR, LF or tabs"),
        ({"x-api-key": SECRET + "\u00e9"}, "header values of printable ASCII, without CR, LF or tabs"),
        ({"x-api-key": SECRET + "\x7f"}, "header values of printable ASCII, without CR, LF or tabs"),
        (f"x-api-key={SECRET}%0A", "header values of printable ASCII, without CR, LF or tabs"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_otlp_headers_grpc_would_reject_fail_at_load(headers: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"otlp__headers": headers})
    message = str(raised.value)
    assert message.startswith("1 invalid setting:\n  - otlp.headers = {")
    assert f"(from init() keyword): expected {allowed}" in message
    assert SECRET not in message and "abc" not in message


def test_the_standard_headers_variable_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"api-key={SECRET},grpc-status=0")
    with pytest.raises(ConfigError) as raised:
        load_config()
    assert "otlp.headers = {'api-key': '***', 'grpc-status': '***'} (from env OTEL_EXPORTER_OTLP_HEADERS): " in str(
        raised.value
    )


def test_valid_headers_are_kept_as_given() -> None:
    headers = load_config(overrides={"otlp": {"headers": {"Authorization": "Bearer x", "x.tenant_id": "", "a-1": 7}}})
    shown = {name: secret.get_secret_value() for name, secret in headers.otlp.headers.items()}
    assert shown == {"Authorization": "Bearer x", "x.tenant_id": "", "a-1": "7"}


@pytest.fixture(scope="module")
def grpc_call() -> Iterator[Callable[[Sequence[tuple[str, str]]], bytes]]:
    """A unary call to an in-process gRPC echo server: gRPC itself judges the metadata."""

    def echo(request: bytes, _context: object) -> bytes:
        return request

    server: Any = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("rfobs.Echo", {"Call": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel: Any = grpc.insecure_channel(f"127.0.0.1:{port}")
    method: Any = channel.unary_unary("/rfobs.Echo/Call")

    def call(metadata: Sequence[tuple[str, str]]) -> bytes:
        return method(b"ping", metadata=tuple(metadata), timeout=10)

    yield call
    channel.close()
    server.stop(None)


HEADER_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=",="), max_size=12)


@settings(max_examples=60, deadline=None)
@given(headers=st.dictionaries(HEADER_TEXT, HEADER_TEXT, max_size=3))
def test_headers_that_load_are_headers_grpc_sends(
    grpc_call: Callable[[Sequence[tuple[str, str]]], bytes], headers: dict[str, str]
) -> None:
    try:
        loaded = load_config(overrides={"otlp__headers": headers}).otlp.headers
    except ConfigError as error:
        assert "otlp.headers = " in str(error)
        return
    # As the exporters send them: names lower-cased.
    assert grpc_call([(name.lower(), secret.get_secret_value()) for name, secret in loaded.items()]) == b"ping"


# ------------------------------------------------------------------------------------------- server hosts


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The local resolver knows only `collector.local`; the names looked up are listed."""
    looked_up: list[str] = []

    def getaddrinfo(host: str, *_args: object, **_kwargs: object) -> list[Any]:
        looked_up.append(host)
        if host == "collector.local":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 0))]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


UNRESOLVED = (
    "an IP address, localhost, or a host name that resolves here (looking it up failed: Name or service not known)"
)


@pytest.mark.usefixtures("clean_globals")
def test_init_fails_on_a_metrics_host_that_does_not_resolve(resolver: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        rfobs.init(metrics__prometheus_host="colector.local", metrics__prometheus_port=0)
    assert str(raised.value) == (
        "1 invalid setting:\n"
        f"  - metrics.prometheus_host = 'colector.local' (from init() keyword): expected {UNRESOLVED}"
    )
    assert resolver == ["colector.local"]


def test_a_health_host_is_resolved_when_the_server_is_on(resolver: list[str]) -> None:
    load_config(overrides={"health__host": "nowhere.local"})  # no server: nothing binds to it
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"health__host": "nowhere.local", "health__server_enabled": "true"})
    assert f"health.host = 'nowhere.local' (from init() keyword): expected {UNRESOLVED}" in str(raised.value)
    settings = load_config(overrides={"health": {"host": "collector.local", "server_enabled": True}})
    assert settings.health.host == "collector.local"
    assert resolver == ["nowhere.local", "collector.local"]


def test_a_metrics_host_is_not_resolved_when_nothing_binds_to_it(resolver: list[str]) -> None:
    for off in ({"metrics__prometheus_enabled": False}, {"metrics__enabled": False}, {"sdk__disabled": True}):
        assert load_config(overrides={"metrics__prometheus_host": "nowhere.local", **off})
    assert resolver == []


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "fe80::1%1", "localhost", " 10.1.2.3 "])
def test_ip_literals_and_localhost_need_no_lookup(resolver: list[str], host: str) -> None:
    settings = load_config(
        overrides={"metrics__prometheus_host": host, "health__host": host, "health__server_enabled": 1}
    )
    assert settings.metrics.prometheus_host == settings.health.host == host.strip()
    assert resolver == []


@pytest.mark.parametrize(
    "host", ["", "bad host", "http://127.0.0.1", "127.0.0.1:9464", "-x.local", "a..b", "x" * 64, "\u00e9.local", True]
)
def test_a_host_that_is_no_host_name_fails_without_a_lookup(resolver: list[str], host: object) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(overrides={"metrics__prometheus_host": host})
    allowed = "an IP address or a host name, such as 127.0.0.1, 0.0.0.0, ::1 or localhost"
    assert f"metrics.prometheus_host = {host!r} (from init() keyword): expected {allowed}" in str(raised.value)
    assert resolver == []


# ------------------------------------------------------------------------------------ decorator attributes

DECORATORS: dict[str, Callable[[Any], object]] = {
    "task": lambda attributes: rfobs.task("researcher", "search", attributes=attributes),
    "tool": lambda attributes: rfobs.tool("search", attributes=attributes),
    "api_call": lambda attributes: rfobs.api_call("arxiv", "search", attributes=attributes),
}
VALUES = "values of type str, bool, int (64-bit) or float, or a list or tuple of one of those types (not None)"


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


@pytest.mark.parametrize("decorator", DECORATORS)
@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"team": None}, f"(attributes={{'team': None}}): expected {VALUES}"),
        ({"team": {"a": 1}}, f"(attributes={{'team': {{'a': 1}}}}): expected {VALUES}"),
        ({"team": b"x"}, f"(attributes={{'team': b'x'}}): expected {VALUES}"),
        ({"team": Opaque()}, f"(attributes={{'team': Opaque()}}): expected {VALUES}"),
        ({"team": [1, "a"]}, f"(attributes={{'team': [1, 'a']}}): expected {VALUES}"),
        ({"team": [1, 2.0]}, f"(attributes={{'team': [1, 2.0]}}): expected {VALUES}"),
        ({"team": [True, 1]}, f"(attributes={{'team': [True, 1]}}): expected {VALUES}"),
        ({"team": [None]}, f"(attributes={{'team': [None]}}): expected {VALUES}"),
        ({"team": [[1]]}, f"(attributes={{'team': [[1]]}}): expected {VALUES}"),
        ({"team": {1, 2}}, f"(attributes={{'team': {{1, 2}}}}): expected {VALUES}"),
        ({"team": 2**63}, f"(attributes={{'team': {2**63}}}): expected {VALUES}"),
        ({"team": [-(2**63) - 1]}, f"(attributes={{'team': [{-(2**63) - 1}]}}): expected {VALUES}"),
        ({"api_key": None}, f"(attributes={{'api_key': '***'}}): expected {VALUES}"),
        ({"": "x"}, "(attributes={'': 'x'}): expected names that are non-empty strings"),
        ({1: "x"}, "(attributes={1: 'x'}): expected names that are non-empty strings"),
        ({None: "x"}, "(attributes={None: 'x'}): expected names that are non-empty strings"),
        ([("team", "x")], "(attributes=[('team', 'x')]): expected a mapping of names to values, or None"),
        ("team=x", "(attributes='team=x'): expected a mapping of names to values, or None"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_an_attribute_the_sdk_would_drop_fails_at_decoration(decorator: str, attributes: object, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        DECORATORS[decorator](attributes)
    assert str(raised.value) == f"@{decorator}{message}"


def test_valid_attributes_reach_the_span_exactly_and_are_frozen(capture: Capture) -> None:
    tags = ["a", "b"]
    constant = {
        "team": "ml",
        "n": 3,
        "ratio": 0.5,
        "on": True,
        "tags": tags,
        "ids": (1, 2),
        "none": [],
        "big": 2**63 - 1,
    }

    @rfobs.task("researcher", "search", attributes=constant)
    def search() -> None:
        return None

    tags.append("changed after decoration")
    search()
    (span,) = capture.spans()
    expected = {"team": "ml", "n": 3, "ratio": 0.5, "on": True, "tags": ("a", "b"), "ids": (1, 2), "none": ()}
    assert {key: span["attributes"][key] for key in constant} == {**expected, "big": 2**63 - 1}


ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.lists(st.one_of(st.integers(-5, 5), st.text(max_size=2), st.booleans(), st.floats(allow_nan=False)), max_size=3),
    st.lists(st.none(), max_size=1),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    decorator=st.sampled_from(sorted(DECORATORS)),
    attributes=st.dictionaries(st.one_of(st.text(max_size=6), st.integers(0, 3)), ATTRIBUTE_VALUES, max_size=3),
)
def test_attributes_are_refused_at_decoration_or_recorded_unchanged(
    capture: Capture, decorator: str, attributes: dict[Any, Any]
) -> None:
    capture.exporter.clear()  # one capture serves every example
    try:
        decorate: Any = DECORATORS[decorator](attributes)
    except ConfigError as error:
        assert str(error).startswith(f"@{decorator}(attributes={{")
        return

    def call() -> None:
        return None

    decorate(call)()
    (span,) = capture.exporter.get_finished_spans()
    recorded = dict(span.attributes or {})
    assert {key: recorded[key] for key in attributes} == {
        key: tuple(cast("list[object]", value)) if isinstance(value, list) else value
        for key, value in attributes.items()
    }
    encode_spans([span])  # and the OTLP exporter can send it
