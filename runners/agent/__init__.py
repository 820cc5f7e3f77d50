"""The agent: the server on its own host (``tox -e agent``), and the driver's client of it."""
