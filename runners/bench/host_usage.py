"""What else used the host during a measured window: other programs on the run's CPUs
(``interference``) and a local database (``database``), as run-record parts.

The readings are ``runners.sampling.interference``'s; this turns two of its marks
(the window's edges) into the records ``results.json`` carries.
"""

from __future__ import annotations

from runners.bench.options import Options
from runners.results.record import DatabaseUsage, Interference
from runners.sampling import interference


def interference_record(
    before: interference.Mark, after: interference.Mark, options: Options
) -> Interference | None:
    """Other processes' CPU time on the server's and the load generator's CPUs over the
    window (None: not measurable, e.g. no CPU counters)."""
    placement = options.placement
    found = interference.others(before, after, placement.server, placement.loadgen)
    if found is None:
        return None
    return Interference(
        server_cpu_seconds=round(found.server_cpu_seconds, 3),
        loadgen_cpu_seconds=round(found.loadgen_cpu_seconds, 3),
        share=round(found.share, 4),
        server_share=round(found.server_share, 4),
        loadgen_share=round(found.loadgen_share, 4),
        unpinned_cpu_seconds=round(found.unpinned_cpu_seconds, 3),
    )


def database_record(
    before: interference.Mark,
    after: interference.Mark,
    memory: interference.DatabaseMemory | None,
    options: Options,
) -> DatabaseUsage | None:
    """The local database's figures over the window (None: no local database watched)."""
    if before.database is None or after.database is None:
        return None
    cpus = memory.cpus if memory is not None else None
    return DatabaseUsage(
        cpu_seconds=round(max(0.0, after.database - before.database), 3),
        pss_bytes=memory.pss_bytes if memory is not None else None,
        processes=memory.processes if memory is not None else None,
        cpus=cpus,
        # Not pinned (or pinned over the server's CPUs): the scheduler puts it anywhere.
        shares_server_cpus=cpus is None or bool(set(cpus) & set(options.placement.server)),
    )
