"""``tox -e serve -- RUNNER --project PATH`` and ``tox -e ui -- RUNNER --project PATH
--urls FILE``: a user's own Django project served in the foreground, and driven from
Locust's web UI with its own traffic.

The real sessions serve the example project (``runners.project.example``: startproject,
a shop app, an SQLite database of 200 products) from its own environment (built into a
``BENCH_VENVS_DIR`` of this module's), stop on SIGINT as on Ctrl-C, and leave no process,
no work folder under ``.data/projects/`` and the project's files byte-identical. Bad
input is checked in the fast tier: one line, exit status 2, nothing started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from runners import REPO_ROOT
from runners.cli import serve, ui, ui_options
from runners.project.example import make
from runners.project.serving import PROJECTS_DIR
from runners.serving.net import free_port, http_get
from tests.servers import assert_no_processes
from tests.test_own_project import fingerprint
from tests.test_ui import UiSession, _fake_server, process_tree, stopped_at_exit

MANAGE_PY = (
    "import os\n"
    "import sys\n\n"
    "if __name__ == '__main__':\n"
    "    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'shop.settings')\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder that looks like a Django project to ``find_project`` (which reads it and
    runs nothing), with a URL list and a locustfile beside it."""
    root = tmp_path / "shop"
    (root / "shop").mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE_PY)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "settings.py").write_text("SECRET_KEY = 'x'\n")
    (tmp_path / "urls.txt").write_text("3 GET /products/\n1 GET /api/count/\n")
    (tmp_path / "shopper.py").write_text(
        "from locust import HttpUser, task\n\n\n"
        "class Shopper(HttpUser):\n"
        "    @task\n"
        "    def browse(self):\n"
        "        self.client.get('/products/')\n"
    )
    return root


# --- bad input: one line, exit status 2, before anything starts -------------------------------


SERVE = (serve.main, "serve: error: ")
UI = (ui.main, "python -m runners.cli.ui: error: ")

BAD_INPUT = [
    (SERVE, ["--project", "{tmp}"], "is not a Django project: no manage.py in it"),
    (SERVE, ["--project", "{project}", "--variant", "sync"], "--project: --variant (the built-in"),
    (SERVE, ["--project", "{project}", "--middleware", "default"], "--project: --middleware"),
    (SERVE, ["--project", "{project}", "--with-upstream"], "--project: --with-upstream"),
    (SERVE, ["--project", "{project}", "--no-prepare"], "--project: --no-prepare"),
    (SERVE, ["--project", "{project}", "--health", "products"], "--health products: a path"),
    (SERVE, ["--wsgi", "shop.wsgi:application"], "--wsgi: belongs to --project PATH"),
    (SERVE, ["--database-as-is"], "--database-as-is: belongs to --project PATH"),
    (UI, ["--project", "{tmp}", "--urls", "{urls}"], "is not a Django project: no manage.py"),
    (UI, ["--project", "{project}", "--urls", "{urls}", "--variant", "sync"], "--variant"),
    (UI, ["--project", "{project}", "--urls", "{urls}", "--workload", "json"], "--workload"),
    (UI, ["--project", "{project}", "--urls", "{urls}", "--seed", "users=5"], "--seed"),
    (UI, ["--project", "{project}", "--urls", "{urls}", "--upstream-ms", "5"], "--upstream-ms"),
    (UI, ["--project", "{project}"], "--project: say what its users request: --urls FILE"),
    (
        UI,
        ["--project", "{project}", "--urls", "{urls}", "--locustfile", "{locustfile}"],
        "--project: the UI drives one traffic source",
    ),
    (UI, ["--project", "{project}", "--urls", "{tmp}/nope.txt"], "nope.txt"),
    (UI, ["--urls", "{urls}"], "--urls: belongs to --project PATH"),
    (UI, ["--settings", "shop.settings"], "--settings: belongs to --project PATH"),
]


@pytest.mark.parametrize(("entry", "args", "message"), BAD_INPUT)
def test_bad_project_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    project: Path,
    entry: tuple[Callable[[list[str]], int], str],
    args: list[str],
    message: str,
) -> None:
    main, prefix = entry
    names = {
        "tmp": tmp_path,
        "project": project,
        "urls": tmp_path / "urls.txt",
        "locustfile": tmp_path / "shopper.py",
    }
    assert main(["gunicorn-sync", *(a.format(**names) for a in args)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(prefix), err
    assert message in err


def test_the_ui_drives_a_url_list_through_traffic_user(tmp_path: Path, project: Path) -> None:
    options = ui_options.parse_options(
        ["gunicorn-sync", "--project", str(project), "--urls", str(tmp_path / "urls.txt")]
    )
    assert options is not None and options.project is not None
    assert options.project.layout.settings == "shop.settings"
    assert not options.needs_upstream
    traffic_file = ui.write_traffic(options, tmp_path / "logs")
    assert traffic_file == tmp_path / "logs" / "ui-gunicorn-sync.urls.json"
    assert '"/api/count/"' in traffic_file.read_text()
    argv = ui.locust_command(options, _fake_server(), traffic_file)
    files = argv[argv.index("-f") + 1].split(",")
    assert [Path(f).name for f in files] == ["trafficfile.py", "ui_memory.py"]
    assert argv[argv.index("--traffic") + 1] == str(traffic_file)
    assert argv[-1] == "TrafficUser"
    # The built-in workloads' options are not Locust's here: it would refuse them.
    for flag in ("--variant", "--upstream-ms", "--max-user-id", "--class-picker"):
        assert flag not in argv
    assert argv[argv.index("--server-pid") + 1] == "4242"


def test_the_ui_runs_a_users_locustfile_with_the_pacing_plugin(
    tmp_path: Path, project: Path
) -> None:
    locustfile = tmp_path / "shopper.py"
    options = ui_options.parse_options(
        ["uvicorn", "--project", str(project), "--locustfile", str(locustfile), "--", "-t", "1m"]
    )
    assert options is not None
    assert ui.write_traffic(options, tmp_path / "logs") is None
    argv = ui.locust_command(options, _fake_server())
    files = argv[argv.index("-f") + 1].split(",")
    assert files[0] == str(locustfile.resolve())
    assert [Path(f).name for f in files[1:]] == ["userfile.py", "ui_memory.py"]
    assert argv[-3:] == ["Shopper", "-t", "1m"]
    assert "--traffic" not in argv


# --- real sessions on the example project -----------------------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project (``mysite``) and its traffic files."""
    folder = tmp_path_factory.mktemp("example")
    make(folder)
    return folder


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the example's environment is built, once for this module's sessions."""
    return tmp_path_factory.mktemp("venvs")


def command_env(tmp_path: Path, venvs: Path) -> dict[str, str]:
    """The commands' environment: a ledger folder of the test's own, the module's
    environments, and none of pytest-django's settings or the suite's databases."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
        "BENCH_RUNNING_DIR": str(tmp_path / "running"),
        "BENCH_VENVS_DIR": str(venvs),
    }
    for name in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"):
        env.pop(name, None)
    return env


@contextmanager
def command(
    module: str, args: Sequence[str], env: dict[str, str], out: Path
) -> Iterator[subprocess.Popen[str]]:
    """``python -m MODULE ARGS`` with its output in ``out``; on exit, interrupted if it
    still runs, and nothing it started may be left."""
    with out.open("w") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            text=True,
        )
    with stopped_at_exit(process):
        yield process


def wait_for_text(process: subprocess.Popen[str], out: Path, text: str, timeout: float) -> str:
    """The output once it holds ``text`` (the test fails if the command ends first)."""
    deadline = time.monotonic() + timeout
    while True:
        output = out.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None:
            pytest.fail(f"the command exited with {process.returncode}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {timeout:g}s:\n{output}")
        time.sleep(0.3)


def work_folder(process: subprocess.Popen[str]) -> Path:
    return PROJECTS_DIR / f"mysite-{process.pid}"


def assert_left_nothing(
    process: subprocess.Popen[str], pids: set[int], tmp_path: Path, root: Path, before: str
) -> None:
    """No process of the session, no work folder, no ledger, the project's files as they
    were (``before``: their fingerprint)."""
    assert_no_processes(pids)
    assert not work_folder(process).exists()
    assert not list((tmp_path / "running").glob("*.json"))
    assert fingerprint(root) == before


@pytest.mark.servers
@pytest.mark.slow
def test_serve_serves_the_project_until_sigint_and_leaves_nothing(
    tmp_path: Path, example: Path, venvs: Path
) -> None:
    root = example / "mysite"
    before = fingerprint(root)
    out = tmp_path / "serve.out"
    args = ["gunicorn-sync", "--project", str(root), "--port", "0", "--workers", "2"]
    args += ["--log", str(tmp_path / "server.log"), "--quiet"]
    with command("runners.cli.serve", args, command_env(tmp_path, venvs), out) as process:
        banner = wait_for_text(process, out, "Ctrl-C to stop.", timeout=240)
        found = re.search(r"serving mysite on http://127\.0\.0\.1:(\d+)", banner)
        assert found is not None, banner
        assert "settings mysite.settings" in banner
        assert "app:      WSGI mysite.wsgi:application" in banner
        assert f"a copy of {root / 'db.sqlite3'} at {work_folder(process)}/" in banner
        assert "preparing the database" not in banner  # no migrate or seed for a project

        status, body = http_get("127.0.0.1", int(found.group(1)), "/products/", timeout=30.0)
        assert status == 200, body[:300]
        assert b"<h1>Products</h1>" in body and b"<li>product 23: 23.00</li>" in body
        pids = process_tree(process.pid)
        assert len(pids) >= 4  # serve, the gunicorn master and its two workers
        assert work_folder(process).is_dir()

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0, out.read_text()
    output = out.read_text()
    assert "gunicorn-sync stopped; no process left." in output
    assert_left_nothing(process, pids, tmp_path, root, before)


@pytest.mark.servers
@pytest.mark.slow
def test_ui_drives_the_project_with_its_url_list(
    tmp_path: Path, example: Path, venvs: Path
) -> None:
    root = example / "mysite"
    before = fingerprint(root)
    server_port, web_port = free_port(), free_port()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    args = ["gunicorn-sync", "--project", str(root), "--urls", str(example / "urls.txt")]
    args += ["--port", str(server_port), "--web-port", str(web_port), "--workers", "1"]
    args += ["--log-dir", str(log_dir), "--quiet"]
    env = command_env(tmp_path, venvs)
    with command("runners.cli.ui", args, env, log_dir / "ui.out") as process:
        session = UiSession(process, server_port, web_port, log_dir)
        session.wait_for_ui(timeout=240)
        output = session.output()
        assert "traffic:  " in output and "(urls: 3 request(s) by weight, TrafficUser)" in output
        assert "app:      WSGI mysite.wsgi:application" in output
        assert (log_dir / "ui-gunicorn-sync.urls.json").is_file()

        session.swarm(2)
        names = {"GET /products/", "GET /api/count/", "GET /admin/login/"}
        deadline = time.monotonic() + 60
        while True:
            stats: dict[str, Any] = session.get_json("/stats/requests")
            counts = {row["name"]: row for row in stats["stats"] if row["name"] != "Aggregated"}
            if names <= set(counts) and all(counts[n]["num_requests"] >= 3 for n in names):
                break
            assert time.monotonic() < deadline, (counts, session.output())
            time.sleep(0.5)
        assert set(counts) == names
        assert all(row["num_failures"] == 0 and row["method"] == "GET" for row in counts.values())
        memory = session.get_json("/memory")
        assert memory["error"] is None and memory["expected_processes"] == 2
        assert memory["pss"] > 0
        pids = session.tree()

        assert session.post_form("/stop", [])["success"]
        assert session.interrupt() == 0, session.output()
    assert "Locust and the server stopped; no process left." in session.output()
    assert_left_nothing(process, pids, tmp_path, root, before)
