"""URL layout: every endpoint exists as ``/sync/<name>`` and ``/async/<name>``.

One flat list (no ``include()``): resolving a path walks one resolver, not two.
"""

from django.urls import path

from apps.bench import views_async, views_sync
from apps.bench.views_common import health

urlpatterns = [
    path("health", health, name="health"),
    *views_sync.urlpatterns,
    *views_async.urlpatterns,
]

# Short JSON errors instead of Django's HTML pages (used when DEBUG is off).
handler400 = "apps.bench.views_common.handler400"
handler404 = "apps.bench.views_common.handler404"
handler500 = "apps.bench.views_common.handler500"
