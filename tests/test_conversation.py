from __future__ import annotations

import asyncio
import contextvars
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import Span

import rfobs
from rfobs._conversation_processor import ConversationSpanProcessor
from rfobs.conversation import Conversation, current_conversation
from rfobs.exceptions import ConfigError
from rfobs.testing import Capture
from rfobs.traceview import load_spans

pytestmark = pytest.mark.timeout(60)

KEYS = {"gen_ai.conversation.id", "session.id", "user.id", "metadata"}
C42 = {"gen_ai.conversation.id": "c-42", "session.id": "s-1", "user.id": "u-7"}


def other_tracer() -> trace.Tracer:
    return trace.get_tracer("some.other.library")


def attributes_by_name(capture: Capture) -> dict[str, dict[str, Any]]:
    return {span["name"]: span["attributes"] for span in capture.spans()}


@rfobs.task("researcher", "plan")
def plan() -> None:
    with other_tracer().start_as_current_span("inside.plan"):
        pass


def test_every_span_inside_carries_the_conversation_and_nested_blocks_override_and_inherit(capture: Capture) -> None:
    with other_tracer().start_as_current_span("before"):
        pass
    with rfobs.conversation("c-42", user="u-7", session="s-1", metadata={"tenant": "acme", "tier": 2}) as scope:
        assert scope.id == "c-42" and current_conversation() is scope
        with other_tracer().start_as_current_span("outer"):
            plan()
            with (
                rfobs.conversation(user="u-8", metadata={"tier": 3, "beta": True}),
                other_tracer().start_as_current_span("inner"),
            ):
                pass
            with other_tracer().start_as_current_span("outer.again"):
                pass
    with other_tracer().start_as_current_span("after"):
        pass
    outer = {**C42, "metadata": '{"tenant":"acme","tier":2}'}
    spans = attributes_by_name(capture)
    task_attributes = spans.pop("researcher.plan")
    assert task_attributes["rfobs.task"] == "plan"  # @task's own attributes stay, next to the conversation's
    assert {key: value for key, value in task_attributes.items() if key in KEYS} == outer
    assert spans == {
        "before": {},
        "inside.plan": outer,
        "inner": {**C42, "user.id": "u-8", "metadata": '{"tenant":"acme","tier":3,"beta":true}'},
        "outer.again": outer,
        "outer": outer,
        "after": {},
    }
    assert current_conversation() is None


def test_only_the_given_fields_are_set(capture: Capture) -> None:
    with rfobs.conversation(user="u-7"), other_tracer().start_as_current_span("step"):
        pass
    assert attributes_by_name(capture) == {"step": {"user.id": "u-7"}}


def test_leaving_by_an_exception_restores_the_outer_block(capture: Capture) -> None:
    with rfobs.conversation("c-1") as outer:
        with pytest.raises(ValueError, match="boom"), rfobs.conversation("c-2"):
            raise ValueError("boom")
        assert current_conversation() is outer
        with other_tracer().start_as_current_span("after.inner"):
            pass
    with pytest.raises(KeyError), rfobs.conversation("c-3"):
        raise KeyError("x")
    assert current_conversation() is None
    with other_tracer().start_as_current_span("outside"):
        pass
    assert attributes_by_name(capture) == {"after.inner": {"gen_ai.conversation.id": "c-1"}, "outside": {}}


def test_secret_looking_metadata_keys_are_redacted_and_values_scrubbed(capture: Capture) -> None:
    metadata = {"api_key": "plain-value", "note": "Bearer abcdefghijklmnop", "ratio": 0.5}
    with rfobs.conversation("c-1", metadata=metadata) as scope, other_tracer().start_as_current_span("step"):
        pass
    expected = '{"api_key":"***","note":"Bearer ***","ratio":0.5}'
    assert attributes_by_name(capture)["step"]["metadata"] == expected
    assert dict(scope.metadata) == metadata  # the caller's values are kept; only the span attribute is redacted


async def test_async_with_and_tasks_created_inside_inherit(capture: Capture) -> None:
    async def step(name: str) -> None:
        await asyncio.sleep(0)
        with other_tracer().start_as_current_span(name):
            pass

    async with rfobs.conversation("c-42", user="u-7", session="s-1"):
        task = asyncio.create_task(step("child.task"))
        await step("same.task")
    await task
    await step("outside")
    assert attributes_by_name(capture) == {"same.task": C42, "child.task": C42, "outside": {}}


async def test_concurrent_tasks_each_see_their_own_conversation_even_through_one_object(capture: Capture) -> None:
    both_inside = asyncio.Barrier(2)
    shared = rfobs.conversation(session="s-shared")

    async def worker(name: str) -> None:
        async with rfobs.conversation(name, user=f"user-{name}"):
            async with shared:
                await both_inside.wait()
                with other_tracer().start_as_current_span(name):
                    pass
            with other_tracer().start_as_current_span(f"{name}.after.shared"):
                pass

    await asyncio.gather(worker("a"), worker("b"))
    assert attributes_by_name(capture) == {
        "a": {"gen_ai.conversation.id": "a", "user.id": "user-a", "session.id": "s-shared"},
        "b": {"gen_ai.conversation.id": "b", "user.id": "user-b", "session.id": "s-shared"},
        "a.after.shared": {"gen_ai.conversation.id": "a", "user.id": "user-a"},
        "b.after.shared": {"gen_ai.conversation.id": "b", "user.id": "user-b"},
    }


def test_threads_each_see_their_own_and_a_new_thread_starts_outside(capture: Capture) -> None:
    both_inside = threading.Barrier(2, timeout=10)

    def worker(name: str) -> None:
        with rfobs.conversation(name):
            both_inside.wait()
            with other_tracer().start_as_current_span(name):
                pass

    def plain_thread() -> None:
        with other_tracer().start_as_current_span("plain.thread"):
            pass

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("t1", "t2")]
    with rfobs.conversation("c-main"):
        threads.append(threading.Thread(target=plain_thread))  # Python threads start with an empty context
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        with other_tracer().start_as_current_span("main"):
            pass
    assert attributes_by_name(capture) == {
        "t1": {"gen_ai.conversation.id": "t1"},
        "t2": {"gen_ai.conversation.id": "t2"},
        "plain.thread": {},
        "main": {"gen_ai.conversation.id": "c-main"},
    }


def in_pool(name: str) -> None:
    with other_tracer().start_as_current_span(name):
        pass


def test_with_context_carries_the_conversation_to_a_thread_pool(capture: Capture) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with rfobs.conversation("c-42", user="u-7", session="s-1", metadata={"kept": "locally"}):
        call = rfobs.with_context(in_pool)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(call, "pooled").result(10)
    assert attributes_by_name(capture) == {"pooled": C42}  # metadata does not travel


def test_metrics_recorded_inside_carry_none_of_the_conversation_labels(capture: Capture) -> None:
    with rfobs.conversation("c-42", user="u-7", session="s-1", metadata={"tenant": "acme"}):
        plan()
        plan()
    assert capture.metric("researchflow_agents.agent_tasks") == [
        {"attributes": {"agent": "researcher", "task": "plan", "status": "success"}, "value": 2},
        {"attributes": {"agent": "researcher", "task": "plan", "status": "error"}, "value": 0},
    ]
    points = [point for series in capture.metrics().values() for point in series]
    assert points and all(not KEYS & set(point["attributes"]) for point in points)


def test_inject_adds_the_conversation_as_baggage_and_keeps_other_entries(capture: Capture) -> None:
    assert rfobs.inject() == {}
    with rfobs.using_baggage(tenant="acme"), rfobs.conversation("c 42", user="ü-7", session="s-1"):
        headers = rfobs.inject()
    assert headers == {"baggage": "tenant=acme,gen_ai.conversation.id=c+42,session.id=s-1,user.id=%C3%BC-7"}
    assert rfobs.inject() == {}  # nothing once the block is left
    assert baggage.get_all(rfobs.extract(headers)) == {
        "tenant": "acme",
        "gen_ai.conversation.id": "c 42",
        "session.id": "s-1",
        "user.id": "ü-7",
    }


def test_extracting_in_a_fresh_context_puts_the_remote_conversation_on_spans_there(capture: Capture) -> None:
    with (
        rfobs.conversation("c-42", user="u-7", session="s-1", metadata={"local": True}),
        other_tracer().start_as_current_span("client"),
    ):
        headers = rfobs.inject()

    def receive() -> None:
        assert current_conversation() is None
        with rfobs.continue_trace(headers), other_tracer().start_as_current_span("server"):
            with rfobs.conversation(session="s-2") as scope:  # a local block inherits the remote fields
                assert (scope.id, scope.user, scope.session) == ("c-42", "u-7", "s-2")
                with other_tracer().start_as_current_span("server.local"):
                    pass
            with other_tracer().start_as_current_span("server.after"):
                pass
        with other_tracer().start_as_current_span("server.outside"):
            pass

    contextvars.Context().run(receive)
    spans = {span["name"]: span for span in capture.spans()}
    assert spans["server"]["parent_id"] == spans["client"]["span_id"]
    assert {name: span["attributes"] for name, span in spans.items()} == {
        "client": {**C42, "metadata": '{"local":true}'},
        "server.local": {**C42, "session.id": "s-2"},
        "server.after": C42,
        "server": C42,
        "server.outside": {},
    }


def test_remote_baggage_values_that_are_too_long_are_ignored(capture: Capture) -> None:
    headers = {"baggage": f"gen_ai.conversation.id=c-9,user.id={'x' * 257},other=1"}
    with rfobs.continue_trace(headers), other_tracer().start_as_current_span("server"):
        pass
    assert attributes_by_name(capture) == {"server": {"gen_ai.conversation.id": "c-9"}}


@pytest.mark.parametrize("baggage_key_known", [True, False])
def test_each_request_gets_its_own_remote_conversation(
    capture: Capture, monkeypatch: pytest.MonkeyPatch, baggage_key_known: bool
) -> None:
    if not baggage_key_known:  # an OpenTelemetry release without the private key: the public call is used
        monkeypatch.setattr("rfobs._conversation_processor._BAGGAGE_KEY", None)
    for request in ("r1", "r1", "r2", "r3"):
        with rfobs.continue_trace({"baggage": f"session.id={request}"}):
            for step in ("a", "b"):
                with other_tracer().start_as_current_span(f"{request}.{step}"):
                    pass
    with rfobs.continue_trace({"baggage": "tenant=acme"}), other_tracer().start_as_current_span("unrelated"):
        pass
    assert [(span["name"], span["attributes"]) for span in capture.spans()] == [
        *[(f"{request}.{step}", {"session.id": request}) for request in ("r1", "r1", "r2", "r3") for step in "ab"],
        ("unrelated", {}),
    ]


RECEIVER = """
import json, sys
from opentelemetry import trace
import rfobs
from rfobs.testing import Capture

capture = Capture()
trace.set_tracer_provider(capture.tracer_provider)
with rfobs.continue_trace(json.loads(sys.argv[1])):
    with trace.get_tracer("worker").start_as_current_span("remote.step"):
        pass
print(json.dumps([[s["name"], s["trace_id"], s["attributes"]] for s in capture.spans()]))
"""


def test_the_conversation_crosses_a_process_boundary(capture: Capture) -> None:
    with rfobs.conversation("c-42", user="u-7", session="s-1"), other_tracer().start_as_current_span("client"):
        headers = rfobs.inject()
    (client,) = capture.spans()
    result = subprocess.run(
        [sys.executable, "-c", RECEIVER, json.dumps(headers)], capture_output=True, text=True, timeout=50, check=True
    )
    assert json.loads(result.stdout) == [["remote.step", client["trace_id"], C42]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {},
            "rfobs.conversation(id=None, user=None, session=None): expected at least one of id, user or session "
            "(a string); e.g. rfobs.conversation('c-42', user='u-7')",
        ),
        ({"id": 42}, "rfobs.conversation(id=42): expected a non-empty string of at most 256 characters, or None"),
        (
            {"id": "c", "user": "  "},
            "rfobs.conversation(user='  '): expected a non-empty string of at most 256 characters, or None",
        ),
        (
            {"session": "s" * 257},
            f"rfobs.conversation(session={'s' * 257!r}): expected a non-empty string of at most 256 characters, "
            "or None",
        ),
        (
            {"id": "c", "metadata": [("a", 1)]},
            "rfobs.conversation(metadata=[('a', 1)]): expected a mapping of str keys to str, int, float or bool "
            "values, or None",
        ),
        (
            {"id": "c", "metadata": {"a": [1]}},
            "rfobs.conversation(metadata['a']=[1]): expected a str, int, bool or finite float (metadata is flat)",
        ),
        (
            {"id": "c", "metadata": {"a": float("nan")}},
            "rfobs.conversation(metadata['a']=nan): expected a str, int, bool or finite float (metadata is flat)",
        ),
        (
            {"id": "c", "metadata": {"a": "x" * 513}},
            f"rfobs.conversation(metadata['a']={'x' * 513!r}): expected a string of at most 512 characters",
        ),
        (
            {"id": "c", "metadata": {1: "x"}},
            "rfobs.conversation(metadata={1: 'x'}): expected keys that are non-empty strings of at most 64 "
            "characters, got key 1",
        ),
    ],
)
def test_bad_arguments_are_config_errors_naming_argument_value_and_what_is_allowed(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        rfobs.conversation(**arguments)
    assert str(raised.value) == message


def test_too_much_metadata_is_refused_and_merged_metadata_stays_bounded(capture: Capture) -> None:
    with pytest.raises(ConfigError, match=r"expected at most 32 entries, got 33$"):
        rfobs.conversation("c", metadata={f"k{i}": i for i in range(33)})
    with (
        rfobs.conversation("c", metadata={f"outer{i}": i for i in range(32)}),
        rfobs.conversation(session="s", metadata={"inner": 1, "outer0": "replaced"}) as scope,
    ):
        assert len(scope.metadata) == 32
        assert scope.metadata["inner"] == 1 and scope.metadata["outer0"] == "replaced"
        assert "outer31" not in scope.metadata and "outer30" in scope.metadata


def test_a_failure_inside_the_processor_is_counted_never_raised(capture: Capture) -> None:
    capture.allow_internal_errors = True
    processor = ConversationSpanProcessor()
    with rfobs.conversation("c-1"):
        processor.on_start(cast(Span, object()))  # not a span: set_attributes fails inside the processor
    assert capture.internal_errors() == 1


def test_a_conversation_object_is_reusable_and_says_what_it_is() -> None:
    again = rfobs.conversation("c-1", user="u-1")
    assert isinstance(again, Conversation)
    assert repr(again) == "rfobs.conversation('c-1', user='u-1', session=None, metadata={})"
    for _ in range(2):
        with again as scope:
            assert repr(scope) == "ConversationScope(id='c-1', user='u-1', session=None, metadata={})"
        assert current_conversation() is None


@pytest.mark.usefixtures("clean_globals")
def test_init_installs_the_processor_on_its_provider() -> None:
    telemetry = rfobs.init(metrics__prometheus_port=0, logging__enabled=False)
    with rfobs.conversation("c-42", user="u-7", session="s-1"):
        with telemetry.tracer.start_as_current_span("rfobs.tracer"):
            pass
        with other_tracer().start_as_current_span("global.tracer"):
            pass
    assert telemetry.shutdown(timeout=5) is True
    spans = load_spans(Path(".rfobs/traces.jsonl"))
    assert {span.name: span.attributes for span in spans} == {"rfobs.tracer": C42, "global.tracer": C42}


def test_a_continued_conversation_is_not_sent_on_as_baggage_to_other_services(capture: Capture) -> None:
    from opentelemetry import propagate

    with rfobs.conversation("c-1", user="alice@example.com", session="s-1"):
        headers = rfobs.inject()
    assert "user.id=alice%40example.com" in headers["baggage"]
    with rfobs.continue_trace(headers):
        # Spans here still carry the conversation (as an rfobs scope) ...
        with trace.get_tracer("t").start_as_current_span("worker"):
            pass
        # ... but what an HTTP or LLM client instrumentation would send on carries none of it.
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing)
        assert "user.id" not in outgoing.get("baggage", "")
        assert baggage.get_all() == {}
    (span,) = capture.spans()
    assert {k: span["attributes"][k] for k in ("gen_ai.conversation.id", "user.id", "session.id")} == {
        "gen_ai.conversation.id": "c-1",
        "user.id": "alice@example.com",
        "session.id": "s-1",
    }


def test_the_exit_of_a_block_that_is_not_the_current_one_changes_nothing() -> None:
    # A generator's block finalised later, in other code's context, must not end or replace that code's
    # conversation (another request's, in a server).
    late = rfobs.conversation("req-A")
    with late:
        pass
    with rfobs.conversation("other", user="carol"):
        late.__exit__(None, None, None)
        found = current_conversation()
        assert found is not None and (found.id, found.user) == ("other", "carol")
    assert current_conversation() is None
