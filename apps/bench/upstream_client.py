"""HTTP clients for the ``upstream`` views, reused across requests.

- Sync: one module-level ``httpx.Client`` per process. It is thread-safe and
  pools keep-alive connections, so threaded servers share it.
- Async: one ``httpx.AsyncClient`` per running event loop (an AsyncClient is
  bound to the loop that opened its connections). Clients of loops that have
  been closed are dropped; this happens when async views run under WSGI,
  where Django gives each request its own short-lived loop.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
from django.conf import settings

# The upstream may take up to 5 s by design; leave room above that.
TIMEOUT = httpx.Timeout(15.0, connect=3.0)
LIMITS = httpx.Limits(max_connections=1_000, max_keepalive_connections=200)

_sync_client: httpx.Client | None = None
_sync_lock = threading.Lock()
_async_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
_async_lock = threading.Lock()  # loops may run in several threads


def delay_url(ms: int) -> str:
    return f"{settings.UPSTREAM_URL.rstrip('/')}/delay?ms={ms}"


def sync_client() -> httpx.Client:
    global _sync_client
    if _sync_client is None:
        with _sync_lock:
            if _sync_client is None:
                _sync_client = httpx.Client(timeout=TIMEOUT, limits=LIMITS)
    return _sync_client


def async_client() -> httpx.AsyncClient:
    """The AsyncClient of the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        with _async_lock:
            for stale in [other for other in _async_clients if other.is_closed()]:
                del _async_clients[stale]
            client = _async_clients[loop] = httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS)
    return client
