"""An app that allocates a known 10 MiB of bytes objects, for the memory-profile tests.

``GET /alloc`` (WSGI ``application`` or ASGI ``asgi_application``) makes
1280 bytes objects of 8 KiB each, on one line of this module, and keeps them;
every path answers JSON with the process's pid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

CHUNK = 8 * 1024
COUNT = 1280  # x 8 KiB = 10 MiB
KEPT: list[bytes] = []

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def allocate() -> None:
    KEPT.extend([bytes(CHUNK) for _ in range(COUNT)])


def _answer(path: str) -> bytes:
    if path == "/alloc":
        allocate()
    return json.dumps({"pid": os.getpid(), "kept": len(KEPT) * CHUNK}).encode()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = _answer(environ.get("PATH_INFO", "/"))
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response("200 OK", headers)
    return [body]


async def asgi_application(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].removeprefix("lifespan.")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    body = _answer(scope["path"])
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
