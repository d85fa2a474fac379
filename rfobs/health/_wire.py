"""HTTP/1.1 for the health server, standard library only: the wire format, the connection protocol, the helper.

`Connection` is the one HTTP code of both sides of `HealthServer`: the server thread in the agent's process and
the helper process that `HealthServer(live_process=True)` starts by running this file. Why a process: a thread
of the agent's process shares the GIL, and every socket call gives it up; behind an event loop that keeps the
GIL busy, the thread waits milliseconds to get it back, several times a request. The helper answers
`/health/live` on its own GIL, forwards every other request to the server thread, and exits when its stdin
closes: when the agent stops the server or dies. It imports the standard library only, so it starts in
milliseconds.

Usage (by `HealthServer`): `python -I -S _wire.py LISTEN_FD UPSTREAM_PORT DEADLINE_SECONDS CACHE_TTL_SECONDS`
"""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final, NamedTuple, cast

LIVE: Final = "/health/live"
ALIVE_BODY: Final = b'{"status":"alive"}'
MAX_HEAD: Final = 8192
MAX_PENDING: Final = 65536
REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def response(status: int, body: bytes, *, close: bool = False, keep_alive_header: bool = False) -> bytes:
    """A whole HTTP/1.1 response with a JSON body."""
    connection = b"Connection: close\r\n" if close else b"Connection: keep-alive\r\n" if keep_alive_header else b""
    allow = b"Allow: GET\r\n" if status == 405 else b""
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: %d\r\n"
        b"%s%s\r\n%s" % (status, REASONS[status].encode(), len(body), allow, connection, body)
    )


LIVE_RESPONSE: Final = response(200, ALIVE_BODY)
BAD_REQUEST: Final = response(400, b'{"error":"bad request"}', close=True)
TOO_LARGE: Final = response(431, b'{"error":"request head too large"}', close=True)


class Request(NamedTuple):
    """One parsed request head.

    Attributes:
        method: `GET`, `POST`, ...
        path: The target without its query string.
        target: The request target as sent.
        close: Close the connection after answering (`Connection: close`, HTTP/1.0, or a body: no route takes one).
        keep_alive_header: An HTTP/1.0 keep-alive request: answer with `Connection: keep-alive`.
    """

    method: str
    path: str
    target: bytes
    close: bool
    keep_alive_header: bool

    @property
    def hot(self) -> bool:
        """`GET /health/live` on a kept-alive HTTP/1.1 connection: answered with `LIVE_RESPONSE` as it is."""
        return self.path == LIVE and self.method == "GET" and not self.close and not self.keep_alive_header


Answer = tuple[bytes, bool]
"""A whole response, and whether to close the connection after it."""

Handler = Callable[[Request], Answer | Coroutine[Any, Any, Answer]]
"""What a side does with a request other than the hot `GET /health/live`: answers it at once, or in a coroutine."""


def answer_for(request: Request, status: int, body: bytes) -> Answer:
    """The response to `request` with `status` and the JSON `body`, keeping or closing its connection as it asks."""
    return response(status, body, close=request.close, keep_alive_header=request.keep_alive_header), request.close


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case) in the lower-cased request head, or None."""
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return (head[start:] if end < 0 else head[start:end]).strip()


def parse(buffer: bytes) -> tuple[Request | bytes | None, bytes]:
    """The first request head in `buffer` and what follows it.

    Returns:
        `(Request, rest)`; `(None, buffer)` while the head is incomplete; `(error response, b"")` for a head
        that is malformed or too large (send it and close the connection).
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return (TOO_LARGE, b"") if len(buffer) > MAX_HEAD else (None, buffer)
    head, rest = buffer[:end], buffer[end + 4 :]
    line_end = head.find(b"\r\n")
    parts = (head if line_end < 0 else head[:line_end]).split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return BAD_REQUEST, b""
    method, target, version = parts
    lower = head.lower()
    connection = _header(lower, b"connection")
    close = (
        _header(lower, b"transfer-encoding") is not None
        or _header(lower, b"content-length") not in (None, b"0")
        or connection == b"close"
        or (version == b"HTTP/1.0" and connection != b"keep-alive")
    )
    path = target.partition(b"?")[0].decode("latin-1")
    return Request(method.decode("latin-1"), path, target, close, version == b"HTTP/1.0" and not close), rest


class Connection(asyncio.Protocol):
    """One client connection: parses request heads, answers them in order, and keeps the connection alive.

    The hot `GET /health/live` is answered with `LIVE_RESPONSE` as soon as it is read, so one wake-up of the
    loop answers every request waiting on the connection; any other request goes to `handler`. While an answer
    is awaited, later requests wait in the buffer (a client that sends more than `MAX_PENDING` bytes meanwhile is
    dropped), and while the transport holds more unsent bytes than its high-water mark, reading pauses. A
    malformed head is answered with its error, and a request that asks for it closes the connection after its
    answer; either way, whatever follows is ignored.

    Args:
        handler: Answers the other requests.
        connections: Where the open connections are kept (added when made, removed when lost), for a server
            that drops them when it stops.
    """

    def __init__(self, handler: Handler, connections: set[Connection] | None = None) -> None:
        self._handler = handler
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._answering: asyncio.Future[Answer] | None = None  # held: the loop keeps only weak references to tasks
        self._paused = False
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._connections is not None:
            self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._connections is not None:
            self._connections.discard(self)

    def abort(self) -> None:
        """Drop the connection now, unsent bytes included."""
        if self._transport is not None:
            self._transport.abort()

    def pause_writing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()
            self._drain()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._buffer = self._buffer + data if self._buffer else data
        if self._answering is None and not self._paused:
            self._drain()
        elif len(self._buffer) > MAX_PENDING:
            self.abort()

    def _drain(self) -> None:
        out: list[bytes] = []
        while self._answering is None and not self._closing:
            request, self._buffer = parse(self._buffer)
            if request is None:
                break
            if not isinstance(request, Request):
                out.append(request)
                self._closing = True
            elif request.hot:
                out.append(LIVE_RESPONSE)
            elif isinstance(reply := self._handler(request), tuple):
                out.append(reply[0])
                self._closing = reply[1]
            else:
                self._answering = asyncio.ensure_future(reply)
                self._answering.add_done_callback(self._answered)
        if out:
            self._send(b"".join(out))

    def _answered(self, done: asyncio.Future[Answer]) -> None:
        self._answering = None
        if done.cancelled():  # the server is stopping
            return
        failed = done.exception() is not None  # a handler answers every request: if one failed, drop the connection
        if self._transport is None or failed:
            self.abort()
            return
        data, self._closing = done.result()
        self._send(data)
        if not self._paused:
            self._drain()

    def _send(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)
            if self._closing:
                self._transport.close()  # after the buffered bytes are sent


# -- the helper process -----------------------------------------------------------------------------------------

# Seconds the helper's loop pauses before polling again after a poll that found requests: a flood of probes is
# answered in batches (every connection's waiting request at once) and costs a bounded share of a CPU, which the
# agent would otherwise lose to the helper and to the client flooding it.
PACE: Final = 0.002
UNAVAILABLE: Final = response(503, b'{"status":"unhealthy","error":"the health report is unavailable"}', close=True)


class _PacedSelector(selectors.DefaultSelector):
    worked = False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self.worked:
            time.sleep(PACE)
        events = super().select(timeout)
        self.worked = bool(events)
        return events


class _Upstream:
    """The server thread in the agent's process, asked for everything but `/health/live`.

    Its `GET /health` and `GET /health/ready` answers are reused for `ttl` seconds, and concurrent requests
    for one of them share one forward: a probe storm reaches the agent's process once per TTL (so a report
    served here is at most twice the TTL old), and the thread, which may wait long for the GIL, is not flooded.
    """

    def __init__(self, port: int, deadline: float, ttl: float) -> None:
        self.port, self.deadline, self.ttl = port, deadline, ttl
        self._cached: dict[bytes, tuple[float, bytes]] = {}
        self._inflight: dict[bytes, asyncio.Future[bytes]] = {}

    async def answer(self, request: Request) -> Answer:
        """The thread's response to `request`, fitted to the client's connection."""
        reply = await self._response(request)
        if request.close or reply is UNAVAILABLE:
            return reply, True
        # The thread answers `Connection: close`; the client's connection stays open.
        head, _, body = reply.partition(b"\r\n\r\n")
        keep = b"\r\nConnection: keep-alive" if request.keep_alive_header else b""
        return head.replace(b"\r\nConnection: close", keep) + b"\r\n\r\n" + body, False

    async def _response(self, request: Request) -> bytes:
        if request.method != "GET" or request.path not in ("/health", "/health/ready"):
            return await self._fetch(request.method.encode("latin-1"), request.target)
        path = request.path.encode("latin-1")
        cached = self._cached.get(path)
        if cached is not None and time.monotonic() - cached[0] <= self.ttl:
            return cached[1]
        if (inflight := self._inflight.get(path)) is None:
            inflight = self._inflight[path] = asyncio.ensure_future(self._fetch(b"GET", path))
            inflight.add_done_callback(lambda done: self._store(path, done))
        return await asyncio.shield(inflight)

    def _store(self, path: bytes, done: asyncio.Future[bytes]) -> None:
        del self._inflight[path]
        if not done.cancelled() and done.result() is not UNAVAILABLE:
            self._cached[path] = (time.monotonic(), done.result())

    async def _fetch(self, method: bytes, target: bytes) -> bytes:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), self.deadline)
            writer.write(b"%s %s HTTP/1.1\r\nHost: rfobs-health\r\nConnection: close\r\n\r\n" % (method, target))
            reply = await asyncio.wait_for(reader.read(), self.deadline)
            writer.close()
        except Exception:  # whatever went wrong upstream (refused, timed out), the client gets a 503
            return UNAVAILABLE
        return reply or UNAVAILABLE


async def _serve_live(listen_fd: int, upstream: _Upstream) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket(fileno=listen_fd)
    server = await loop.create_server(lambda: Connection(upstream.answer), sock=listener, backlog=1024)
    stdin_closed = loop.create_future()

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096) and not stdin_closed.done():
            stdin_closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    await stdin_closed
    server.close()


def main(argv: list[str]) -> None:
    """The helper process's entry point."""
    listen_fd, upstream = int(argv[0]), _Upstream(int(argv[1]), float(argv[2]), float(argv[3]))
    loop = asyncio.SelectorEventLoop(_PacedSelector())
    try:
        loop.run_until_complete(_serve_live(listen_fd, upstream))
    finally:
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1:])
