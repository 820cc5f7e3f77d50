"""pyperf micro-benchmarks of Django's request path, in-process (``tox -e micro``)."""
