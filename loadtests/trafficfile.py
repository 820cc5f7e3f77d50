"""Your own project's traffic as one Locust user class, ``TrafficUser``::

    locust -f loadtests/trafficfile.py,loadtests/probes.py --host http://127.0.0.1:8000 \\
        --traffic urls.json --headless ... TrafficUser

``--traffic FILE`` is a traffic file (``loadtests/traffic.py``: ``Traffic.write``) made
from a URL file or an access log. Each task execution picks one of its entries by weight
and sends it (its method, its path with the query string, its body and headers) the way
the suite's own workloads send theirs (``loadtests/clients.py``: ``paced_request``): it
waits for its ticket of the schedule (at once in a closed loop), and its latency, in
Locust's statistics too, runs from the ticket's intended time. A response with the
entry's ``expect_status``, or any status below 400 when it has none, is a success.
Locust's statistics name a request ``METHOD PATH`` without the query string.
``--request-timeout S`` bounds every request (default 30 s), as in
``loadtests/locustfile.py``; new connections are counted as there.
"""

from __future__ import annotations

import random
import sys
from itertools import accumulate
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser

# Loaded by path (``locust -f .../loadtests/trafficfile.py``): the shared modules are
# imported from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from loadtests.clients import (  # noqa: E402
    add_request_timeout,
    count_connects,
    paced_request,
    request_timeout,
)
from loadtests.traffic import Traffic, TrafficEntry  # noqa: E402

count_connects()


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--traffic",
        default="",
        include_in_web_ui=False,
        help="the traffic file TrafficUser sends (loadtests/traffic.py)",
    )
    add_request_timeout(parser)


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


def _load_traffic(environment: Environment, **_kwargs: Any) -> None:
    """Read ``--traffic`` once per process, before any user starts."""
    path = str(getattr(environment.parsed_options, "traffic", "") or "")
    if path:
        TrafficUser.use(Traffic.read(Path(path)))


events.init.add_listener(_load_traffic)  # type: ignore[no-untyped-call]


def problem(entry: TrafficEntry, response: ResponseContextManager) -> str | None:
    """What is wrong with a response to ``entry`` (None: the status it expects)."""
    status = int(response.status_code)
    if entry.expect_status is None:
        return None if status < 400 else f"HTTP {status}"
    return None if status == entry.expect_status else f"HTTP {status}, not {entry.expect_status}"


class TrafficUser(FastHttpUser):
    """Sends the entries of ``--traffic``, each its weight's share of the time."""

    wait_time = constant(0)
    paces_itself = True
    """Takes its own tickets of the schedule (``loadtests/userfile.py`` leaves it alone)."""
    entries: tuple[TrafficEntry, ...] = ()
    cum_weights: tuple[float, ...] = ()

    @classmethod
    def use(cls, traffic: Traffic) -> None:
        cls.entries = traffic.entries
        cls.cum_weights = tuple(accumulate(entry.weight for entry in traffic.entries))

    def __init__(self, environment: Any) -> None:
        # Read by FastHttpUser.__init__ when it builds the client.
        self.network_timeout = self.connection_timeout = request_timeout(environment)
        super().__init__(environment)

    def on_start(self) -> None:
        if not self.entries:
            raise StopUser("TrafficUser has nothing to send: give --traffic FILE")

    @task
    def send(self) -> None:
        entry = random.choices(self.entries, cum_weights=self.cum_weights)[0]
        paced_request(
            self.client,
            entry.method,
            entry.path,
            lambda response: problem(entry, response),
            name=entry.request_name,
            data=entry.body,
            headers=dict(entry.headers),
        )
