"""URL layout: every endpoint exists as ``/sync/<name>`` and ``/async/<name>``.

The routes are one flat list rather than two ``include()``\\ s: each include
is one more resolver level walked per request, about 10 µs of the 100 µs
Django spends serving ``/sync/json`` on this machine (measured in-process).
A route's name is its prefix and its view's name: ``sync-json``, ``async-feed``.
"""

from django.urls import URLPattern, path

from apps.bench import views_async, views_sync
from apps.bench.views_common import health


def _prefixed(prefix: str, patterns: list[URLPattern]) -> list[URLPattern]:
    return [path(f"{prefix}/{p.pattern}", p.callback, name=f"{prefix}-{p.name}") for p in patterns]


urlpatterns = [
    *_prefixed("sync", views_sync.urlpatterns),
    *_prefixed("async", views_async.urlpatterns),
    path("health", health, name="health"),  # last: it is not what is measured
]

# Short JSON errors instead of Django's HTML pages (used when DEBUG is off).
handler400 = "apps.bench.views_common.handler400"
handler404 = "apps.bench.views_common.handler404"
handler500 = "apps.bench.views_common.handler500"
