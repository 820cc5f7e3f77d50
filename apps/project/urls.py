"""URL layout: every endpoint exists as ``/sync/<name>`` and ``/async/<name>``."""

from django.urls import include, path

from apps.bench import views_async, views_sync
from apps.bench.views_common import health

urlpatterns = [
    path("health", health, name="health"),
    path("sync/", include((views_sync.urlpatterns, "bench"), namespace="sync")),
    path("async/", include((views_async.urlpatterns, "bench"), namespace="async")),
]

# Short JSON errors instead of Django's HTML pages (used when DEBUG is off).
handler400 = "apps.bench.views_common.handler400"
handler404 = "apps.bench.views_common.handler404"
handler500 = "apps.bench.views_common.handler500"
