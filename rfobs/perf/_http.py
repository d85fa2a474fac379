"""A minimal HTTP/1.1 keep-alive GET client on asyncio streams, one per virtual user of a load test."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit

from rfobs.exceptions import ConfigError

__all__ = ["HttpClient", "HttpStatusError"]


class HttpStatusError(Exception):
    """The server answered with a status of 400 or more; the load test counts it as `HTTP <status>`."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class HttpClient:
    """GET one URL over a kept-alive connection, reconnecting when the server closes it.

    Reads bodies framed by `Content-Length`, chunked encoding, or the end of the connection. Not shared between
    tasks: each virtual user has its own.

    Raises:
        ConfigError: The URL is not an `http://` URL with a host.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"load_test(fn={url!r}): expected an http:// URL with a host (https is not supported)")
        self.host = parts.hostname
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rsplit("@", 1)[-1]
        self._request = f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: keep-alive\r\n\r\n".encode("ascii")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self) -> int:
        """Send one GET and read the whole response; returns the status, raises `HttpStatusError` at >= 400."""
        if self._writer is None or self._reader is None or self._reader.at_eof():
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            sock = self._writer.get_extra_info("socket")
            if sock is not None:  # small requests: do not wait for the previous response's ACK (Nagle)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader, writer = self._reader, self._writer
        try:
            writer.write(self._request)
            status, keep_alive = await self._read_response(reader)
        except BaseException:
            await self.close()
            raise
        if not keep_alive:
            await self.close()
        if status >= 400:
            raise HttpStatusError(status)
        return status

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[int, bool]:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection before answering")
        version, status_text = status_line.split(b" ", 2)[:2]
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.partition(b":")
            key, value = key.strip().lower(), value.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif key == b"connection":
                keep_alive = value == b"keep-alive"
        if chunked:
            while size := int((await reader.readline()).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()
            keep_alive = False
        return int(status_text), keep_alive

    async def close(self) -> None:
        """Close the connection, if open."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
