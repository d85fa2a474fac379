# pyright: strict
"""A local OpenAI-compatible HTTP server for tests: `/v1/chat/completions` answered with a fixed, realistic body.

Standard library only. It listens on `127.0.0.1` on a free port, in a thread of its own, and answers what the
`openai` client sends: a JSON chat completion with `usage`, or, for `"stream": true`, the server-sent event
stream (with a final usage chunk when `stream_options.include_usage` is set). Every request body is kept, so a
test can see what the client sent. `serve_openai()` always stops the server when its `with` block ends.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, cast

__all__ = ["COMPLETION_ID", "COMPLETION_TOKENS", "PROMPT_TOKENS", "REPLY", "OpenAIStub", "serve_openai"]

COMPLETION_ID: Final = "chatcmpl-rfobs-stub-1"
REPLY: Final = "Attention is all you need."
PROMPT_TOKENS: Final = 19
COMPLETION_TOKENS: Final = 7
_REQUEST_TIMEOUT: Final = 5.0  # seconds a connection may sit idle before the handler gives up on it


@dataclass
class OpenAIStub:
    """A running stub: where it listens, and the JSON bodies of the chat requests it answered."""

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=lambda: [])


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": COMPLETION_ID,
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": f"{model}-2024-07-18",
        "system_fingerprint": "fp_stub",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }


def _chunks(model: str, include_usage: bool) -> list[dict[str, Any]]:
    base: dict[str, Any] = {
        "id": COMPLETION_ID,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": f"{model}-2024-07-18",
        "system_fingerprint": "fp_stub",
    }
    words = REPLY.split(" ")
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    ]
    for position, word in enumerate(words):
        text = word if position == 0 else f" {word}"
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _completion(model)["usage"]})
    return chunks


def _handler(stub: OpenAIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = _REQUEST_TIMEOUT

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = cast("dict[str, Any]", json.loads(self.rfile.read(length) or b"{}"))
            except ValueError:
                self._send_json(400, {"error": {"message": "the body is not JSON", "type": "invalid_request_error"}})
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                return
            stub.requests.append(body)
            model = str(body.get("model") or "gpt-4o-mini")
            if body.get("stream"):
                options = cast("dict[str, Any]", body.get("stream_options") or {})
                self._send_stream(_chunks(model, bool(options.get("include_usage"))))
            else:
                self._send_json(200, _completion(model))

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-request-id", "req_stub")
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, chunks: list[dict[str, Any]]) -> None:
            data = b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + b"data: [DONE]\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows the test's own output

    return Handler


@contextlib.contextmanager
def serve_openai() -> Generator[OpenAIStub]:
    """Serve the stub on `127.0.0.1` on a free port until the `with` block ends (also on an exception)."""
    stub = OpenAIStub(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    server.daemon_threads = True
    stub.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
