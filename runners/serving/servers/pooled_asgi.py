"""The app under ``PooledASGIHandler``: ``runners.serving.servers.pooled_asgi:application``.

Served by the experimental ``uvicorn-pooled`` runner. Like
``apps/project/asgi.py`` it selects the interface before the settings load:
``asgi-pooled``, which keeps database connections persistent (the one sync
thread per process lives as long as the process; see ``pooled_handler``).
"""

import os

import django

from runners.serving.servers.pooled_handler import PooledASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.project.settings")
os.environ["BENCH_INTERFACE"] = "asgi-pooled"
django.setup(set_prefix=False)

application = PooledASGIHandler()
