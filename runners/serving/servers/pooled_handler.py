"""An experimental ASGI handler: Django's ``ASGIHandler`` with one executor per process.

Django's ``ASGIHandler`` serves each request inside its own asgiref
``ThreadSensitiveContext``. The first thread-sensitive ``sync_to_async`` call
of the request (the ``request_started`` signal, an ORM query, the final
``response.close``) creates a one-thread ``ThreadPoolExecutor`` for that
request, which starts a thread; when the request ends the executor is shut
down and joined (asgiref 3.12+ joins it from one more new thread). That is a
thread start, a join and a thread per request, whatever the view does.

``PooledASGIHandler`` keeps everything Django does per request and changes
one thing: every request's thread-sensitive work goes to the same
one-thread executor, created with the handler and kept for the life of the
worker process. ``shared_executor_context`` is that change on its own (the
micro-benchmarks' ablation uses it too).

What it gives up (why it is experimental, not a recommendation):

- **Per-request thread isolation.** All requests of a process share one sync
  thread, so thread-local state set by one request's sync code (Django's
  database connections, ``threading.local`` caches, anything a sync
  middleware leaves behind) is seen by the next request, and by a request
  running concurrently. Thread-sensitive sync work of concurrent requests is
  serialised on that one thread, as it is in Django's development server
  without a context.
- **Connections.** Because the thread lives on, a database connection opened
  by it is reused: the ``asgi-pooled`` interface of the settings gives it
  persistent connections (``CONN_MAX_AGE=None``, as under WSGI), not the
  per-request connections and psycopg pool of ``asgi``. A request that
  leaves a transaction open or a connection broken hands it to the next one.
- **Blocking.** One slow sync call (a slow query) holds up the sync work of
  every other request in the process, not only its own.

It works with asgiref 3.8 to 3.13 (it sets the context variable and the
executor map that ``SyncToAsync`` reads; asgiref 3.13's
``ThreadSensitiveContext(executor=...)`` does the same).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def shared_executor_context(executor: ThreadPoolExecutor) -> AsyncIterator[None]:
    """A thread-sensitive context whose sync work goes to ``executor`` (never shut down here)."""
    context = ThreadSensitiveContext()
    token = SyncToAsync.thread_sensitive_context.set(context)
    SyncToAsync.context_to_thread_executor[context] = executor
    try:
        yield
    finally:
        SyncToAsync.context_to_thread_executor.pop(context, None)
        SyncToAsync.thread_sensitive_context.reset(token)


class PooledASGIHandler(ASGIHandler):
    """``ASGIHandler`` whose requests share one sync thread per process (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="django-sync")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with shared_executor_context(self.executor):
            await self.handle(scope, receive, send)
