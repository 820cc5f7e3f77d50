"""What profiling costs a server: requests/s with and without it, under the same load.

``python -m runners.cli.profilecheck [--runners a,b] [--workload json] [--users 16]
[--duration 10] [--warmup 3] [--repeat 3] [--modes plain,memory-profile,py-spy,py-spy-blocking]
[--output DIR]``

For each runner and repeat, every mode runs once, in turn (so drift hits all
modes alike), each on a freshly started server pinned to the server CPUs and
driven by headless Locust on the load-generator CPUs:

``plain``            no profiling
``memory-profile``   tracemalloc in every worker (``runners.sampling.memprofile``)
``py-spy``           py-spy ``--nonblocking`` at 100 Hz over the window, on the
                     load-generator CPUs (``runners.sampling.cpuprofile``)
``py-spy-blocking``  the same, pausing the processes for each sample

Printed per runner and mode: median requests/s of the window, its change
against ``plain``, summed PSS at the end, and Locust's CPU use (py-spy shares
Locust's CPUs: a run near 100 % measured Locust). The flame graphs, Locust
files and server logs stay in ``DIR`` (default a ``reports/profilecheck-*``
folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.window import ProbeCommand
from runners import REPO_ROOT
from runners.cli.memcheck import prepare_small, sqlite_env
from runners.load.locust import LocustPlan, LocustProcess
from runners.sampling import memprofile
from runners.sampling.cpuprofile import CpuProfilePlan, PySpyRecording
from runners.sampling.memory import sample_tree
from runners.serving.cpus import Placement, placement_from
from runners.serving.registry import Runner, get_runner
from runners.serving.server import ServeConfig, serve

MODES = ("plain", "memory-profile", "py-spy", "py-spy-blocking")
MIB = 2**20


def run_once(
    runner: Runner,
    mode: str,
    placement: Placement,
    out: Path,
    data_dir: Path,
    args: argparse.Namespace,
    tag: str,
) -> dict[str, Any]:
    """One server, one Locust window, one mode: requests/s, PSS, Locust CPU."""
    env = sqlite_env(data_dir)
    if mode == "memory-profile":
        env.update(memprofile.server_env(out / f"{tag}.memprofile"))
    config = ServeConfig(
        runner=runner, log_path=out / f"{tag}.server.log", cpus=placement.server, env=env
    )
    with serve(config) as server:
        plan = LocustPlan(
            host=server.url,
            workload=args.workload,
            variant=server.variant,
            out_prefix=out / tag,
            run_time_limit_s=args.warmup + args.duration + 120,
            cpus=placement.loadgen,
        )
        command = ProbeCommand(
            seq=1,
            mode="closed",
            users=args.users,
            warmup_s=args.warmup,
            duration_s=args.duration,
            reset_stats=True,
        )
        with LocustProcess(plan) as locust, contextlib.ExitStack() as stack:

            def profile() -> None:
                if mode.startswith("py-spy"):
                    spy = CpuProfilePlan(
                        server.pid,
                        out / f"{tag}.svg",
                        cpus=placement.loadgen,
                        nonblocking=mode == "py-spy",
                    )
                    stack.enter_context(PySpyRecording(spy))

            window = locust.probe(command, on_start=profile, on_end=stack.close)
            locust.finish()
        pss = sample_tree(server.pid).pss
    return {
        "runner": runner.name,
        "mode": mode,
        "workers": server.workers,
        "rps": window.successes / window.duration_s,
        "failures": window.failures,
        "pss": pss,
        "loadgen_cpu_percent": 100
        * window.loadgen_cpu_seconds
        / window.duration_s
        / max(1, len(placement.loadgen)),
    }


def format_table(rows: Sequence[dict[str, Any]], modes: Sequence[str]) -> str:
    lines = [
        f"{'runner':<22} {'mode':<16} {'req/s (median)':>15} {'vs plain':>9} "
        f"{'runs':>14} {'PSS MiB':>8} {'Locust CPU':>10}"
    ]
    for name in dict.fromkeys(row["runner"] for row in rows):
        base: float | None = None
        for mode in modes:
            mine = [row for row in rows if row["runner"] == name and row["mode"] == mode]
            if not mine:
                continue
            rps = statistics.median(row["rps"] for row in mine)
            base = rps if mode == "plain" else base
            change = f"{(rps / base - 1) * 100:+.1f}%" if base else "-"
            runs = "/".join(f"{row['rps']:.0f}" for row in mine)
            pss = statistics.median(row["pss"] for row in mine) / MIB
            cpu = max(row["loadgen_cpu_percent"] for row in mine)
            lines.append(
                f"{name:<22} {mode:<16} {rps:15.1f} {change:>9} {runs:>14} {pss:8.1f} {cpu:9.0f}%"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runners.cli.profilecheck", description=__doc__)
    parser.add_argument("--runners", default="gunicorn-sync-preload,uvicorn")
    parser.add_argument("--workload", default="json")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--server-cpus")
    parser.add_argument("--loadgen-cpus")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if bad := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode {bad[0]!r} (known: {', '.join(MODES)})")
    try:
        runners = [get_runner(name) for name in args.runners.split(",")]
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    placement = placement_from(args.server_cpus, args.loadgen_cpus)
    out = args.output or REPO_ROOT / "reports" / time.strftime("profilecheck-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    prepare_small(sqlite_env(data_dir))
    print(f"{placement.describe()}; {args.workload} at {args.users} users, {args.duration:g} s")
    rows: list[dict[str, Any]] = []
    for runner in runners:
        for repeat in range(1, args.repeat + 1):
            for mode in modes:
                tag = f"{runner.name}-{mode}-{repeat}"
                row = run_once(runner, mode, placement, out, data_dir, args, tag)
                rows.append(row)
                print(f"  {tag}: {row['rps']:.1f} req/s", flush=True)
    print()
    print(format_table(rows, modes))
    (out / "profilecheck.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
