"""The capacity planner: from a worker sweep to the runners and worker counts of a host.

``python -m runners.plan RESULTS_DIR... --cores N --memory SIZE`` (``tox -e
plan``). Modules, by job: ``observe`` (what results.json says: one
observation per measured configuration, and soak growth), ``fit`` (least
squares: the memory line, the capacity law, the growth per 1,000 requests),
``model`` (the best configuration for a host, the two common rules, the
held-out validation, plan.json's document), ``output`` (the console table
and writing plan.json), ``cli`` (options and exit statuses). The report's
"Capacity plan" section (``runners.report.plan``) reads plan.json.
"""
