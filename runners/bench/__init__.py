"""The benchmark driver: runners x workloads x concurrency levels -> results.json.

    tox -e bench -- [options]            python -m runners.bench [options]

One results folder per invocation (default ``reports/<UTC timestamp>/``):
``results.json`` (schema: ``runners/results/schema.json``), the HTML report
(``index.html``) and, under ``runs/``, every run's Locust HTML report, CSV
files, Locust log and server log, named ``<runner>-<workload>-u<users>-r<repeat>``.

How a run goes (one run = one runner x workload x users x repeat):

1. a fresh server is started for the run, pinned to the server CPUs, and
   stopped after it (no carry-over of memory, caches or connections from one
   run to the next; repeats are independent), which costs a few seconds of
   start-up per run;
2. Locust runs headless as a subprocess pinned to the load-generator CPUs,
   closed-loop at a fixed user count, spawning all users within a second;
3. the warm-up is served but not measured: ``loadtests/measure.py`` resets
   Locust's statistics once all users have spawned and the warm-up has
   passed, and tells the driver, which starts sampling the server's process
   tree (PSS/USS/RSS per process, CPU) right then; at the end of the window
   the plugin stops every user and the driver stops sampling;
4. the run's record (figures defined in ``runners/results/record.py``) is appended
   and results.json is rewritten, so an interrupted matrix keeps every
   finished run. A run whose server does not start or dies is recorded as
   ``failed`` with the error and the log's tail, and the matrix goes on.

The matrix is walked repeat-major (every cell once, then every cell again),
so slow drifts of a shared machine spread over the cells instead of hitting
one. The database is prepared once per invocation; the upstream service (for
``upstream`` and ``mixed``) runs once per invocation on the load-generator
CPUs.

Faults: a server whose root dies mid-run ends its run at once (``failed``,
"the server died during the run (killed by SIGKILL)", with the log's tail); a
worker that dies and is replaced marks the run ``worker-restarted`` (recovered);
a request with no answer within ``--request-timeout`` fails (``timeouts``).
Ctrl-C, SIGTERM or SIGHUP stops Locust, the server and the upstream (later
signals are ignored until that is done, ``runners/cli/signals.py``), keeps
every finished run, writes the report and exits 130. Every process tree the
driver starts is listed in ``.data/running/<driver pid>.json``
(``runners/serving/ledger.py``); the next invocation stops what a driver
killed with ``kill -9`` left behind.

Exit status: 0 when every run succeeded, 1 when some run failed, 2 for a bad
option (one line on stderr), 130 when interrupted.
"""
