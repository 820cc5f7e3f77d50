"""The ASGI cost taken apart: the ablation handlers, their table, the asgiref dimension
and the pooled handler's one thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runners import REPO_ROOT
from runners.micro import ablation, asgirefs
from runners.micro import benchmarks as micro
from runners.runtimes.interpreters import current_interpreter
from runners.runtimes.venvs import venv_name


def _env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["BENCH_DATA_DIR"] = str(data_dir)
    env.pop("DATABASE_URL", None)
    env.pop("BENCH_MIDDLEWARE", None)
    return env


# --- the table ------------------------------------------------------------------------


def _means(**us: float) -> dict[tuple[str, str, str], float]:
    out = {}
    for key, value in us.items():
        handler, _, profile = key.partition("__")
        view = "db" if handler == "db_connect" else "json"
        out[(handler.replace("_", "-"), profile or "minimal", view)] = value * 1e-6
    return out


def test_breakdown_parts_and_residual() -> None:
    means = _means(
        wsgi_sync=100,
        asgi_async=500,
        ablation_no_executor=300,  # executor 200
        ablation_sync_signals=200,  # signal hop 100 (from no-executor)
        ablation_inline_close=250,  # close hop 50 (from no-executor)
        ablation_bare=130,  # rest 30
        ablation_asyncio=560,
        db_connect=40,
        wsgi_sync__default=150,
        asgi_async__default=1550,
    )
    table = ablation.breakdown(means)
    assert table is not None
    assert table.total_us == pytest.approx(400)
    assert {p.part: round(p.us, 6) for p in table.parts} == {
        "executor": 200,
        "signal hop": 100,
        "close hop": 50,
        "rest": 30,
    }
    assert table.sum_us == pytest.approx(380)
    assert table.residual_us == pytest.approx(20)
    extra = {p.part: round(p.us, 6) for p in table.extra}
    assert extra == {
        "middleware hops": 1000,  # (1550 - 150) - 400
        "asyncio instead of uvloop": 60,
        "database connect": 40,
    }
    text = "\n".join(ablation.format_breakdown(table))
    assert "residual (total - sum)" in text
    assert "+20.0" in text
    sentence = ablation.sentence(table)
    assert sentence.startswith("On json with the minimal middleware")
    assert "400 µs more" in sentence
    assert sentence.index("executor 200") < sentence.index("signal hop 100")
    assert "1000 µs of hops" in sentence


def test_a_residual_over_15_percent_is_flagged() -> None:
    parts = dict(ablation_sync_signals=200, ablation_inline_close=250, ablation_bare=130)
    near = ablation.breakdown(
        _means(wsgi_sync=100, asgi_async=500, ablation_no_executor=300, **parts)
    )
    assert near is not None and ablation.residual_warning(near) is None
    assert "miss the whole" not in ablation.sentence(near)
    # Removing the signal hop saves nothing now, yet the whole is unchanged:
    # 100 µs that no part explains, residual 120 of 400 (30%).
    far = ablation.breakdown(
        _means(
            wsgi_sync=100,
            asgi_async=500,
            ablation_no_executor=300,
            **{**parts, "ablation_sync_signals": 300},
        )
    )
    assert far is not None
    assert far.residual_us == pytest.approx(120)
    assert "miss the whole by +30%" in ablation.sentence(far)
    # The interleaved measurement does not point to itself.
    interleaved = ablation.sentence(far, sequential=False)
    assert "miss the whole by +30%" in interleaved
    assert "runners.micro.ablation" not in interleaved


def test_breakdown_needs_every_variant() -> None:
    means = _means(wsgi_sync=100, asgi_async=500, ablation_no_executor=300)
    assert ablation.breakdown(means) is None
    assert ablation.breakdown({}) is None


def test_the_ablation_benchmarks_are_in_the_matrix() -> None:
    names = {s.name for s in micro.all_specs()}
    for handler in micro.ABLATION_HANDLERS:
        assert f"{handler}/minimal/json" in names
    assert "db-connect/minimal/db" in names
    spec = micro.Spec("ablation-asyncio", "minimal", "json")
    assert (spec.interface, spec.variant, spec.path, spec.loop) == (
        "asgi",
        "async",
        "/async/json",
        "asyncio",
    )
    assert micro.Spec("asgi-async", "minimal", "json").loop == "uvloop"
    assert micro.Spec("wsgi-sync", "minimal", "json").loop is None
    assert micro.Spec("db-connect", "minimal", "db").loop is None


# --- the asgiref dimension --------------------------------------------------------------


def test_parse_asgirefs() -> None:
    assert asgirefs.parse_asgirefs("3.11, 3.13,3.11") == ("3.11", "3.13")
    assert asgirefs.parse_asgirefs("3.12.1") == ("3.12.1",)
    assert asgirefs.parse_asgirefs("asgiref==3.11") == ("3.11",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "malformed"),
        ("3.11,,3.13", "malformed"),
        ("three", "not an asgiref release"),
        ("3.11-beta", "not an asgiref release"),
        ("3.7", "needs asgiref>="),
        ("2.3.2", "needs asgiref>="),
    ],
)
def test_parse_asgirefs_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        asgirefs.parse_asgirefs(text)


def test_child_args_replace_the_output_and_drop_asgiref() -> None:
    argv = ["--fast", "--asgiref", "3.11,3.13", "-o", "x.json", "--benchmarks=*/json"]
    assert asgirefs.child_args(argv, "3.11", "/out/micro.json") == [
        "--fast",
        "--benchmarks=*/json",
        "--name-tag",
        "asgiref-3.11",
        "--append",
        "/out/micro.json",
        "--skip-prepare",
    ]
    assert asgirefs.child_args(["--asgiref=3.11", "--output=a"], "3.11", "b")[:1] == ["--name-tag"]


def test_asgiref_venvs_have_their_own_names() -> None:
    interp = current_interpreter()
    plain = venv_name(interp, None)
    assert venv_name(interp, None, "3.11").startswith(plain + "-asgiref3.11")
    assert venv_name(interp, None, "3.11", ("pyperf",)) != venv_name(interp, None, "3.11")


def test_micro_refuses_a_bad_asgiref_before_anything_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runners.micro", "--asgiref", "3.x", "-o", str(tmp_path / "m")],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not an asgiref release" in proc.stderr
    assert not (tmp_path / "m").exists()


# --- the handlers, for real ----------------------------------------------------------------

_THREADS = """
import asyncio, json, sys, threading
from runners.micro import benchmarks as micro
micro.setup_django("minimal", "asgi")
from django.core.signals import request_started
seen = []
request_started.connect(lambda **kw: seen.append(threading.current_thread().name), weak=False)
out = {}
for handler in ("asgi-async", "ablation-no-executor", "ablation-sync-signals", "ablation-bare"):
    call = micro.asgi_caller(micro.asgi_handler(handler), "/async/json")
    seen.clear()
    for _ in range(3):
        response = micro.asgi_response(micro.run_async(call, "uvloop"))
        assert response.status == 200 and response.body, response
    out[handler] = list(seen)
out["main"] = threading.current_thread().name
print(json.dumps(out))
"""


def test_each_handler_sends_request_started_where_it_claims(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _THREADS],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    threads = json.loads(proc.stdout.strip().splitlines()[-1])
    main = threads.pop("main")
    # Django's handler: a new executor (so a new thread) for every request.
    assert len(set(threads["asgi-async"])) == 3
    assert main not in threads["asgi-async"]
    # One executor for the process: the same sync thread every time.
    assert len(set(threads["ablation-no-executor"])) == 1
    assert threads["ablation-no-executor"][0] not in threads["asgi-async"]
    # The hop removed: the receivers run on the event loop's thread.
    assert threads["ablation-sync-signals"] == [main] * 3
    assert threads["ablation-bare"] == [main] * 3


@pytest.mark.slow
def test_the_parts_add_up_to_the_whole(tmp_path: Path) -> None:
    """A short in-process ablation: the one-at-a-time removals account for the ASGI extra."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "runners.micro.ablation", "--json"),
            *("--requests", "100", "--rounds", "9", "--data-dir", str(tmp_path)),
        ],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    total = table["total_us"]
    parts = {p["part"]: p["us"] for p in table["parts"]}
    assert total > 0
    # The executor (a thread started and joined per request) is a real cost.
    assert parts["executor"] > 0.1 * total, table
    # Within noise: the parts add up to the whole (a generous tolerance, the
    # machine is shared and thread wake-ups vary).
    assert abs(table["residual_us"]) <= max(0.35 * total, 60.0), table


# --- in the HTML report -------------------------------------------------------------------


def _suite(path: Path, us: dict[str, float]) -> None:
    import pyperf

    benches = []
    for name, value in us.items():
        handler, profile, view = name.split("/")
        meta = {"name": name, "handler": handler, "middleware_profile": profile, "view": view}
        runs = [
            pyperf.Run([value * 1e-6 * f for f in (0.9, 1.0, 1.3)], metadata=meta, warmups=None)
        ]
        benches.append(pyperf.Benchmark(runs))
    pyperf.BenchmarkSuite(benches).dump(str(path))


def test_report_says_where_the_microseconds_go(tmp_path: Path) -> None:
    import re

    from runners.report.render import render_run

    _suite(
        tmp_path / "micro.json",
        {
            "wsgi-sync/minimal/json": 100,
            "asgi-async/minimal/json": 500,
            "ablation-no-executor/minimal/json": 300,
            "ablation-sync-signals/minimal/json": 200,
            "ablation-inline-close/minimal/json": 250,
            "ablation-bare/minimal/json": 130,
            "ablation-asyncio/minimal/json": 560,
            "db-connect/minimal/db": 40,
        },
    )
    results = json.loads((REPO_ROOT / "tests/data/sample_results.json").read_text())
    results["micro"] = "micro.json"
    (tmp_path / "results.json").write_text(json.dumps(results))
    html = render_run(tmp_path).read_text()
    assert 'id="micro-ablation"' in html
    sentence = re.search(r'<p class="ablation-sentence"[^>]*>(.*?)</p>', html)
    assert sentence is not None
    # Means of (0.9, 1.0, 1.3) x value: 1.0667 x the value; medians: the value.
    assert "427 µs more per request" in sentence.group(1)
    rows = dict(re.findall(r'<tr data-part="([^"]+)"[^>]*>(.*?)</tr>', html))
    assert set(rows) >= {"executor", "signal hop", "close hop", "rest", "sum", "total"}
    mean, median = re.findall(r'<td class="n">([^<]+)</td>', rows["executor"])[:2]
    assert (mean, median) == ("213.3", "200.0")
    assert "database connect" in rows


def test_the_pooled_runner_is_marked_experimental() -> None:
    import dataclasses

    from runners.report.ranking import cells_of, runner_label
    from runners.results.document import read_results
    from runners.serving.registry import RUNNERS, format_table

    assert RUNNERS["uvicorn-pooled"].experimental
    assert not any(r.experimental for name, r in RUNNERS.items() if name != "uvicorn-pooled")
    listing = format_table(1)
    assert "uvicorn-pooled: EXPERIMENTAL: " in listing
    assert "uvicorn: EXPERIMENTAL" not in listing
    cell = cells_of(read_results(REPO_ROOT / "tests/data/sample_results.json"))[0]
    pooled = dataclasses.replace(cell, runner="uvicorn-pooled")
    assert runner_label(pooled, False) == "uvicorn-pooled (experimental)"
    assert runner_label(dataclasses.replace(cell, runner="uvicorn"), False) == "uvicorn"
