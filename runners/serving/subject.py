"""What the servers serve: the suite's own app, or a user's Django project.

A ``Subject`` is what a command line needs to serve a Django project with any runner:
the WSGI and ASGI import targets, the settings module, the folders to import from, and
how to tell it is ready. ``BUILTIN`` is the app under ``apps/`` (the default subject);
``runners.project`` makes one for a user's project (``--project PATH``), whose code runs
where it is while its settings are wrapped by the suite (``runners.project.data``) and
its imports resolve first in its own folder.
"""

from __future__ import annotations

from dataclasses import dataclass

WSGI_APP = "apps.project.wsgi:application"
ASGI_APP = "apps.project.asgi:application"
PROJECT_ASGI_APP = "runners.serving.servers.project_asgi:application"
"""Django's ``get_asgi_application()`` for a project that has no ASGI entry of its own."""


@dataclass(frozen=True)
class Subject:
    """The Django app the servers serve."""

    name: str = "built-in"
    wsgi: str = WSGI_APP
    """The WSGI callable, ``module:attribute``."""
    asgi: str = ASGI_APP
    """The ASGI callable (``PROJECT_ASGI_APP`` when the suite built one)."""
    asgi_built: bool = False
    """The project has no ASGI entry: the suite serves Django's ``get_asgi_application()``."""
    settings: str | None = None
    """``DJANGO_SETTINGS_MODULE`` for the servers (None: the app chooses its own)."""
    pythonpath: tuple[str, ...] = ()
    """Folders the servers import from before the repository (the project's root, the
    folder of the suite's settings wrapper)."""
    app_root: str | None = None
    """The project's own code, which allocation profiles call ``app`` (None: ``apps/``)."""
    health: str = "/health"
    """The readiness path."""
    ready_below: int = 201
    """A status below this on ``health`` means ready (the built-in ``/health``: 200 only;
    a project's page: anything below 500)."""

    @property
    def builtin(self) -> bool:
        return self.name == BUILTIN.name and self.settings is None

    def app(self, interface: str) -> str:
        """The import target a server of ``interface`` serves."""
        return self.wsgi if interface == "wsgi" else self.asgi


BUILTIN = Subject()
