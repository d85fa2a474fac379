"""The server thread's side of `HealthServer`: HTTP/1.1 connections on raw non-blocking sockets.

Why raw sockets and libc: the thread shares the GIL with the agent. Every Python socket call releases the GIL,
and getting it back behind a busy agent can take up to `sys.getswitchinterval()` (5 ms) or, behind an event loop
that releases and retakes it on every iteration, much longer. An asyncio transport server pays that two or three
times per request (measured: about 40 requests/s behind a CPU-bound agent loop). Here `recv` and `send` go
through `ctypes.PyDLL`, which keeps the GIL, so one wake-up of the loop answers every connection with a request
waiting and the GIL is given back once, in the loop's `select`. That is as far as a thread can go: the
`live_process` helper (`_wire.py`) is what keeps `/health/live` fast whatever the agent does. Where libc cannot
be reached (Windows), the socket methods are used.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from rfobs.health._wire import LIVE_RESPONSE, MAX_PENDING, Request, parse, response
from rfobs.health.server import immediate, respond

if TYPE_CHECKING:
    from rfobs.health.server import HealthServer

__all__ = ["Connection", "accept_all"]

_CHUNK: Final = 65536
_RETRY: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR})
_NO_SIGPIPE: Final = getattr(socket, "MSG_NOSIGNAL", 0)


def _socket_recv(sock: socket.socket) -> bytes | None:
    try:
        return sock.recv(_CHUNK)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return b""


def _socket_send(sock: socket.socket, data: bytes) -> int:
    try:
        return sock.send(data, _NO_SIGPIPE)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError:
        return -1


def _libc_io() -> tuple[Callable[[socket.socket], bytes | None], Callable[[socket.socket, bytes], int]] | None:
    """`recv`/`send` that keep the GIL, or None where libc is out of reach."""
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        c_recv, c_send = libc.recv, libc.send
    except (OSError, TypeError, AttributeError):
        return None
    c_recv.argtypes = c_send.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    c_recv.restype = c_send.restype = ctypes.c_ssize_t
    buffer = ctypes.create_string_buffer(_CHUNK)  # one thread reads, so one buffer serves every connection

    def recv(sock: socket.socket) -> bytes | None:
        received: int = c_recv(sock.fileno(), buffer, _CHUNK, 0)
        if received > 0:
            return ctypes.string_at(buffer, received)
        if received < 0 and ctypes.get_errno() in _RETRY:
            return None
        return b""

    def send(sock: socket.socket, data: bytes) -> int:
        sent: int = c_send(sock.fileno(), data, len(data), _NO_SIGPIPE)
        if sent < 0:
            return 0 if ctypes.get_errno() in _RETRY else -1
        return sent

    return recv, send


_recv, _send = _libc_io() or (_socket_recv, _socket_send)


class Connection:
    """One client connection: parses request heads, answers them in order, keeps the connection alive.

    Only bodiless requests keep the connection: one with a body is answered and closed (no route takes one).
    """

    __slots__ = ("_buffer", "_busy", "_closing", "_loop", "_pending", "_server", "sock")

    def __init__(self, server: HealthServer, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self.sock = sock
        self._loop = loop
        self._buffer = b""
        self._busy = False  # a report is being awaited; later requests wait in the buffer
        self._pending = b""  # response bytes the socket did not take yet
        self._closing = False

    def close(self) -> None:
        """Forget the connection and close its socket."""
        if self._server.connections.pop(self.sock.fileno(), None) is not None:
            self._loop.remove_reader(self.sock)
            self._loop.remove_writer(self.sock)
        self.sock.close()

    def on_readable(self) -> None:
        """Read what arrived and answer every complete request in it."""
        data = _recv(self.sock)
        if data is None:
            return
        if not data:
            self.close()
            return
        self._buffer = self._buffer + data if self._buffer else data
        if self._busy or self._pending or self._closing:
            if len(self._buffer) > MAX_PENDING:
                self.close()
            return
        self._drain()

    def _drain(self) -> None:
        out: list[bytes] = []
        while not self._busy:
            request, self._buffer = parse(self._buffer)
            if request is None:
                break
            if not isinstance(request, Request):  # malformed: answer and close
                out.append(request)
                self._closing = True
                break
            if request.hot:
                out.append(LIVE_RESPONSE)  # nothing to compute
                continue
            if (answer := immediate(request.method, request.path)) is not None:
                out.append(response(*answer, close=request.close, keep_alive_header=request.keep_alive_header))
            else:
                self._busy = True
                task = asyncio.ensure_future(self._answer(request))
                self._server.tasks.add(task)
                task.add_done_callback(self._server.tasks.discard)
            if request.close:
                self._closing = True
                break
        if out:
            self._write(b"".join(out))

    async def _answer(self, request: Request) -> None:
        status, body = await respond(self._server.checker, request.method, request.path)
        self._busy = False
        if self._server.connections.get(self.sock.fileno()) is self:
            self._write(response(status, body, close=request.close, keep_alive_header=request.keep_alive_header))
            if not self._closing and not self._pending:
                self._drain()

    def _write(self, data: bytes) -> None:
        whole = self._pending + data if self._pending else data
        sent = _send(self.sock, whole)
        if sent < 0:
            self.close()
            return
        self._pending = whole[sent:]
        if self._pending:
            self._loop.add_writer(self.sock, self._on_writable)
        elif self._closing and not self._busy:
            self.close()

    def _on_writable(self) -> None:
        self._loop.remove_writer(self.sock)
        self._write(b"")
        if not self._pending and not self._busy and not self._closing and self._buffer:
            self._drain()


def accept_all(server: HealthServer, listener: socket.socket) -> None:
    """Accept every waiting connection on `listener` and start reading from each."""
    loop = asyncio.get_running_loop()
    for _ in range(128):
        try:
            sock, _address = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the client gave up before accept (ECONNABORTED), or out of descriptors
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(server, sock, loop)
        server.connections[sock.fileno()] = connection
        loop.add_reader(sock, connection.on_readable)
