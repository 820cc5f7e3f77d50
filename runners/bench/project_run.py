"""A user's Django project through the driver: its environments, what the servers serve,
its traffic files for Locust, and what results.json records of it.

The steps (``runners.bench.main``): ``project_runtimes`` builds (or reuses) the project's
environment per interpreter, the suite's servers beside its own pins
(``runners.project.environment``); ``runners.project.serving.serve_project`` isolates its
data for the invocation (an SQLite copy, a PostgreSQL clone, dropped at the end), which
gives the ``Subject`` every run serves; ``traffic_files``
writes each workload's requests for Locust with the status the pre-check saw as the
expected one; ``project_record`` is the environment block's ``project``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from loadtests.traffic import Traffic
from runners.bench.options import Options
from runners.bench.precheck import PrecheckResult
from runners.bench.project_options import ProjectOptions
from runners.project.environment import ProjectEnv, project_environment
from runners.project.serving import ServedProject
from runners.results.document import (
    PrecheckReading,
    ProjectDatabase,
    ProjectInfo,
    TrafficSource,
)
from runners.runtimes.axes import RuntimeKey
from runners.runtimes.interpreters import Interpreter, current_interpreter
from runners.runtimes.releases import PACKAGES
from runners.runtimes.venvs import Runtime


def project_runtimes(
    options: Options, say: Callable[[str], None]
) -> tuple[dict[RuntimeKey, Runtime], dict[RuntimeKey, ProjectEnv]]:
    """The project's environment on each interpreter of ``--python`` (default: this one),
    as the matrix's runtimes; ``ProjectError`` when one cannot be built."""
    project = options.project
    assert project is not None
    choices: Sequence[Interpreter | None] = options.pythons or (None,)
    runtimes: dict[RuntimeKey, Runtime] = {}
    envs: dict[RuntimeKey, ProjectEnv] = {}
    for python in choices:
        interp = python or current_interpreter()
        say(f"Project environment for {interp.label} ({project.layout.name})...")
        env = project_environment(project.layout, project.requirements, interp.path, say)
        key = (python.path if python is not None else None, None)
        envs[key] = env
        runtimes[key] = Runtime(
            interpreter=interp,
            python=env.python,
            django=env.django,
            venv=env.venv,
            packages=tuple((name, env.packages.get(name)) for name in PACKAGES),
        )
    return runtimes, envs


def expected(traffic: Traffic, statuses: Mapping[str, int]) -> Traffic:
    """``traffic`` with the status each request answered on the idle servers as the one
    that counts as a success (where the file did not say)."""
    entries = tuple(
        entry
        if entry.expect_status is not None
        else dataclasses.replace(entry, expect_status=statuses.get(f"{entry.method} {entry.path}"))
        for entry in traffic.entries
    )
    return dataclasses.replace(traffic, entries=entries)


def traffic_files(
    project: ProjectOptions, out_dir: Path, statuses: Mapping[str, int]
) -> dict[str, Path]:
    """Each URL-list or access-log workload written for Locust's ``TrafficUser``."""
    folder = out_dir / "traffic"
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for traffic in project.traffic:
        if traffic.source == "locustfile":
            continue
        path = folder / f"{traffic.name}.json"
        expected(traffic, statuses).write(path)
        written[traffic.name] = path
    return written


def project_record(
    served: ServedProject, project: ProjectOptions, precheck: PrecheckResult | None
) -> ProjectInfo:
    """results.json's ``environment.project``."""
    facts, database = served.facts, served.isolation.database
    return ProjectInfo(
        name=project.layout.name,
        path=str(project.layout.root),
        git_commit=facts.git_commit,
        settings=facts.settings,
        wsgi=facts.wsgi,
        asgi=facts.asgi,
        asgi_built=facts.asgi is None,
        django=facts.django,
        asgiref=facts.asgiref,
        installed_hash=facts.installed_hash,
        dependencies=served.env.source,
        database=ProjectDatabase(
            engine=database.engine,
            kind=database.kind,
            source=database.source,
            scratch=database.scratch,
        ),
        traffic=tuple(
            TrafficSource(
                name=traffic.name,
                source=traffic.source,
                path=str(path),
                requests=len(traffic.entries),
                user_classes=traffic.user_classes,
                skipped=dict(traffic.skipped) or None,
            )
            for traffic, path in zip(project.traffic, project.files, strict=True)
        ),
        precheck=project_readings(precheck) if precheck is not None else (),
        precheck_problems=precheck.problems if precheck is not None else (),
    )


def project_readings(precheck: PrecheckResult) -> tuple[PrecheckReading, ...]:
    """The pre-check's readings as results.json records them."""
    return tuple(
        PrecheckReading(
            runner=r.runner,
            url=r.url,
            status=r.status,
            size=r.size,
            p50_ms=round(r.p50_ms, 3) if r.p50_ms is not None else None,
            error=r.error,
        )
        for r in precheck.readings
    )
