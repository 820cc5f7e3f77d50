"""Driving the app: Locust run headless for the driver (the plan, the process,
what it measured) or with its web UI (``tox -e ui``)."""
