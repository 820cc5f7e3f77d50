"""runners.micro.benchmarks: the pyperf micro-benchmarks of Django's request path."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyperf
import pytest

from runners.micro import benchmarks as micro
from runners.micro import cli as micro_cli
from runners.micro import summary as micro_summary

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN = {
    f"{handler}/{profile}/{view}"
    for handler in ("wsgi-sync", "asgi-async", "asgi-sync")
    for profile in ("minimal", "default")
    for view in ("json", "fortunes", "feed")
}
ABLATION = {
    f"ablation-{part}/minimal/json"
    for part in ("no-executor", "sync-signals", "inline-close", "bare", "asyncio")
}
EXPECTED = MAIN | ABLATION | {"db-connect/minimal/db"}
SMALL_SEED = [
    *("--users", "30", "--follows", "5", "--posts", "300"),
    *("--likes", "600", "--comments", "300"),
]


def _env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["BENCH_DATA_DIR"] = str(data_dir)
    env.pop("DATABASE_URL", None)
    env.pop("BENCH_MIDDLEWARE", None)
    return env


# --- the matrix ----------------------------------------------------------------


def test_matrix_has_every_combination_once() -> None:
    specs = micro.all_specs()
    assert {s.name for s in specs} == EXPECTED
    assert len(specs) == len(EXPECTED) == 18 + 6
    assert {s.name for s in micro.main_specs()} == MAIN


def test_paths_follow_the_url_layout() -> None:
    assert micro.Spec("wsgi-sync", "minimal", "json").path == "/sync/json"
    assert micro.Spec("asgi-async", "default", "fortunes").path == "/async/fortunes"
    assert micro.Spec("asgi-sync", "minimal", "feed").path == f"/sync/feed/{micro.FEED_USER_ID}"
    assert micro.Spec("asgi-sync", "minimal", "feed").interface == "asgi"
    assert micro.Spec("asgi-sync", "minimal", "feed").variant == "sync"


def test_select_specs_by_glob() -> None:
    names = {s.name for s in micro.select_specs("*/minimal/json, asgi-async/*/feed")}
    assert (
        names
        == {
            "wsgi-sync/minimal/json",
            "asgi-async/minimal/json",
            "asgi-sync/minimal/json",
            "asgi-async/minimal/feed",
            "asgi-async/default/feed",
        }
        | ABLATION
    )
    assert micro.select_specs(None) == micro.all_specs()
    assert micro.select_specs("nothing/*") == []


def test_worker_command_keeps_own_options() -> None:
    cmd: list[str] = []
    args = argparse.Namespace(benchmarks="*/json", data_dir="/tmp/x")
    micro_cli._worker_args(cmd, args)
    assert cmd == ["--benchmarks", "*/json", "--data-dir", "/tmp/x"]


def test_default_output_is_a_new_run_folder() -> None:
    path = micro.default_output(0)
    assert path == REPO_ROOT / "reports" / "19700101-000000" / "micro.json"
    assert micro.command("out.json", ["--fast"])[1:] == [
        "-m",
        "runners.micro",
        "--fast",
        "--output",
        "out.json",
    ]


def test_list_prints_names() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runners.micro", "--list", "--benchmarks", "wsgi-sync/*"],
        cwd=REPO_ROOT,
        env=_env(REPO_ROOT / ".data"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.split() == [s.name for s in micro.select_specs("wsgi-sync/*")]


# --- results tables ---------------------------------------------------------------


def _row(handler: str, profile: str, view: str, mean: float) -> dict[str, Any]:
    return {
        "name": f"{handler}/{profile}/{view}",
        "handler": handler,
        "profile": profile,
        "view": view,
        "mean_s": mean,
        "median_s": mean,
        "stdev_s": None,
    }


def test_overhead_is_asgi_minus_wsgi_in_microseconds() -> None:
    rows = [
        _row("asgi-sync", "default", "json", 300e-6),
        _row("wsgi-sync", "default", "json", 100e-6),
        _row("asgi-async", "default", "json", 150e-6),
        _row("wsgi-sync", "minimal", "json", 50e-6),
        _row("asgi-async", "minimal", "json", 80e-6),
    ]
    table = micro_summary.overhead(rows)
    assert [(r["profile"], r["view"]) for r in table] == [("minimal", "json"), ("default", "json")]
    minimal, default = table
    assert minimal["wsgi_sync_us"] == pytest.approx(50)
    assert minimal["asgi_async_extra_us"] == pytest.approx(30)
    assert minimal["asgi_sync_us"] is None
    assert minimal["asgi_sync_extra_us"] is None
    assert default["asgi_async_extra_us"] == pytest.approx(50)
    assert default["asgi_sync_extra_us"] == pytest.approx(200)
    text = "\n".join(micro_summary.format_overhead(table))
    assert "+200.0" in text
    assert "+30.0" in text
    assert "\n".join(micro_summary.format_summary(rows)).count("\n") == len(rows)


# --- calling handlers -------------------------------------------------------------


def test_wsgi_caller_consumes_and_closes() -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            return iter([b"he", b"llo"])

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., object]) -> Body:
        assert environ["PATH_INFO"] == "/sync/json"
        assert environ["HTTP_HOST"] == micro.HOST
        assert environ["wsgi.input"].read() == b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    response = micro.wsgi_response(micro.wsgi_caller(app, "/sync/json")())
    assert response == micro.Response(200, [("Content-Type", "text/plain")], b"hello")
    assert closed == [True]


async def test_asgi_caller_keeps_the_client_connected() -> None:
    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        assert scope["path"] == "/async/json"
        assert (b"host", micro.HOST.encode()) in scope["headers"]
        assert (await receive())["type"] == "http.request"
        # Like Django's disconnect listener: this wait must not end by itself.
        listener = asyncio.ensure_future(receive())
        await asyncio.sleep(0.01)
        assert not listener.done()
        listener.cancel()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
        await send({"type": "http.response.body", "body": b"ok"})

    call = micro.asgi_caller(app, "/async/json")
    response = micro.asgi_response(await call())
    assert response == micro.Response(200, [("a", "b")], b"ok")


# --- the real thing, in pyperf's quickest mode ----------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("micro-data")
    subprocess.run(
        [sys.executable, "-m", "apps.manage", "prepare", *SMALL_SEED],
        cwd=REPO_ROOT,
        env=_env(path),
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def micro_json(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("micro-out") / "run" / "micro.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runners.micro",
            "--debug-single-value",
            "--skip-prepare",
            "--data-dir",
            str(data_dir),
            "-o",
            str(out),
        ],
        cwd=REPO_ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc.stdout


@pytest.mark.slow
def test_debug_single_value_run_holds_every_benchmark(micro_json: tuple[Path, str]) -> None:
    path, _ = micro_json
    suite = pyperf.BenchmarkSuite.load(str(path))
    benches = {b.get_name(): b for b in suite.get_benchmarks()}
    assert set(benches) == EXPECTED
    for name, bench in benches.items():
        handler, profile, view = name.split("/")
        meta = bench.get_metadata()
        assert meta["handler"] == handler
        assert meta["middleware_profile"] == profile
        assert meta["view"] == view
        assert meta["django_version"]
        assert meta["python_version"]
        assert meta["response_status"] == 200
        assert meta["response_bytes"] > 0
        if view == "feed":
            # Member 1 follows people with posts: not the empty feed.
            assert meta["response_bytes"] > 200
        assert bench.get_nvalue() == 1
        assert bench.mean() > 0


@pytest.mark.slow
def test_middleware_profile_really_runs(micro_json: tuple[Path, str]) -> None:
    suite = pyperf.BenchmarkSuite.load(str(micro_json[0]))
    for bench in suite.get_benchmarks():
        meta = bench.get_metadata()
        if meta["handler"] == "db-connect":
            continue  # no request
        headers = meta["response_headers"].split(", ")
        # XFrameOptionsMiddleware is in the default profile only.
        if meta["middleware_profile"] == "default":
            assert "x-frame-options" in headers, bench.get_name()
        else:
            assert "x-frame-options" not in headers, bench.get_name()


@pytest.mark.slow
def test_same_view_same_body_size_across_handlers(micro_json: tuple[Path, str]) -> None:
    sizes: dict[tuple[str, str], set[int]] = {}
    for bench in pyperf.BenchmarkSuite.load(str(micro_json[0])).get_benchmarks():
        meta = bench.get_metadata()
        key = (meta["middleware_profile"], meta["view"])
        sizes.setdefault(key, set()).add(meta["response_bytes"])
    assert all(len(s) == 1 for s in sizes.values()), sizes


@pytest.mark.slow
@pytest.mark.servers
def test_pyperf_cli_reads_the_file(micro_json: tuple[Path, str]) -> None:
    path, _ = micro_json
    for command in (["show"], ["stats"], ["compare_to", str(path)]):
        proc = subprocess.run(
            [sys.executable, "-m", "pyperf", *command, str(path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "asgi-sync/default/feed" in proc.stdout


@pytest.mark.slow
def test_summary_and_printed_overhead(micro_json: tuple[Path, str]) -> None:
    path, stdout = micro_json
    rows = micro_summary.summary(path)
    assert {r["name"] for r in rows} == EXPECTED
    for row in rows:
        assert row["mean_s"] > 0
        assert row["stdev_s"] is None  # one value per benchmark
    table = micro_summary.overhead(rows)
    assert {(r["profile"], r["view"]) for r in table} == {
        (p, v) for p in ("minimal", "default") for v in ("json", "fortunes", "feed")
    }
    assert all(r["asgi_sync_extra_us"] is not None for r in table)
    assert "ASGI cost over WSGI" in stdout
    assert str(path) in stdout


@pytest.mark.slow
def test_failing_view_fails_loudly(data_dir: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from runners.micro import benchmarks, cli; "
            "benchmarks.VIEWS['json'] = 'no-such-view'; sys.exit(cli.main(sys.argv[1:]))",
            "--debug-single-value",
            "--skip-prepare",
            "--benchmarks",
            "wsgi-sync/minimal/json",
            "-o",
            str(tmp_path / "micro.json"),
        ],
        cwd=REPO_ROOT,
        env=_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "answered 404, not 200" in proc.stderr
    assert not (tmp_path / "micro.json").exists()


# --- in the HTML report, and from tox -e bench -- --micro ---------------------------


@pytest.mark.slow
def test_report_shows_the_benchmarks_and_the_asgi_overhead(micro_json: tuple[Path, str]) -> None:
    import json
    import re

    from runners.report.render import render_run

    path, _ = micro_json
    results = json.loads((REPO_ROOT / "tests/data/sample_results.json").read_text())
    results["micro"] = path.name
    (path.parent / "results.json").write_text(json.dumps(results))
    html = render_run(path.parent).read_text()
    assert set(re.findall(r'data-benchmark="([^"]+)"', html)) == EXPECTED
    expected = micro_summary.overhead(micro_summary.summary(path))
    shown = re.findall(r'<tr data-overhead="([^"]+)">(.*?)</tr>', html)
    assert [name for name, _ in shown] == [f"{r['profile']}/{r['view']}" for r in expected]
    for (_, cells), row in zip(shown, expected, strict=True):
        numbers = re.findall(r'<td class="n">([^<]+)</td>', cells)
        assert numbers[0] == f"{row['wsgi_sync_us']:.1f}"
        assert numbers[2] == f"{row['asgi_async_extra_us']:+.1f}"
        assert numbers[4] == f"{row['asgi_sync_extra_us']:+.1f}"


@pytest.mark.slow
def test_bench_micro_runs_pyperf_into_the_results_folder(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace
    from typing import cast

    from runners.bench import main, run
    from runners.serving.cpus import Placement

    real_command = micro.command

    def quick(output: str | os.PathLike[str], pyperf_args: Any = ()) -> list[str]:
        # The same path as --micro, in pyperf's quickest mode on two benchmarks.
        args = [a for a in pyperf_args if a != "--fast"]
        return real_command(
            output, ["--debug-single-value", "--benchmarks", "*/minimal/json", *args]
        )

    monkeypatch.setattr(micro, "command", quick)
    monkeypatch.setenv("BENCH_DATA_DIR", str(data_dir))
    cpu = sorted(os.sched_getaffinity(0))[0]
    ctx = SimpleNamespace(
        out_dir=tmp_path,
        options=SimpleNamespace(placement=Placement(server=(cpu,), loadgen=(cpu,))),
        server_env={"DATABASE_URL": ""},
        rel=lambda p: p.relative_to(tmp_path).as_posix(),
    )
    said: list[str] = []
    assert main.run_micro(cast(run.Context, ctx), said.append) == "micro.json"
    suite = pyperf.BenchmarkSuite.load(str(tmp_path / "micro.json"))
    assert (
        set(suite.get_benchmark_names())
        == {
            "wsgi-sync/minimal/json",
            "asgi-async/minimal/json",
            "asgi-sync/minimal/json",
        }
        | ABLATION
    )
    assert "pyperf --fast" in said[0]
    assert (tmp_path / "micro.log").exists()


@pytest.mark.slow
def test_asgi_benchmarks_use_per_request_connections(micro_json: tuple[Path, str]) -> None:
    # As a server's asgi.py/wsgi.py would: persistent connections under WSGI only.
    path, _ = micro_json
    suite = pyperf.BenchmarkSuite.load(str(path))
    for bench in suite.get_benchmarks():
        expected = "None" if bench.get_name().startswith("wsgi-") else "0"
        assert bench.get_metadata()["conn_max_age"] == expected, bench.get_name()
