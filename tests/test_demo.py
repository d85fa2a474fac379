"""`rfobs demo`'s output and traces: the endpoints while it runs, where to look once it has ended (#13), and one
question as an agent trace in a conversation, with steps, tools and priced, partly streamed LLM calls (#11)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rfobs.demo import PLANNER_SNAPSHOT, WRITER_SNAPSHOT, ask_once
from rfobs.instrument._cost import llm_cost
from rfobs.testing import Capture
from rfobs.traceview import render_file

RUN = "import sys; from rfobs.demo import run_command; sys.exit(run_command(1.0, concurrency=2, seed=7))"
QUESTION = "tool use in language agents"
ANSWERING_SEED = 1  # every search answers: two papers read, one summary streamed


# What `import genai_prices` meets when it is not installed.
WITHOUT_GENAI_PRICES = "import sys; sys.modules['genai_prices'] = None; "


def run_demo(tmp_path: Path, prelude: str = "", **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RFOBS_", "OTEL_"))}
    environment.update(RFOBS_METRICS__PROMETHEUS_PORT="0", **env)
    result = subprocess.run(
        [sys.executable, "-c", prelude + RUN],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=environment,
        timeout=60,
    )
    assert result.stderr == ""
    return result.stdout.splitlines()


# One `ask_once` question as a trace: (span, parent) pairs sorted, and each span's OpenInference kind.
ONE_QUESTION_TREE = [
    ("arxiv.search", "invoke_agent researcher"),
    ("arxiv.search", "invoke_agent researcher"),
    ("chat claude-3-5-haiku-latest", "researcher.plan"),
    ("chat gpt-4o-mini", "researcher.summarize"),
    ("execute_tool read_paper", "invoke_agent researcher"),
    ("execute_tool read_paper", "invoke_agent researcher"),
    ("invoke_agent researcher", None),
    ("researcher.plan", "invoke_agent researcher"),
    ("researcher.summarize", "invoke_agent researcher"),
    ("semantic_scholar.search", "invoke_agent researcher"),
    ("semantic_scholar.search", "invoke_agent researcher"),
]
ONE_QUESTION_KINDS = {
    "invoke_agent researcher": "AGENT",
    "researcher.plan": "CHAIN",
    "researcher.summarize": "CHAIN",
    "chat claude-3-5-haiku-latest": "LLM",
    "chat gpt-4o-mini": "LLM",
    "execute_tool read_paper": "TOOL",
    "arxiv.search": "TOOL",
    "semantic_scholar.search": "TOOL",
}


def test_the_demo_ends_with_the_trace_file_and_rfobs_traces_not_a_closed_metrics_url(tmp_path: Path) -> None:
    lines = run_demo(tmp_path, RFOBS_HEALTH__SERVER_ENABLED="true", RFOBS_HEALTH__PORT="0")
    trace_file = str(tmp_path.resolve() / ".rfobs" / "traces.jsonl")
    assert lines[0] == "rfobs demo: 2 research agents for 1s (environment: development)"
    assert re.fullmatch(r"  metrics:  http://127\.0\.0\.1:\d+/metrics \(while the demo runs\)", lines[1])
    assert re.fullmatch(r"  health:   http://127\.0\.0\.1:\d+/health \(while the demo runs\)", lines[2])
    assert lines[3] == f"  traces:   {trace_file} (file)"
    assert re.fullmatch(r"  questions \d+ .* llm tokens \d+ \(\$0\.\d{4}\)   breaker \w+(-\w+)?", lines[4]), lines[4]
    assert lines[5] == "done."
    assert re.fullmatch(
        r"  conversations: research-[0-9a-f]{8}, research-[0-9a-f]{8} \(gen_ai\.conversation\.id, session\.id, "
        r"user\.id\)",
        lines[6],
    )
    assert re.fullmatch(
        r"  LLM cost:      \$0\.\d{6} estimated \(gen_ai\.usage\.cost on the LLM and agent spans\)", lines[7]
    )
    assert lines[8:] == [
        "Where to look:",
        f"  traces:   {trace_file}",
        "  rfobs traces --last 3        span trees of the newest traces",
        "  rfobs traces --errors        only traces with a failure",
        "  metrics:  /metrics closed with the demo; your agent serves it while it runs (rfobs.init())",
    ]
    # `rfobs traces` heads each trace with its cost and conversation, which are the demo's.
    conversations = set(lines[6].split(": ", 1)[1].split(" (")[0].split(", "))
    headers = [line for line in render_file(trace_file, width=200).splitlines() if re.match(r"[0-9a-f]{32}  ", line)]
    assert len(headers) >= 4
    for header in headers:
        found = re.fullmatch(
            r".*  \d+ errors?  \$0\.\d{6}  conversation (research-[0-9a-f]{8})  research-agent-demo", header
        )
        assert found is not None, header
        assert found.group(1) in conversations


def test_without_the_health_server_no_health_url_is_printed(tmp_path: Path) -> None:
    lines = run_demo(tmp_path)
    assert not any(line.startswith("  health:") for line in lines)
    assert "http://" not in "\n".join(lines[lines.index("Where to look:") :])


def test_without_genai_prices_the_demo_runs_and_shows_no_cost(tmp_path: Path) -> None:
    lines = run_demo(tmp_path, WITHOUT_GENAI_PRICES)
    summary = lines[lines.index("done.") - 1]
    assert re.fullmatch(r"  questions \d+ .* llm tokens \d+   breaker \S+", summary), summary
    assert lines[lines.index("done.") + 1].startswith("  conversations: research-")
    assert not [line for line in lines if "cost" in line.lower()]
    text = render_file(tmp_path / ".rfobs" / "traces.jsonl", width=200)
    assert "gen_ai.usage.cost" not in text
    assert "$" not in text


def by_name(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        found.setdefault(span["name"], []).append(span)
    return found


def test_one_question_is_an_agent_trace_of_chain_steps_tools_and_llm_calls_in_a_conversation(capture: Capture) -> None:
    answer, stats = asyncio.run(asyncio.wait_for(ask_once(QUESTION, seed=ANSWERING_SEED), timeout=10))

    spans = capture.spans()
    names = {span["span_id"]: span["name"] for span in spans}
    assert sorted((span["name"], names.get(span["parent_id"])) for span in spans) == ONE_QUESTION_TREE
    assert all(span["status"]["code"] == "UNSET" for span in spans)
    kinds = {span["name"]: span["attributes"]["openinference.span.kind"] for span in spans}
    assert kinds == ONE_QUESTION_KINDS
    (conversation,) = stats.conversations
    assert re.fullmatch(r"research-[0-9a-f]{8}", conversation)
    who = {"gen_ai.conversation.id": conversation, "session.id": f"session-{conversation[9:]}", "user.id": "user-1"}
    assert [{key: span["attributes"][key] for key in who} for span in spans] == [who] * len(spans)

    found = by_name(spans)
    (agent,) = found["invoke_agent researcher"]
    assert json.loads(agent["attributes"]["input.value"]) == {"question": QUESTION}
    assert agent["attributes"]["output.value"] == answer
    assert answer.startswith(f"The papers on {QUESTION} agree")

    (planner,) = found["chat claude-3-5-haiku-latest"]
    planned = planner["attributes"]
    assert (planned["llm.model_name"], planned["llm.provider"]) == (PLANNER_SNAPSHOT, "anthropic")
    assert planned["llm.input_messages.0.message.role"] == "system"
    assert planned["llm.input_messages.1.message.content"] == QUESTION
    assert json.loads(planned["output.value"])[0]["parts"][0]["content"] == f"{QUESTION}\n{QUESTION} survey"
    assert "gen_ai.request.stream" not in planned

    (writer,) = found["chat gpt-4o-mini"]
    written = writer["attributes"]
    assert (written["llm.model_name"], written["gen_ai.request.stream"]) == (WRITER_SNAPSHOT, True)
    assert json.loads(written["output.value"])[0]["parts"][0]["content"] == answer
    assert written["gen_ai.response.time_to_first_chunk"] > 0

    for span, provider, model in ((planned, "anthropic", PLANNER_SNAPSHOT), (written, "openai", WRITER_SNAPSHOT)):
        prompt, completion = span["llm.token_count.prompt"], span["llm.token_count.completion"]
        assert prompt > 0 and completion > 0
        assert span["llm.token_count.total"] == prompt + completion
        assert span["gen_ai.usage.cost"] == llm_cost(provider, model, input_tokens=prompt, output_tokens=completion)
    total = planned["gen_ai.usage.cost"] + written["gen_ai.usage.cost"]
    assert agent["attributes"]["gen_ai.usage.cost"] == pytest.approx(total)
    assert stats.cost == pytest.approx(total)
    assert stats.tokens == planned["llm.token_count.total"] + written["llm.token_count.total"]
