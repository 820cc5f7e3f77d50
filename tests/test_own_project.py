"""``--project``: a user's own Django project, served by every family, driven by its own
traffic, checked before it is timed, its data untouched.

The project is the example (``python -m runners.project.example``): ``startproject`` plus
a small app with a template view, a database view and the admin's login page, SQLite,
pinning Django 5.1 (the suite locks 5.2) so that the runs show it was served from its own
environment. Bad input is checked in the fast tier: one line and exit status 2 before any
server starts.

The module shares the machine with other tests (it is not marked ``measures``): its
capacity searches check that every family serves the project, not how fast.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql

from runners.project.example import make

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
SHORT = ("--quick", "--duration", "1.5", "--warmup", "1", "--no-report")


def fingerprint(root: Path) -> str:
    """Every file's path and content under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project and its traffic files (Django 5.1 pinned)."""
    folder = tmp_path_factory.mktemp("own-project")
    make(folder, django="5.1")
    return folder


def bench(out: Path, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for name in ("DATABASE_URL", "REDIS_URL", "CI"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "runners.bench", *args, "--output", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stats_csv(out: Path, run: dict[str, Any]) -> Path:
    """The run's Locust statistics (its artifacts name the files)."""
    name: str = next(p for p in run["artifacts"]["locust_csv"] if p.endswith("_stats.csv"))
    return out / name


def counts(csv_path: Path) -> dict[str, int]:
    with csv_path.open(newline="") as fh:
        return {
            row["Name"]: int(row["Request Count"])
            for row in csv.DictReader(fh)
            if row["Name"] != "Aggregated"
        }


# --- bad input: one line, exit status 2, before any server starts ----------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (lambda e, t: ["--project", str(t)], "not a Django project"),
        (lambda e, t: ["--project", str(e / "mysite")], "say what its users request"),
        (lambda e, t: ["--project", str(e / "mysite"), "--urls", str(t / "empty.txt")], "empty"),
        (
            lambda e, t: ["--project", str(e / "mysite"), "--locustfile", str(t / "bad.py")],
            "bad.py:1: invalid syntax",
        ),
        (
            lambda e, t: ["--project", str(e / "mysite"), "--urls", str(t / "post.txt")],
            "--allow-writes",
        ),
        (lambda e, t: ["--urls", str(e / "urls.txt")], "--urls: belongs to --project"),
        (
            lambda e, t: ["--project", str(e / "mysite"), "--workloads", "json"],
            "--workloads",
        ),
    ],
    ids=[
        "not-a-project",
        "no-traffic",
        "empty-urls",
        "bad-locustfile",
        "post",
        "no-project",
        "workloads",
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(
    example: Path, tmp_path: Path, args: Any, expected: str
) -> None:
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "bad.py").write_text("class Broken(:\n")
    (tmp_path / "post.txt").write_text("1 GET /products/\n1 POST /admin/login/\n")
    done = bench(tmp_path / "out", *args(example, tmp_path), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.slow
def test_settings_that_fail_and_a_missing_callable_stop_before_any_server(
    example: Path, tmp_path: Path
) -> None:
    """Found in the project's environment (built from the uv cache), before serving."""
    project = example / "mysite"
    for extra, expected in (
        (["--settings", "mysite.nosuch"], "mysite.nosuch"),
        (["--wsgi", "mysite.wsgi:nosuch"], "nosuch"),
    ):
        done = bench(
            tmp_path / f"out{len(extra[1])}",
            "--project",
            str(project),
            "--urls",
            str(example / "urls.txt"),
            *extra,
            timeout=300,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr


# --- real runs -------------------------------------------------------------------------------


@pytest.mark.servers
@pytest.mark.slow
def test_every_family_serves_the_project_from_its_own_environment(
    example: Path, tmp_path: Path
) -> None:
    project = example / "mysite"
    before = fingerprint(project)
    database = (project / "db.sqlite3").read_bytes()
    out = tmp_path / "families"
    done = bench(
        out,
        *("--project", str(project), "--urls", str(example / "urls.txt")),
        *("--runners", "gunicorn-sync,gunicorn-gthread,uvicorn", *SHORT),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    info = results["environment"]["project"]
    assert info["name"] == "mysite" and info["django"].startswith("5.1")
    assert info["database"]["kind"] == "copy" and not info["asgi_built"]
    assert len(info["installed_hash"]) == 64
    assert {r["runner"] for r in info["precheck"]} == {
        "gunicorn-sync",
        "gunicorn-gthread",
        "uvicorn",
    }
    runs = results["runs"]
    assert [r["workload"] for r in runs] == ["urls"] * 3
    for run in runs:
        assert run["status"] == "ok", run.get("error")
        assert run["django"].startswith("5.1")  # the project's release, not the suite's
        assert run["capacity"]["rps"] and run["capacity"]["rps"] > 10
        assert run["memory"]["pss_peak_bytes"] > 20 << 20
    # The URL list's weights (3:2:1) in Locust's per-URL counts.
    found = counts(stats_csv(out, runs[0]))
    for name, weight in (("GET /products/", 3), ("GET /api/count/", 2), ("GET /admin/login/", 1)):
        assert_share(found, name, weight / 6)
    # Nothing of the project was written to: its folder and its database are as they were.
    assert fingerprint(project) == before
    assert (project / "db.sqlite3").read_bytes() == database
    assert not left_by_finished_drivers()


def left_by_finished_drivers() -> list[Path]:
    """Work folders (``.data/projects/mysite-<driver pid>``) whose driver has ended (a
    driver of a test beside this one may still be serving from its own)."""
    found = (REPO_ROOT / ".data" / "projects").glob("mysite-*")
    return [p for p in found if not psutil.pid_exists(int(p.name.rpartition("-")[2]))]


def assert_share(found: dict[str, int], name: str, share: float) -> None:
    """``name``'s count is ``share`` of all: each request a weighted random pick, so within
    4 standard deviations of the share (a few hundred picks of 1/6: +-0.08)."""
    total = sum(found.values())
    sigma = (share * (1 - share) / total) ** 0.5
    assert abs(found[name] / total - share) <= 4 * sigma, found


@pytest.mark.servers
@pytest.mark.slow
def test_a_locustfile_and_an_access_log_drive_it_in_their_proportions(
    example: Path, tmp_path: Path
) -> None:
    # A closed loop: the proportions are the point here (the open loop's pacing of a
    # locustfile's tasks is tested against a stub in tests/test_traffic.py).
    out = tmp_path / "sources"
    done = bench(
        out,
        *("--project", str(example / "mysite"), "--runners", "gunicorn-gthread"),
        *("--locustfile", str(example / "locustfile.py")),
        *("--access-log", str(example / "access.log")),
        *("--load", "closed", "--users", "4", "--warmup", "1", "--duration", "3", "--no-report"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    traffic = {t["name"]: t for t in results["environment"]["project"]["traffic"]}
    skipped = traffic["access"]["skipped"]
    assert (skipped["writes"], skipped["unparsed"]) == (1, 1)
    assert traffic["locustfile"]["user_classes"] == ["Shopper"]
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("error")
        found = counts(stats_csv(out, run))
        assert_share(found, next(k for k in found if "/products/" in k), 0.75)


WSGI_ONLY = """
def wsgi_only(get_response):
    def middleware(request):
        # Reads the WSGI environ: a KeyError (HTTP 500) under ASGI.
        request.META["wsgi.version"]
        return get_response(request)
    return middleware
"""


@pytest.mark.servers
def test_a_page_that_fails_only_under_asgi_stops_the_run_before_any_measurement(
    example: Path, tmp_path: Path
) -> None:
    project = tmp_path / "wsgi-only"
    subprocess.run(["cp", "-a", str(example / "mysite"), str(project)], check=True)
    (project / "shop" / "middleware.py").write_text(WSGI_ONLY)
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text().replace(
            "MIDDLEWARE = [", "MIDDLEWARE = [\n    'shop.middleware.wsgi_only',"
        )
    )
    out = tmp_path / "out"
    done = bench(
        out,
        *("--project", str(project), "--urls", str(example / "urls.txt")),
        *("--runners", "gunicorn-gthread,uvicorn", *SHORT),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    problems = [line for line in done.stdout.splitlines() if line.startswith("pre-check:")]
    assert problems and all("uvicorn: HTTP 500" in line for line in problems), done.stdout
    assert any("GET /products/" in line for line in problems)
    results = json.loads((out / "results.json").read_text())
    assert results["runs"] == []
    assert results["environment"]["project"]["precheck_problems"]


@pytest.mark.servers
def test_a_cloned_postgres_database_is_gone_after_an_interrupted_run(
    example: Path, tmp_path: Path
) -> None:
    if not TEST_DATABASE_URL:
        pytest.skip("set TEST_DATABASE_URL (postgres://...) to clone a database")
    name = f"bench_own_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    project = tmp_path / "pg"
    subprocess.run(["cp", "-a", str(example / "mysite"), str(project)], check=True)
    requirements = project / "requirements.txt"
    requirements.write_text(requirements.read_text() + "psycopg[binary]\n")
    url = psycopg.conninfo.conninfo_to_dict(TEST_DATABASE_URL)
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
        f"'NAME': {name!r}, 'HOST': {url.get('host', '127.0.0.1')!r}, "
        f"'PORT': {str(url.get('port', '5432'))!r}, 'USER': {url.get('user', 'postgres')!r}}}}}\n"
    )
    try:
        own = {**os.environ, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
        own.pop("PYTHONPATH", None)
        subprocess.run(
            [sys.executable, "-B", "manage.py", "migrate", "-v0"], cwd=project, env=own, check=True
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runners.bench",
                "--project",
                str(project),
                "--urls",
                str(example / "urls.txt"),
                "--runners",
                "uvicorn",
                *SHORT,
                "--output",
                str(tmp_path / "out"),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert driver.stdout is not None
        for line in driver.stdout:
            if "running" in line:
                break
        time.sleep(2)
        driver.send_signal(signal.SIGINT)
        output = driver.communicate(timeout=60)[0]
        assert driver.returncode == 130, output
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            left = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'bench_scratch_%'"
            ).fetchall()
        assert not left, left
    finally:
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_the_traffic_counts_are_read_from_locusts_csv(tmp_path: Path) -> None:
    path = tmp_path / "x_stats.csv"
    path.write_text("Type,Name,Request Count\nGET,GET /a/,30\nGET,GET /b/,10\n,Aggregated,40\n")
    assert counts(path) == {"GET /a/": 30, "GET /b/": 10}


def test_the_report_names_the_project_and_its_pre_check(tmp_path: Path) -> None:
    """What results.json records of a project is what the report shows."""
    from runners.report.render import render_run
    from tests.test_report import SAMPLE, place

    data = json.loads(SAMPLE.read_text(encoding="utf-8"))
    data["environment"]["project"] = {
        "name": "mysite",
        "path": "/src/mysite",
        "git_commit": "0123456789abcdef",
        "settings": "mysite.settings",
        "wsgi": "mysite.wsgi:application",
        "asgi": None,
        "asgi_built": True,
        "django": "5.1.15",
        "asgiref": "3.13.0",
        "installed_hash": "ab" * 32,
        "dependencies": "requirements.txt",
        "database": {
            "engine": "django.db.backends.sqlite3",
            "kind": "copy",
            "source": "/src/mysite/db.sqlite3",
            "scratch": "/x/db.sqlite3",
        },
        "traffic": [{"name": "urls", "source": "urls", "path": "/src/urls.txt", "requests": 3}],
        "precheck": [
            {
                "runner": "uvicorn",
                "url": "GET /products/",
                "status": 200,
                "size": 413,
                "p50_ms": 5.5,
            }
        ],
        "precheck_problems": ["GET /api/: uvicorn: HTTP 500"],
    }
    html = render_run(place(data, tmp_path / "run")).read_text(encoding="utf-8")
    section = html[html.index('<section id="project">') : html.index('<section id="headline">')]
    for text in (
        "Your project: mysite",
        "/src/mysite",
        "0123456789ab",
        "Django 5.1.15",
        "get_asgi_application()",
        "served from a copy of /src/mysite/db.sqlite3",
        "GET /products/",
        "GET /api/: uvicorn: HTTP 500",
    ):
        assert text in section, text
    assert 'href="#project"' in html
