"""ASGI apps for agents that already serve HTTP: the health routes (`asgi_app`) and Prometheus `/metrics`.

Plain ASGI 3, no framework needed; FastAPI and Starlette mount them::

    app.mount("/", rfobs.health.asgi_app(checker))  # /health, /health/ready, /health/live
    app.mount("/metrics", rfobs.health.metrics_asgi_app())
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, cast

from rfobs import _check, _guard
from rfobs.health.checker import HealthChecker
from rfobs.health.server import respond

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["ASGIApp", "asgi_app", "metrics_asgi_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application."""


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge the server's lifespan messages."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _other(scope: Scope, receive: Receive, send: Send) -> bool:
    """Handle a non-HTTP scope; True when it was one."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return True
    if scope["type"] != "http":
        await send({"type": "websocket.close", "code": 1000})
        return True
    return False


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"cache-control", b"no-store"), (b"content-length", b"%d" % len(body))]
    if status == 405:
        headers.append((b"allow", b"GET"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _path(scope: Scope) -> str:
    """The request path below the mount point (servers disagree on whether `path` includes `root_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def asgi_app(checker: HealthChecker) -> ASGIApp:
    """An ASGI app serving `/health`, `/health/ready` and `/health/live` for `checker`.

    The routes, status codes and bodies are those of `HealthServer`. Reports come from `checker.report()` (cached
    for `checker.cache_ttl`) and are built on the ASGI server's event loop, so the checks must not block it (the
    built-in ones do not).

    Args:
        checker: The checks to report.

    Returns:
        The app; mount it at the root (`app.mount("/", asgi_app(checker))`) or under a prefix.

    Raises:
        ConfigError: `checker` is not a `HealthChecker`.
    """
    if not isinstance(checker, HealthChecker):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise _check.bad("asgi_app", "checker", checker, "a rfobs.health.HealthChecker")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if await _other(scope, receive, send):
            return
        status, body = await respond(checker, scope["method"], _path(scope))
        await _send(send, status, body, b"application/json")

    return app


def metrics_asgi_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app serving the Prometheus text exposition of `registry` at any path (mount it at `/metrics`).

    Args:
        registry: The registry to expose. None: the registry of the active `rfobs.init()` (found at each
            request, so the app may be built before `init()`), else prometheus_client's global `REGISTRY`.

    Returns:
        The app: `GET` answers 200 with `CONTENT_TYPE_LATEST`; other methods 405.
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if await _other(scope, receive, send):
            return
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if scope["method"] != "GET":
            await _send(send, 405, b"method not allowed\n", b"text/plain; charset=utf-8")
            return
        try:
            # Collecting runs every metric callback: off the event loop.
            body = await asyncio.to_thread(generate_latest, registry or _active_registry())
        except Exception:
            _guard.internal_error("serving /metrics")
            await _send(send, 503, b"metrics are unavailable\n", b"text/plain; charset=utf-8")
            return
        await _send(send, 200, body, CONTENT_TYPE_LATEST.encode())

    return app


def _active_registry() -> CollectorRegistry:
    from prometheus_client import REGISTRY

    from rfobs import _state

    return cast("CollectorRegistry", _state.current().prometheus_registry or REGISTRY)
