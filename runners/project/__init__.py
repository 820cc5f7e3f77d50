"""A user's own Django project as the subject (``tox -e bench -- --project PATH``).

Four steps, each a module, each failing with one line (``ProjectError``) before the
next begins:

``layout.find_project``
    Which folder, which settings module: read from ``manage.py`` as text (its
    ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)``), never executed.
``environment.project_environment``
    A virtual environment in ``.data/venvs/`` with the project's own requirements
    (``--requirements``, its ``uv.lock``, its ``pyproject.toml`` or its
    ``requirements.txt``) and the suite's servers at their locked releases, built by uv
    and reused while the dependency files and the interpreter are unchanged.
``inspect.inspect_project``
    What the project is, as its own interpreter sees it: the WSGI and ASGI entry
    points, the default database (never its password), Django and asgiref releases,
    its git commit. The probe (``probe.py``) never opens a database connection.
``data.isolate``
    What the servers run against: a settings module of the suite's, outside the
    project, that serves a copy of an SQLite file or a clone of a PostgreSQL database
    (dropped at the end, or by the next driver after a ``kill -9``).

Nothing is written into the project's folder and the user's own environment is never
touched: builds, probes and copies happen under ``.data/``.
"""
