"""Test-only: the Django app plus ``/boom``, a view that raises (served through
``ServeConfig.app`` to check what a real server answers on an unhandled error).

``application`` is the WSGI app, ``asgi_application`` the ASGI one; both use
the project's settings with this module as the root URLconf (which keeps the
project's URLs and error handlers).
"""

from __future__ import annotations

from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
asgi_application = get_asgi_application()

from django.conf import settings  # noqa: E402 - after django.setup()
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from apps.project import urls as project_urls  # noqa: E402

SECRET_MARKER = "faultapp-boom-secret-detail"


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(f"an unhandled error in a view ({SECRET_MARKER})")


handler400 = project_urls.handler400
handler404 = project_urls.handler404
handler500 = project_urls.handler500
urlpatterns = [path("boom", boom), *project_urls.urlpatterns]
settings.ROOT_URLCONF = __name__
