"""The run record and results.json, typed, with one home for each part.

``record`` (a run and its parts, and the derived figures), ``document`` (the
file: environment, matrix, runs, cells, runtimes; reading and writing it),
``cells`` (the one aggregation of a cell's repeats), ``flags`` (every flag, its
threshold, note, help and rank), ``figures`` (per GiB, per CPU-second),
``schema`` (the validator of ``schema.json``), ``codec`` (records to and from
JSON) and ``environment`` (what the benchmark ran on).
"""
