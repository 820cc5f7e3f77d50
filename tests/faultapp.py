"""Test-only apps that misbehave, served through ``ServeConfig.app`` (never benchmarked).

- ``hang_wsgi`` / ``hang_asgi``: ``/health`` answers, so the server counts as
  up; any other request is accepted and never answered (a view that hangs).
- ``tests.faultapp_import_error:application``: a module that fails to import.

``tests/faultbench.py`` serves them from a real ``runners.bench`` driver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

HANG_S = 3600.0

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def hang_wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/health":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    time.sleep(HANG_S)
    start_response("503 Service Unavailable", [("Content-Length", "0")])
    return [b""]


async def hang_asgi(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await asyncio.sleep(HANG_S)
