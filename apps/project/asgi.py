"""ASGI entry point: ``apps.project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.project.settings")

application = get_asgi_application()
