"""ASGI entry point: ``apps.project.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.project.settings")
# Read by the settings (which load in get_asgi_application): under ASGI Django
# runs each request's sync work in a new thread, so persistent database
# connections are turned off (see _database in settings.py). Set here, by the
# entry point every ASGI server imports, so it is right whoever serves the app.
os.environ["BENCH_INTERFACE"] = "asgi"

application = get_asgi_application()
