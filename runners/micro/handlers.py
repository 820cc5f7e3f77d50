"""Django's ``ASGIHandler`` with one of its per-request costs removed (the ablation).

Each class differs from ``ASGIHandler`` in one thing; the views, middleware,
request and response objects are Django's own:

- ``no-executor`` (``PooledASGIHandler``): the per-request thread-sensitive
  executor (a new thread started by the request's first ``sync_to_async``
  call, shut down and joined when the request ends) is replaced by one
  executor kept for the process. The hops to a thread remain.
- ``sync-signals``: as ``no-executor``, and ``request_started`` is sent on
  the event loop's thread (``Signal.send``, as ``WSGIHandler`` does) instead
  of through ``Signal.asend``, which hops its sync receivers to the
  executor's thread.
- ``inline-close``: as ``no-executor``, and ``response.close()`` (which sends
  ``request_finished``) runs on the event loop's thread instead of through
  ``sync_to_async``.
- ``bare``: all three removed: no thread-sensitive context, no hop. Its cost
  over ``WSGIHandler`` is what is left: the ASGI request object, the body
  file, the disconnect listener task and the event loop's own work.

The two hops are priced on the warm shared thread of ``no-executor``: on
Django's per-request thread they are not separable from it (removing one
hop moves the thread's start, and its exit competing for the GIL with the
next request, elsewhere; measured here, either removal alone made the
request slower, not faster).

The two hop removals run Django's own ``ASGIHandler.handle`` code with one
global name rebound (``signals`` or ``sync_to_async``), so they follow the
installed Django release instead of copying it; ``rebound_handle`` refuses a
release whose ``handle`` does not use that name. Running the signal
receivers or ``close()`` on the loop's thread is only right for a view that
touches no database (the receivers close the calling thread's connections):
the ablation measures ``json``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from django.core import signals as django_signals
from django.core.handlers.asgi import ASGIHandler
from django.dispatch import Signal

from runners.serving.servers.pooled_handler import PooledASGIHandler, Receive, Scope, Send

Ablation = Literal["no-executor", "sync-signals", "inline-close", "bare"]
ABLATIONS: tuple[Ablation, ...] = ("no-executor", "sync-signals", "inline-close", "bare")

_R = TypeVar("_R")


class _SyncSignal:
    """A signal whose ``asend`` calls the receivers on the calling thread, like ``send``."""

    def __init__(self, signal: Signal) -> None:
        self.signal = signal

    async def asend(self, sender: Any, **named: Any) -> list[tuple[Any, Any]]:
        return self.signal.send(sender, **named)


SYNC_SIGNALS = types.SimpleNamespace(
    request_started=_SyncSignal(django_signals.request_started),
    request_finished=_SyncSignal(django_signals.request_finished),
)
"""Stands for ``django.core.signals`` inside a rebound ``handle``."""


def inline_call(func: Callable[..., _R], **_: Any) -> Callable[..., Coroutine[Any, Any, _R]]:
    """Stands for ``sync_to_async``: the returned coroutine function calls ``func`` in place."""

    async def call(*args: Any, **kwargs: Any) -> _R:
        return func(*args, **kwargs)

    return call


def rebound_handle(**names: Any) -> Callable[..., Any]:
    """``ASGIHandler.handle`` with the module globals ``names`` replaced (same code)."""
    original = ASGIHandler.handle
    used = set(original.__code__.co_names)
    for name in names:
        if name not in used:
            raise RuntimeError(
                f"this Django's ASGIHandler.handle does not use {name!r}: the ablation "
                "does not know how to remove that part in this release"
            )
    rebound = types.FunctionType(
        original.__code__,
        {**original.__globals__, **names},
        original.__name__,
        original.__defaults__,
        original.__closure__,
    )
    rebound.__kwdefaults__ = original.__kwdefaults__
    rebound.__qualname__ = original.__qualname__
    return rebound


class SyncSignalsHandler(PooledASGIHandler):
    """One executor per process, and ``request_started`` sent on the loop's thread."""

    handle = rebound_handle(signals=SYNC_SIGNALS)


class InlineCloseHandler(PooledASGIHandler):
    """One executor per process, and ``response.close()`` on the loop's thread."""

    handle = rebound_handle(sync_to_async=inline_call)


class BareHandler(ASGIHandler):
    """No thread-sensitive context, no signal hop, no close hop."""

    handle = rebound_handle(signals=SYNC_SIGNALS, sync_to_async=inline_call)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


HANDLER_CLASSES: dict[Ablation, type[ASGIHandler]] = {
    "no-executor": PooledASGIHandler,
    "sync-signals": SyncSignalsHandler,
    "inline-close": InlineCloseHandler,
    "bare": BareHandler,
}


def ablated_handler(ablation: Ablation) -> ASGIHandler:
    """A new handler with ``ablation`` removed (build it after Django is set up)."""
    return HANDLER_CLASSES[ablation]()
