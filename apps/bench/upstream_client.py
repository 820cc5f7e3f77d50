"""HTTP clients for the ``upstream`` views, reused across requests.

- Sync: one module-level ``httpx.Client`` per process. It is thread-safe and
  pools keep-alive connections, so threaded servers share it.
- Async: an :class:`AsyncClients` per running event loop (an AsyncClient is
  bound to the loop that opened its connections), which spreads the loop's
  concurrent requests over a few ``httpx.AsyncClient``, at most
  ``REQUESTS_PER_ASYNC_CLIENT`` in flight on each (see below). Those of loops
  that have been closed are dropped; this happens when async views run under
  WSGI, where Django gives each request its own short-lived loop.
- Every client shares one SSL context (the upstream is plain HTTP, but httpx
  builds a context per client otherwise, loading the CA bundle: about 40 ms,
  paid per request by async views under WSGI).

Why several AsyncClients: httpcore 1.0's connection pool (which httpx uses)
re-examines every pooled connection, with a ``poll()`` on each idle socket and
a count of all connections for each idle one, on every request and every
response (encode/httpcore#1035). Its cost per request grows with the number of
connections, i.e. with concurrency. Measured under uvicorn (one worker, one
CPU), ``/async/upstream?ms=50`` with one AsyncClient cost 2.5 ms of CPU per
request at 16 concurrent requests, 5.5-5.9 ms at 32 and 6.3-9 ms at 64: with
32 Locust users the server saturated its CPU at 190 requests/s, under a third
of the 640 that 32 concurrent 50 ms calls allow. With at most 8 requests per
client it costs 2.0-2.1 ms at every concurrency (450 requests/s at 32 users),
of which Django's ASGI path is about 0.8 ms and httpx the rest.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

import httpx
from django.conf import settings

# The upstream may take up to 5 s by design; leave room above that.
TIMEOUT = httpx.Timeout(15.0, connect=3.0)
LIMITS = httpx.Limits(max_connections=1_000, max_keepalive_connections=200)
REQUESTS_PER_ASYNC_CLIENT = 8
"""In-flight requests an AsyncClient takes before the next is used (or opened)."""

_sync_client: httpx.Client | None = None
_sync_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None
_async_clients: dict[asyncio.AbstractEventLoop, AsyncClients] = {}
_async_lock = threading.Lock()  # loops may run in several threads


def delay_url(ms: int) -> str:
    return f"{settings.UPSTREAM_URL.rstrip('/')}/delay?ms={ms}"


def ssl_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CA bundle), made once per process."""
    global _ssl_context
    if _ssl_context is None:
        with _sync_lock:
            if _ssl_context is None:
                _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def sync_client() -> httpx.Client:
    global _sync_client
    if _sync_client is None:
        context = ssl_context()
        with _sync_lock:
            if _sync_client is None:
                _sync_client = httpx.Client(timeout=TIMEOUT, limits=LIMITS, verify=context)
    return _sync_client


class AsyncClients:
    """The AsyncClients of one event loop; each request uses the least busy one.

    Used from its loop only (no locking): the choice and the counts change
    between awaits, never during one.
    """

    def __init__(self) -> None:
        self.clients: list[httpx.AsyncClient] = []
        self.in_flight: list[int] = []

    def _pick(self) -> int:
        busy = self.in_flight
        index = min(range(len(busy)), key=busy.__getitem__, default=-1)
        if index < 0 or busy[index] >= REQUESTS_PER_ASYNC_CLIENT:
            client = httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, verify=ssl_context())
            self.clients.append(client)
            busy.append(0)
            index = len(busy) - 1
        return index

    async def get(self, url: str) -> httpx.Response:
        index = self._pick()
        self.in_flight[index] += 1
        try:
            return await self.clients[index].get(url)
        finally:
            self.in_flight[index] -= 1


def async_clients() -> AsyncClients:
    """The AsyncClients of the running loop (created on first use)."""
    loop = asyncio.get_running_loop()
    clients = _async_clients.get(loop)
    if clients is None:
        with _async_lock:
            for stale in [other for other in _async_clients if other.is_closed()]:
                del _async_clients[stale]
            clients = _async_clients[loop] = AsyncClients()
    return clients
