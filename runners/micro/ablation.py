"""Where the ASGI handler's extra microseconds go: the ablation.

``ASGIHandler`` costs more per request than ``WSGIHandler`` serving the same
view. The benchmarks ``ablation-<part>/minimal/json`` (see
``runners.micro.handlers``) each remove one part; the part's cost is what
the unchanged handler costs more than the handler without it:

=================  ==============================================================
part               measured as
=================  ==============================================================
executor           asgi-async - ablation-no-executor: the per-request thread-sensitive
                   executor (a thread started by the first hop) and its join
signal hop         ablation-no-executor - ablation-sync-signals: ``request_started.asend``
                   hopping its receivers to the (warm, shared) executor's thread
close hop          ablation-no-executor - ablation-inline-close:
                   ``sync_to_async(response.close)`` on that thread
rest               ablation-bare - wsgi-sync: ASGI request object, body file, the
                   disconnect listener task, the event loop's own work
=================  ==============================================================

The hops are removed from the handler without the per-request executor
(``runners.micro.handlers`` says why: with a new thread per request they
interact).

Their sum is checked against the whole (``asgi-async - wsgi-sync``): the
``residual`` is what the one-at-a-time removals do not account for (noise,
or parts that are not independent). Three more rows stand beside them, not
in the sum:

- ``middleware hops``: the default middleware profile's extra ASGI cost over
  the minimal profile's (each ``MiddlewareMixin`` hook runs through
  ``sync_to_async`` under ASGI, on the loop's thread under WSGI);
- ``asyncio instead of uvloop``: the unchanged handler on asyncio's loop
  minus on uvloop (the micro-benchmarks run on uvloop, as the servers do);
- ``database connect``: one connection opened and closed, which ASGI pays per
  request that queries (``CONN_MAX_AGE=0``) and WSGI once per process.

``python -m runners.micro.ablation`` measures the same variants quickly
in-process without pyperf (``--requests``/``--rounds``; median of rounds)
and prints the table (``--json``: the table as JSON). Because it
interleaves the variants round after round, a machine whose speed drifts
(a shared or virtual one) hits them alike; pyperf (``tox -e micro``) runs
one benchmark after another, with its own statistics, and the sentence warns
when its parts miss the whole by more than 15%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Means = Mapping[tuple[str, str, str], float]
"""(handler, profile, view) -> seconds per request."""

PARTS: tuple[tuple[str, str, str, str], ...] = (
    (
        "executor",
        "asgi-async",
        "ablation-no-executor",
        "per-request executor: thread start, join, exit",
    ),
    (
        "signal hop",
        "ablation-no-executor",
        "ablation-sync-signals",
        "request_started.asend hop to the thread",
    ),
    (
        "close hop",
        "ablation-no-executor",
        "ablation-inline-close",
        "sync_to_async(response.close) hop",
    ),
)
"""(part, the handler with it, the same handler without it, what it is)."""

REST = ("rest", "ablation-bare", "ASGI request, body file, disconnect task, event loop")


@dataclass(frozen=True)
class Part:
    """One row of the ablation table (microseconds per request)."""

    part: str
    us: float
    what: str
    in_sum: bool = True


@dataclass(frozen=True)
class AblationBreakdown:
    """The ASGI extra cost (``total_us``) and its parts; ``residual_us`` = total - sum."""

    view: str
    profile: str
    wsgi_us: float
    asgi_us: float
    total_us: float
    parts: tuple[Part, ...]
    sum_us: float
    residual_us: float
    extra: tuple[Part, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def breakdown(
    means: Means, view: str = "json", profile: str = "minimal"
) -> AblationBreakdown | None:
    """The ablation table from per-benchmark means (None without the needed benchmarks)."""

    def us(handler: str, prof: str = profile, v: str = view) -> float | None:
        value = means.get((handler, prof, v))
        return None if value is None else value * 1e6

    wsgi, asgi = us("wsgi-sync"), us("asgi-async")
    if wsgi is None or asgi is None:
        return None
    parts: list[Part] = []
    for name, with_it, without, what in PARTS:
        have, other = us(with_it), us(without)
        if have is None or other is None:
            return None
        parts.append(Part(name, have - other, what))
    bare = us(REST[1])
    if bare is None:
        return None
    parts.append(Part(REST[0], bare - wsgi, REST[2]))
    total = asgi - wsgi
    total_sum = sum(p.us for p in parts)
    extra: list[Part] = []
    wsgi_default, asgi_default = us("wsgi-sync", "default"), us("asgi-async", "default")
    if wsgi_default is not None and asgi_default is not None and profile != "default":
        extra.append(
            Part(
                "middleware hops",
                (asgi_default - wsgi_default) - total,
                "default middleware profile's ASGI extra minus the minimal one's",
                in_sum=False,
            )
        )
    asyncio_us = us("ablation-asyncio")
    if asyncio_us is not None:
        extra.append(
            Part(
                "asyncio instead of uvloop",
                asyncio_us - asgi,
                "the same handler on asyncio's loop minus on uvloop",
                in_sum=False,
            )
        )
    connect = us("db-connect", v="db")
    if connect is not None:
        extra.append(
            Part(
                "database connect",
                connect,
                "open + close one connection: per querying request under ASGI",
                in_sum=False,
            )
        )
    return AblationBreakdown(
        view=view,
        profile=profile,
        wsgi_us=wsgi,
        asgi_us=asgi,
        total_us=total,
        parts=tuple(parts),
        sum_us=total_sum,
        residual_us=total - total_sum,
        extra=tuple(extra),
    )


def means_from_rows(rows: Sequence[Mapping[str, Any]], key: str = "mean_s") -> dict[Any, float]:
    """``runners.micro.summary.summarize`` rows -> ``Means`` (``key``: mean_s or median_s)."""
    return {(r["handler"], r["profile"], r["view"]): float(r[key]) for r in rows}


def format_breakdown(table: AblationBreakdown) -> list[str]:
    """The table as text lines."""
    lines = [
        f"ASGI extra cost on {table.view} ({table.profile} middleware): "
        f"{table.asgi_us:.1f} - {table.wsgi_us:.1f} = {table.total_us:.1f} us per request",
        f"{'part':<26} {'us':>8} {'share':>6}  what",
    ]
    for p in table.parts:
        share = f"{p.us / table.total_us:>6.0%}" if table.total_us else "     -"
        lines.append(f"{p.part:<26} {p.us:>8.1f} {share}  {p.what}")
    lines.append(f"{'sum of parts':<26} {table.sum_us:>8.1f}")
    lines.append(f"{'residual (total - sum)':<26} {table.residual_us:>+8.1f}")
    for p in table.extra:
        lines.append(f"{p.part:<26} {p.us:>+8.1f}         {p.what}")
    return lines


RESIDUAL_WARNING = 0.15
"""A residual above this share of the whole makes :func:`sentence` warn."""


def residual_warning(table: AblationBreakdown, sequential: bool = True) -> str | None:
    """Why the parts do not add up, when they miss the whole by more than 15%
    (``sequential``: the variants were measured one after another, as pyperf does)."""
    if not table.total_us or abs(table.residual_us) <= RESIDUAL_WARNING * abs(table.total_us):
        return None
    share = table.residual_us / table.total_us
    if not sequential:
        return f"The parts miss the whole by {share:+.0%}: noise, or parts that interact."
    return (
        f"The parts miss the whole by {share:+.0%}: the benchmarks ran one after another, "
        "so the machine's speed may have drifted between them; "
        "python -m runners.micro.ablation runs the variants interleaved."
    )


def sentence(table: AblationBreakdown, sequential: bool = True) -> str:
    """One sentence: where the microseconds go (and a warning if the parts miss the whole;
    ``sequential`` as for :func:`residual_warning`)."""
    ranked = sorted(table.parts, key=lambda p: p.us, reverse=True)
    named = ", ".join(f"{p.part} {p.us:.0f} µs" for p in ranked)
    text = (
        f"On {table.view} with the {table.profile} middleware, Django's ASGI handler costs "
        f"{table.total_us:.0f} µs more per request than its WSGI handler: {named} "
        f"(the parts add up to {table.sum_us:.0f} µs)"
    )
    hops = next((p for p in table.extra if p.part == "middleware hops"), None)
    if hops is not None:
        text += f"; the default middleware adds {hops.us:.0f} µs of hops on top"
    warning = residual_warning(table, sequential)
    return f"{text}. {warning}" if warning else text + "."


# --- the quick in-process measurement ----------------------------------------------


VARIANTS = ("wsgi-sync", "asgi-async", *(p[2] for p in PARTS), REST[1])


def measure(requests: int = 300, rounds: int = 5) -> dict[str, float]:
    """Seconds per request of each variant on ``json`` (minimal), median of ``rounds``.

    The variants run interleaved, round after round, so that drift hits them
    alike. Django must not be set up yet in this process (it is set up here
    for ASGI, the minimal profile).
    """
    from runners.micro import benchmarks as micro

    micro.setup_django("minimal", "asgi")
    funcs: dict[str, Callable[[int], float]] = {}
    for handler in VARIANTS:
        spec = micro.Spec(handler, "minimal", "json")  # type: ignore[arg-type]
        prepared = micro.build(spec)
        funcs[handler] = (
            _sync_timer(prepared.func)
            if spec.loop is None
            else _async_timer(prepared.func, micro.loop_factory(spec.loop))
        )
    samples: dict[str, list[float]] = {h: [] for h in funcs}
    for _ in range(rounds):
        for handler, timer in funcs.items():
            samples[handler].append(timer(requests) / requests)
    return {h: statistics.median(xs) for h, xs in samples.items()}


def _sync_timer(func: Callable[[], Any]) -> Callable[[int], float]:
    def timer(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            func()
        return time.perf_counter() - began

    return timer


def _async_timer(
    func: Callable[[], Awaitable[Any]],
    factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> Callable[[int], float]:
    async def loop(n: int) -> float:
        began = time.perf_counter()
        for _ in range(n):
            await func()
        return time.perf_counter() - began

    def timer(n: int) -> float:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(loop(n))

    return timer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runners.micro.ablation",
        description="A quick in-process ablation of the ASGI handler's extra cost on json "
        "(tox -e micro gives pyperf's figures of the same variants).",
    )
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is kept)")
    parser.add_argument("--data-dir", metavar="DIR", help="BENCH_DATA_DIR for the settings")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="S",
        help="sys.setswitchinterval(S) first (default 0.005): how long a thread that wants "
        "the GIL waits for a running one to hand it over",
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be at least 1")
    if args.data_dir:
        os.environ["BENCH_DATA_DIR"] = os.path.abspath(args.data_dir)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    seconds = measure(args.requests, args.rounds)
    table = breakdown({(h, "minimal", "json"): s for h, s in seconds.items()})
    assert table is not None  # every variant was measured
    if args.json:
        print(json.dumps(table.as_dict(), indent=1))
    else:
        print("\n".join(format_breakdown(table)))
        print(sentence(table, sequential=False))  # measure() interleaves the variants
    return 0


if __name__ == "__main__":
    sys.exit(main())
