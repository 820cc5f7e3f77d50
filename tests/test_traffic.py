"""Your own project's traffic: the three sources' parsers (``loadtests/traffic.py``), and
real Locust runs that drive a loopback stub with each of them.

Locust only ever runs in subprocesses (importing it gevent-patches the interpreter).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.traffic import (
    Traffic,
    TrafficEntry,
    TrafficError,
    check_locustfile,
    parse_access_log,
    parse_urls,
    writes,
)
from loadtests.window import ProbeCommand, ProbeResult
from runners.load.locust import (
    PROBES_PLUGIN,
    TRAFFICFILE,
    USERFILE,
    LocustPlan,
    LocustProcess,
    command,
    worker_command,
)
from tests.stub import Stub, serving


def one_line_error(excinfo: pytest.ExceptionInfo[TrafficError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# --- --urls ------------------------------------------------------------------------------------


def test_a_url_file_gives_weights_methods_bodies_and_headers(tmp_path: Path) -> None:
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "cart.json").write_text('{"sku": 7}\n')
    absolute = tmp_path / "note.txt"
    absolute.write_text("hello")
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "# the shop's traffic\n"
        "\n"
        "3   GET  /products/?page=2&sort=new\n"
        "1.5 post /api/cart/ @bodies/cart.json Content-Type:application/json  # add one\n"
        f'0.5 PUT  /notes/1 @{absolute} "X-Note: a b" Accept:*/* status=204\n'
        "   # an indented comment\n"
        "1 HEAD /health\n"
    )
    traffic = parse_urls(urls)
    assert traffic.name == "urls" and traffic.source == "urls"
    assert traffic.skipped == {} and traffic.user_classes == ()
    assert traffic.entries == (
        TrafficEntry(3.0, "GET", "/products/?page=2&sort=new", None, ()),
        TrafficEntry(
            1.5, "POST", "/api/cart/", '{"sku": 7}\n', (("Content-Type", "application/json"),)
        ),
        TrafficEntry(0.5, "PUT", "/notes/1", "hello", (("X-Note", "a b"), ("Accept", "*/*")), 204),
        TrafficEntry(1.0, "HEAD", "/health", None, ()),
    )
    assert [entry.request_name for entry in traffic.entries] == [
        "GET /products/",
        "POST /api/cart/",
        "PUT /notes/1",
        "HEAD /health",
    ]
    assert [entry.method for entry in writes(traffic)] == ["POST", "PUT"]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("x GET /a", "weight 'x' is not a positive number"),
        ("0 GET /a", "weight '0' is not a positive number"),
        ("nan GET /a", "weight 'nan' is not a positive number"),
        ("1 GTE /a", "method 'GTE' is not one of GET, HEAD, POST"),
        ("1 GET", "expected WEIGHT METHOD PATH"),
        ("1 GET products", "path 'products' does not start with /"),
        ("1 GET /café", "path '/café' has a character other than visible ASCII"),
        ('1 GET "/a b"', "path '/a b' has a character other than visible ASCII"),
        ("1 POST /a @missing.json", "body file '@missing.json': No such file"),
        ("1 POST /a @body.json @body.json", "a second body file '@body.json'"),
        ('1 GET /a "X-A:b', "No closing quotation"),
        ("1 GET /a bogus", "'bogus' is none of @BODYFILE, Header:Value, status=N"),
        ("1 GET /a (x):1", "header '(x):1': '(x)' is not a header name"),
        ("1 GET /a A:1 a:2", "header 'a' given twice"),
        ("1 GET /a status=99", "'status=99' is not an HTTP status"),
    ],
)
def test_a_bad_url_line_is_one_line_naming_file_and_line(
    tmp_path: Path, line: str, problem: str
) -> None:
    (tmp_path / "body.json").write_text("{}")
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# first\n1 GET /fine\n{line}\n1 GET /after\n")
    with pytest.raises(TrafficError) as excinfo:
        parse_urls(urls)
    message = one_line_error(excinfo)
    assert message.startswith(f"{urls}:3: "), message
    assert problem in message


def test_a_url_file_without_a_request_is_an_error(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("# nothing yet\n\n   \n# 3 GET /commented-out\n")
    with pytest.raises(TrafficError) as excinfo:
        parse_urls(urls)
    assert one_line_error(excinfo) == f"{urls}: no request line (WEIGHT METHOD PATH ...)"
    with pytest.raises(TrafficError) as excinfo:
        parse_urls(tmp_path / "missing.txt")
    assert one_line_error(excinfo).startswith(f"{tmp_path / 'missing.txt'}: No such file")


# --- --access-log ------------------------------------------------------------------------------

TIME = "[10/Oct/2025:13:55:36 +0000]"


def log_line(fmt: str, method: str, target: str, status: int = 200) -> str:
    request = f'"{method} {target} HTTP/1.1" {status}'
    if fmt == "common":
        return f"127.0.0.1 - frank {TIME} {request} 2326"
    if fmt == "combined":
        return f'10.0.0.7 - - {TIME} {request} 512 "https://shop.example/" "Mozilla/5.0 (X11)"'
    # gunicorn's default access_log_format: %(b)s is "-" for an empty body
    return f'127.0.0.1 - - {TIME} {request} - "-" "python-requests/2.32"'


@pytest.mark.parametrize("fmt", ["common", "combined", "gunicorn"])
def test_an_access_log_is_weighted_by_frequency(tmp_path: Path, fmt: str) -> None:
    lines = (
        [log_line(fmt, "GET", "/products/?page=2")] * 30
        + [log_line(fmt, "GET", "/products/")] * 10  # the query string tells them apart
        + [log_line(fmt, "HEAD", "/health")] * 5
        + [log_line(fmt, "POST", "/api/cart/", 201)] * 4
        + [log_line(fmt, "GET", "/favicon.ico", 404)] * 2
        + [
            "not a log line",
            '127.0.0.1 - - [10/Oct/2025:13:55:36 +0000] "-" 408 0 "-" "-"',
            log_line(fmt, "GET", "http://proxy.example/x"),
            "",
        ]
    )
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines[::-1]) + "\n")  # order must not matter

    traffic = parse_access_log(log)
    assert traffic.name == "access" and traffic.source == "access-log"
    assert [(e.weight, e.method, e.path, e.expect_status) for e in traffic.entries] == [
        (30.0, "GET", "/products/?page=2", None),
        (10.0, "GET", "/products/", None),
        (5.0, "HEAD", "/health", None),
        (2.0, "GET", "/favicon.ico", 404),  # always 404: a 404 again is no failure
    ]
    assert all(e.body is None and e.headers == () for e in traffic.entries)
    assert traffic.skipped == {"unparsed": 3, "writes": 4, "beyond_top": 0}
    assert writes(traffic) == []

    top = parse_access_log(log, top=2, allow_writes=True)
    assert [(e.weight, e.path) for e in top.entries] == [
        (30.0, "/products/?page=2"),
        (10.0, "/products/"),
    ]
    assert top.skipped == {"unparsed": 3, "writes": 0, "beyond_top": 5 + 4 + 2}
    everything = parse_access_log(log, allow_writes=True)
    assert [(e.weight, e.method, e.path) for e in writes(everything)] == [
        (4.0, "POST", "/api/cart/")
    ]


def test_a_request_whose_status_varied_expects_any_success(tmp_path: Path) -> None:
    log = tmp_path / "gunicorn.log"
    log.write_text(
        "\n".join(
            [log_line("gunicorn", "GET", "/account/", 403)] * 3
            + [log_line("gunicorn", "GET", "/account/", 200)]
            + [log_line("gunicorn", "GET", "/oops/", 500)] * 2
        )
    )
    entries = parse_access_log(log).entries
    assert [(e.path, e.expect_status) for e in entries] == [("/account/", None), ("/oops/", None)]


def test_an_access_log_without_a_usable_line_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("garbage\n" + "\n".join([log_line("combined", "POST", "/api/cart/")] * 2) + "\n")
    with pytest.raises(TrafficError) as excinfo:
        parse_access_log(log)
    assert one_line_error(excinfo) == (
        f"{log}: no GET or HEAD request in 3 lines (1 unparsed, 2 writes skipped)"
    )
    assert len(parse_access_log(log, allow_writes=True).entries) == 1
    with pytest.raises(TrafficError, match="top must be at least 1"):
        parse_access_log(log, top=0)


# --- --locustfile ------------------------------------------------------------------------------


def test_a_locustfile_with_a_syntax_error_is_one_line(tmp_path: Path) -> None:
    shop = tmp_path / "shop.py"
    shop.write_text("from locust import HttpUser\n\nclass Shopper(HttpUser:\n    pass\n")
    with pytest.raises(TrafficError) as excinfo:
        check_locustfile(shop)
    assert one_line_error(excinfo).startswith(f"{shop}:3: ")
    # An error only the compiler sees (the parser accepts it).
    shop.write_text("from locust import HttpUser\n\n\nreturn 1\n")
    with pytest.raises(TrafficError) as excinfo:
        check_locustfile(shop)
    assert one_line_error(excinfo) == f"{shop}:4: 'return' outside function"


def test_a_locustfile_without_a_user_class_is_an_error(tmp_path: Path) -> None:
    shop = tmp_path / "shop.py"
    shop.write_text(
        "from locust import HttpUser, TaskSet, task\n"
        "class Base(HttpUser):\n"
        "    abstract = True\n"
        "class Browse(TaskSet):\n"
        "    @task\n"
        "    def home(self):\n"
        "        self.client.get('/')\n"
    )
    with pytest.raises(TrafficError) as excinfo:
        check_locustfile(shop)
    assert one_line_error(excinfo).startswith(f"{shop}: no user class")


def test_a_locustfiles_user_classes_are_found_without_running_it(tmp_path: Path) -> None:
    shop = tmp_path / "shop.py"
    shop.write_text(
        "import locust\n"
        "from locust import FastHttpUser, HttpUser, User\n"
        "raise SystemExit('never run')\n"
        "class Base(HttpUser):\n"
        "    abstract: bool = True\n"
        "class Shopper(Base):\n"
        "    pass\n"
        "class Admin(locust.FastHttpUser):\n"
        "    abstract = False\n"
        "class Bot(User):\n"
        "    pass\n"
        "class Helper:\n"
        "    pass\n"
        "def make():\n"
        "    class Inner(HttpUser):\n"
        "        pass\n"
    )
    traffic = check_locustfile(shop)
    assert traffic == Traffic("shop", "locustfile", (), {}, ("Shopper", "Admin", "Bot"))


# --- the records -------------------------------------------------------------------------------


def test_traffic_round_trips_through_json(tmp_path: Path) -> None:
    traffic = Traffic(
        "access",
        "access-log",
        (
            TrafficEntry(30.0, "GET", "/a?x=1", None, (), None),
            TrafficEntry(1.0, "POST", "/b", '{"k": "é"}', (("X-A", "1"),), 201),
        ),
        {"unparsed": 2, "writes": 0, "beyond_top": 3},
    )
    path = tmp_path / "access.json"
    traffic.write(path)
    assert Traffic.read(path) == traffic
    assert Traffic.from_dict(traffic.to_dict()) == traffic
    path.write_text('{"name": "x", "source": "carrier-pigeon", "entries": []}')
    with pytest.raises(TrafficError) as excinfo:
        Traffic.read(path)
    assert one_line_error(excinfo).startswith(f"{path}: not a traffic file")


# --- how the driver runs each source -----------------------------------------------------------


def plan_for(
    tmp_path: Path,
    name: str,
    locustfiles: tuple[Path, ...],
    user_classes: tuple[str, ...],
    options: tuple[str, ...] = (),
    host: str = "http://127.0.0.1:1",
    processes: int = 1,
) -> LocustPlan:
    """Locust as the driver runs it for a workload of one's own."""
    return LocustPlan(
        host=host,
        workload=name,
        variant="sync",
        out_prefix=tmp_path / name,
        run_time_limit_s=60,
        processes=processes,
        locustfiles=locustfiles,
        user_classes=user_classes,
        options=options,
    )


def test_the_plan_runs_a_traffic_file_or_a_user_locustfile(tmp_path: Path) -> None:
    options = ("--traffic", "urls.json")
    traffic = plan_for(tmp_path, "urls", (TRAFFICFILE,), ("TrafficUser",), options, processes=2)
    for argv in (command(traffic, 5557), worker_command(traffic, "127.0.0.1", 5557)):
        assert argv[argv.index("-f") + 1] == f"{TRAFFICFILE},{PROBES_PLUGIN}"
        assert argv[-3:] == ["--traffic", "urls.json", "TrafficUser"]
        assert argv[argv.index("--request-timeout") + 1] == "30"
        assert "--variant" not in argv  # an option of the suite's own workloads only
    shop = tmp_path / "shop.py"
    argv = command(plan_for(tmp_path, "shop", (shop, USERFILE), ("Shopper", "Browser")))
    assert argv[argv.index("-f") + 1] == f"{shop},{USERFILE},{PROBES_PLUGIN}"
    assert argv[-2:] == ["Shopper", "Browser"]
    assert "--variant" not in argv and "--request-timeout" not in argv


# --- real Locust runs, through the probes plugin as the driver runs it -------------------------

USERS = 16
CLOSED = ProbeCommand(seq=1, mode="closed", users=USERS, duration_s=2.0)
"""Every user sends back to back: every user class runs, and the run has its volume
(a few thousand requests, so that the sampling spread of a 1-in-4 share, sqrt(p (1 - p)
/ n), is under a third of the 10 % it is held to)."""
RATE = 600.0
OPEN = ProbeCommand(seq=2, mode="open", users=USERS, duration_s=1.5, rate=RATE)
"""Then requests on a schedule, at a rate a busy 2-core machine keeps."""


@pytest.fixture
def stub() -> Iterator[Stub]:
    with serving("any") as server:
        yield server


def request_counts(plan: LocustPlan, *names: str, failing: str = "") -> dict[str, int]:
    """Locust's count of each request name over the run (its ``*_stats.csv``), which
    are all the names it has; every request of ``failing`` failed, no other."""
    with plan.csv("stats").open(newline="") as fh:
        rows = {row["Name"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {*names, "Aggregated"}
    counts = {name: int(rows[name]["Request Count"]) for name in names}
    assert rows["Aggregated"]["Failure Count"] == str(counts.get(failing, 0))
    return counts


def assert_shares(counts: dict[str, int], weights: dict[str, float]) -> None:
    """Each request's share of the requests is its weight's share, within 10 %."""
    total = sum(counts[name] for name in weights)
    weight = sum(weights.values())
    for name, w in weights.items():
        share, expected = counts[name] / total, w / weight
        assert abs(share / expected - 1) <= 0.1, (name, counts, weights)


def run_probes(plan: LocustPlan) -> tuple[ProbeResult, ProbeResult]:
    """``CLOSED`` then ``OPEN``, through the probes plugin as the driver runs them."""
    with LocustProcess(plan) as process:
        closed, opened = process.probe(CLOSED), process.probe(OPEN)
        assert process.finish().exit_code == 0
    return closed, opened


def assert_paced(
    probes: tuple[ProbeResult, ProbeResult], sent: int, stub: Stub, failed: int = 0
) -> None:
    """Every request Locust counted (``sent``; ``failed`` of them failed) had its ticket
    of the schedule, a failure too: it is one of the probes' requests, or (at most 1 %
    more) one sent as a window ended, before the pause after it reached the users. The
    open window kept its rate; the FastHttpUser clients' connections were counted."""
    closed, opened = probes
    assert 0 <= sent - closed.requests - opened.requests <= 0.01 * sent
    assert 0 <= failed - closed.failures - opened.failures <= 0.01 * sent
    assert failed == 0 or opened.failures > 0
    assert opened.requests == pytest.approx(RATE * OPEN.duration_s, rel=0.15)
    assert 1 <= closed.connects + opened.connects <= stub.connections


def traffic_plan(stub: Stub, traffic: Traffic, tmp_path: Path) -> LocustPlan:
    path = tmp_path / f"{traffic.name}.json"
    traffic.write(path)
    options = ("--traffic", str(path))
    return plan_for(tmp_path, traffic.name, (TRAFFICFILE,), ("TrafficUser",), options, stub.url)


@pytest.mark.servers
def test_traffic_user_sends_a_url_files_requests_by_weight(stub: Stub, tmp_path: Path) -> None:
    (tmp_path / "cart.json").write_text('{"sku": 7}')
    urls = tmp_path / "urls.txt"
    urls.write_text(
        "3 GET /products/?page=2\n"
        "1 POST /api/cart/ @cart.json Content-Type:application/json X-Bench:yes status=200\n"
    )
    plan = traffic_plan(stub, parse_urls(urls), tmp_path)
    probes = run_probes(plan)

    counts = request_counts(plan, "GET /products/", "POST /api/cart/")
    assert_shares(counts, {"GET /products/": 3, "POST /api/cart/": 1})
    assert_paced(probes, sum(counts.values()), stub)
    assert set(stub.hits) == {"GET /products/?page=2", "POST /api/cart/"}
    body, headers = stub.received["POST /api/cart/"]
    assert body == b'{"sku": 7}'
    assert headers["Content-Type"] == "application/json" and headers["X-Bench"] == "yes"


@pytest.mark.servers
def test_traffic_user_sends_an_access_logs_requests_by_frequency(
    stub: Stub, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        "\n".join(
            [log_line("gunicorn", "GET", "/products/?page=2")] * 30
            + [log_line("combined", "GET", "/status/404", 404)] * 10  # expected: no failure
            + [log_line("common", "POST", "/api/cart/", 201)] * 20  # a write: skipped
            + ["garbage"] * 5
        )
    )
    traffic = parse_access_log(log)
    assert traffic.skipped == {"unparsed": 5, "writes": 20, "beyond_top": 0}
    plan = traffic_plan(stub, traffic, tmp_path)
    probes = run_probes(plan)

    counts = request_counts(plan, "GET /products/", "GET /status/404")
    assert_shares(counts, {"GET /products/": 30, "GET /status/404": 10})
    assert_paced(probes, sum(counts.values()), stub)
    assert set(stub.hits) == {"GET /products/?page=2", "GET /status/404"}


USER_LOCUSTFILE = '''
from locust import FastHttpUser, HttpUser, TaskSet, between, task
from locust.user.markov_taskset import MarkovTaskSet, transition


class Basket(TaskSet):
    wait_time = between(1, 2)

    @task
    def view(self):
        self.client.get("/basket/")
        self.interrupt()


class Shopper(FastHttpUser):
    """@task(3) on a method, @task(1) on a TaskSet."""

    wait_time = between(1, 2)  # the schedule replaces it
    tasks = {Basket: 1}

    @task(3)
    def browse(self):
        self.client.get("/products/")


class Browser(HttpUser):
    """The same weights, as a plain list and on requests' client."""

    wait_time = between(1, 2)

    def browse(self):
        self.client.get("/products/?by=browser", name="/products/")

    def basket(self):
        with self.client.get("/basket/?by=browser", name="/basket/", catch_response=True):
            pass

    tasks = [browse, browse, browse, basket]


class Walker(FastHttpUser):
    wait_time = between(1, 2)

    class Walk(MarkovTaskSet):
        @transition("right")
        def left(self):
            self.client.get("/walk/left")

        @transition("left")
        def right(self):
            self.client.get("/status/500", name="/walk/right")  # fails: so does the task

    tasks = [Walk]
'''


@pytest.mark.servers
def test_a_user_locustfile_runs_its_tasks_on_the_schedule(stub: Stub, tmp_path: Path) -> None:
    shop = tmp_path / "shop.py"
    shop.write_text(USER_LOCUSTFILE)
    traffic = check_locustfile(shop)
    assert traffic.user_classes == ("Shopper", "Browser", "Walker")
    plan = plan_for(tmp_path, traffic.name, (shop, USERFILE), traffic.user_classes, host=stub.url)
    probes = run_probes(plan)

    counts = request_counts(
        plan, "/products/", "/basket/", "/walk/left", "/walk/right", failing="/walk/right"
    )
    assert_shares(counts, {"/products/": 3, "/basket/": 1})
    assert_paced(probes, sum(counts.values()), stub, failed=counts["/walk/right"])
    # Every class ran its tasks back to back in the closed loop (its wait_time gone):
    # FastHttpUser with a TaskSet, HttpUser, a MarkovTaskSet. (Unpaced, a class would
    # either keep its wait of 1 to 2 s between tasks or send more than 1 % untracked.)
    hits = stub.hits
    by_class = {
        "Shopper": hits["GET /products/"] + hits["GET /basket/"],
        "Browser": hits["GET /products/?by=browser"] + hits["GET /basket/?by=browser"],
        "Walker": hits["GET /walk/left"] + hits["GET /status/500"],
    }
    assert min(by_class.values()) >= 50, by_class
