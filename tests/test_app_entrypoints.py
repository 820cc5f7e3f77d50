"""The real WSGI and ASGI entry points, under both middleware profiles.

The test client stands in for the server elsewhere; here a child process
imports ``apps.project.wsgi:application`` and ``apps.project.asgi:application``
(as the servers do, with BENCH_MIDDLEWARE set) and calls them directly with a
WSGI environ and an ASGI scope, against an SQLite file made by ``prepare``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, PreparedSqlite

# (method, path, query string, body, expected status)
REQUESTS: list[tuple[str, str, str, bytes, int]] = [
    ("GET", "/health", "", b"", 200),
    ("GET", "/{v}/plaintext", "", b"", 200),
    ("GET", "/{v}/json", "", b"", 200),
    ("GET", "/{v}/db", "", b"", 200),
    ("GET", "/{v}/queries", "queries=3", b"", 200),
    ("GET", "/{v}/fortunes", "", b"", 200),
    ("GET", "/{v}/updates", "queries=3", b"", 200),
    ("GET", "/{v}/cached-queries", "count=3", b"", 200),
    ("GET", "/{v}/feed/1", "", b"", 200),
    ("GET", "/{v}/profile/1", "", b"", 200),
    ("POST", "/{v}/like", "", b'{"user_id": 2, "post_id": 3}', 200),
    ("POST", "/{v}/like", "", b"{", 400),
    ("GET", "/{v}/feed/999", "", b"", 404),
    ("GET", "/{v}/nothing", "", b"", 404),
    ("POST", "/{v}/json", "", b"", 405),
    ("GET", "/{v}/like", "", b"", 405),
    ("GET", "/{v}/upstream", "ms=-1", b"", 400),
]

Result = tuple[str, str, int, dict[str, str], str]


def _wsgi(method: str, path: str, query: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    import io
    from wsgiref.util import setup_testing_defaults

    from apps.project.wsgi import application

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    setup_testing_defaults(environ)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"] = int(status.split()[0])
        started["headers"] = dict(headers)
        return lambda data: None

    content = b"".join(application(environ, start_response))
    return started["status"], started["headers"], content


async def _asgi(
    method: str, path: str, query: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    from apps.project.asgi import application

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop()
        await never.wait()  # no disconnect: the response ends the exchange
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode().title(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, content


def probe() -> None:
    """Run in the child: every request, both interfaces, both variants; print JSON."""
    results: list[Result] = []
    for interface in ("wsgi", "asgi"):
        for variant in ("sync", "async"):
            for method, template, query, body, _ in REQUESTS:
                path = template.format(v=variant)
                if interface == "wsgi":
                    status, headers, content = _wsgi(method, path, query, body)
                else:
                    status, headers, content = asyncio.run(_asgi(method, path, query, body))
                declared = headers.get("Content-Length")
                length = "ok" if declared == str(len(content)) else f"{declared}!={len(content)}"
                results.append((interface, f"{method} {path}?{query}", status, headers, length))
    print(json.dumps(results))


@pytest.mark.parametrize("profile", ["minimal", "default"])
def test_entry_points_on_sqlite(
    prepared_sqlite: PreparedSqlite, profile: str, tmp_path: Path
) -> None:
    # A copy of the prepared data: the requests below write to it.
    data_dir = tmp_path / "data"
    shutil.copytree(prepared_sqlite.data_dir, data_dir)
    env = {**prepared_sqlite.env, "BENCH_DATA_DIR": str(data_dir), "BENCH_MIDDLEWARE": profile}
    code = "import django; django.setup(); from tests.test_app_entrypoints import probe; probe()"
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "apps.project.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    results: list[list[Any]] = json.loads(child.stdout.strip().splitlines()[-1])
    expected = [status for *_, status in REQUESTS]
    assert len(results) == 4 * len(REQUESTS)
    for index, (interface, request, status, headers, length) in enumerate(results):
        assert status == expected[index % len(REQUESTS)], (interface, request, status)
        assert length == "ok", (interface, request, length)
        assert headers["Content-Type"], (interface, request)
        assert ("X-Frame-Options" in headers) == (profile == "default"), (interface, request)
