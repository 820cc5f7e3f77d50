"""Django's ASGI application for a project that has no ASGI entry of its own.

``runners.serving.subject.PROJECT_ASGI_APP``: the ASGI runners serve a user's project
through it when the project defines neither ``ASGI_APPLICATION`` nor ``<package>.asgi``
(the run records ``asgi_built``). ``DJANGO_SETTINGS_MODULE`` comes from the server's
environment (the suite's wrapper of the project's settings).
"""

from django.core.asgi import get_asgi_application

application = get_asgi_application()
