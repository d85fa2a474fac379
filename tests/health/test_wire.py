"""The health server's connection protocol on its own: flow control, on a real loopback connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from rfobs.health._wire import LIVE_RESPONSE, Answer, Connection, Request, answer_for, response

LIVE = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"
SLOW_BODY = b'{"slow":true}'


class Served(Connection):
    """A server-side connection whose handler answers any request once the test sets `release`."""

    def __init__(self) -> None:
        super().__init__(self.slow)
        self.made = asyncio.Event()
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set()

    async def slow(self, request: Request) -> Answer:
        self.asked.set()
        await self.release.wait()
        return answer_for(request, 200, SLOW_BODY)


@contextlib.asynccontextmanager
async def serve_one() -> AsyncGenerator[tuple[Served, asyncio.StreamReader, asyncio.StreamWriter]]:
    """One `Served` connection on 127.0.0.1 and the client's end of it; both ends are closed on the way out."""
    served = Served()
    async with await asyncio.get_running_loop().create_server(lambda: served, "127.0.0.1", 0) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        try:
            await asyncio.wait_for(served.made.wait(), 10)
            yield served, reader, writer
        finally:
            served.abort()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def read_exactly(reader: asyncio.StreamReader, expected: bytes) -> bytes:
    return await asyncio.wait_for(reader.readexactly(len(expected)), 10)


async def test_a_paused_connection_stops_reading_and_answers_after_resuming() -> None:
    async with serve_one() as (served, reader, writer):
        assert served.transport is not None and served.transport.is_reading()
        served.pause_writing()  # what the transport calls when it holds more than its high-water mark
        assert not served.transport.is_reading()
        writer.write(LIVE)
        served.resume_writing()
        assert served.transport.is_reading()
        assert await read_exactly(reader, LIVE_RESPONSE) == LIVE_RESPONSE


async def test_requests_that_waited_behind_an_answer_are_answered_on_resuming() -> None:
    async with serve_one() as (served, reader, writer):
        writer.write(SLOW + LIVE)
        await asyncio.wait_for(served.asked.wait(), 10)  # the live request waits behind the slow one
        served.pause_writing()
        served.release.set()  # the slow answer is sent; the live one waits for the transport to resume
        slow = response(200, SLOW_BODY)
        assert await read_exactly(reader, slow) == slow
        served.resume_writing()
        assert await read_exactly(reader, LIVE_RESPONSE) == LIVE_RESPONSE
