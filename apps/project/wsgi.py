"""WSGI entry point: ``apps.project.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.project.settings")
# Read by the settings (see apps/project/asgi.py): persistent connections.
os.environ["BENCH_INTERFACE"] = "wsgi"

application = get_wsgi_application()
