"""Serving the app: runner records, their command lines, the process
supervisor (spawn, stop, check nothing is left: every child process of the
suite), addresses and plain HTTP (``net``), CPU placement, the ledger of
started processes, and the shims the servers themselves load (``servers/``)."""
