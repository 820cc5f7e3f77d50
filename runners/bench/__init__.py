"""The benchmark driver: runners x workloads (x worker counts, interpreters, gc modes,
repeats) -> results.json and the HTML report.

    tox -e bench -- [options]            python -m runners.bench [options]

One results folder per invocation (default ``reports/<UTC timestamp>/``):
``results.json`` (schema: ``runners/results/schema.json``), the HTML report
(``index.html``) and, under ``runs/``, every run's Locust HTML report, CSV
files, Locust log and server log, named after the run's id.

How an invocation goes (``main.py``): connect to the agent if there is one, build
the interpreters' environments, prepare the database, start the upstream service,
walk the matrix (``matrix.py``: repeat-major, so slow drifts of a shared machine
spread over the cells), then summarise and write the report.

How a run goes (``run.py``, one runner x workload x settings x repeat):

1. a fresh server is started for the run (``runners.hosting``: here, pinned to the
   server CPUs, or on the agent's host) and stopped after it, so no memory, cache
   or connection carries over from one run to the next;
2. one Locust process (or a distributed master and workers) is started, pinned to
   the load-generator CPUs, with the probes plugin (``loadtests/probes.py``);
3. ``measure.py`` asks it for measured windows (``probing.py``, each from an idle
   server): by default the open-loop capacity
   search (``capacity.py``: a saturation probe, probes stepping up and down, a
   confirmation window whose figures are the run's); with ``--load closed`` one
   window of a fixed user count; with ``--soak`` one long closed-loop window. The
   warm-up is served, never measured; over each window the server's CPUs and, for
   the measured one, its memory (PSS) are sampled;
4. the run's record (``runners/results/record.py``) is appended and results.json is
   rewritten, so an interrupted matrix keeps every finished run. A run whose server
   does not start or dies is recorded as ``failed`` with the error and the log's
   tail, and the matrix goes on.

Faults: a server whose root dies mid-run ends its run at once (``failed``); a worker
that dies and is replaced marks the run ``worker-restarted``; a request with no
answer within ``--request-timeout`` fails (``timeouts``). Ctrl-C, SIGTERM or SIGHUP
stops Locust, the server and the upstream (``runners/cli/signals.py``), keeps every
finished run, writes the report and exits 130. Every process tree the driver starts
is listed in ``.data/running/<driver pid>.json`` (``runners/serving/ledger.py``);
the next invocation stops what a driver killed with ``kill -9`` left behind.

Exit status: 0 when every run succeeded, 1 when some run failed, 2 for a bad
option (one line on stderr), 130 when interrupted.
"""
