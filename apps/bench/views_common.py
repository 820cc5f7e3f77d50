"""Helpers shared by the sync and async views."""

from django.http import HttpRequest, HttpResponse


def health(request: HttpRequest) -> HttpResponse:
    """Readiness check: no database, no cache."""
    return HttpResponse(b"ok", content_type="text/plain")
