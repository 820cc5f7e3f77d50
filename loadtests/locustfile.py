"""Locust workloads for the Django benchmark app.

One ``FastHttpUser`` class per workload (see ``loadtests/catalog.py`` for the
list); the benchmark driver and a person at the Locust web UI pick a workload
the same way, by its user class::

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --variant sync JsonUser
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --class-picker

Every user waits ``constant(0)`` between requests: this is a closed-loop test
at a fixed concurrency (``-u``), each user sending its next request as soon as
the previous answer arrived, so the request rate is whatever the server
sustains at that concurrency.

Options (also in the web UI):

``--variant sync|async``
    which view variant to hit, ``/sync/...`` or ``/async/...`` (default
    async; the driver passes the variant the runner serves).
``--queries N``
    rows for ``queries``, ``updates`` and ``cached-queries`` (default 20).
``--upstream-ms N``
    latency the upstream service adds for ``upstream`` and ``mixed`` (50).
``--max-user-id N`` / ``--max-post-id N``
    random ids are drawn from 1..N (the app's default seed: 1000 and 20000).
``--request-timeout S``
    a request with no answer for S seconds (to connect, or between bytes)
    fails with ``connection error: timeout`` (default 30), so a hung server
    shows as failures instead of silently stalled users.

A response with the wrong status or the wrong body is a failure.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant, events, tag, task
from locust.contrib.fasthttp import ResponseContextManager

# `locust -f .../loadtests/locustfile.py` from any directory: the catalog is
# imported from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from loadtests.catalog import (  # noqa: E402
    DEFAULT_MAX_POST_ID,
    DEFAULT_MAX_USER_ID,
    DEFAULT_QUERIES,
    DEFAULT_UPSTREAM_MS,
    MIXED_WEIGHTS,
    WORKLOADS,
)
from loadtests.clients import (  # noqa: E402
    add_request_timeout,
    count_connects,
    paced_request,
    request_timeout,
)

count_connects()

# A validator looks at a 200 response and returns what is wrong with it, or None.
Validator = Callable[[ResponseContextManager], str | None]

HELLO = "Hello, World!"
ADDED_FORTUNE = "Additional fortune added at request time."
FORTUNE_ROWS = 13
FEED_SIZE = 20


def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--variant",
        choices=["sync", "async"],
        default="async",
        help="view variant to hit: /sync/... or /async/... (default async)",
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=DEFAULT_QUERIES,
        help=f"rows for queries, updates and cached-queries (default {DEFAULT_QUERIES})",
    )
    parser.add_argument(
        "--upstream-ms",
        type=int,
        default=DEFAULT_UPSTREAM_MS,
        help=f"latency of the upstream service in ms (default {DEFAULT_UPSTREAM_MS})",
    )
    parser.add_argument(
        "--max-user-id",
        type=int,
        default=DEFAULT_MAX_USER_ID,
        help=f"random user ids are drawn from 1..N (default {DEFAULT_MAX_USER_ID})",
    )
    parser.add_argument(
        "--max-post-id",
        type=int,
        default=DEFAULT_MAX_POST_ID,
        help=f"random post ids are drawn from 1..N (default {DEFAULT_MAX_POST_ID})",
    )
    add_request_timeout(parser)


events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]


# --- what a correct answer looks like -------------------------------------------------


def parse_json(response: ResponseContextManager) -> Any:
    """The decoded body, or raise ValueError."""
    return json.loads(response.text or "")


def is_row(value: Any) -> bool:
    """A World row: ``{"id": int, "randomNumber": int}``."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), int)
        and isinstance(value.get("randomNumber"), int)
    )


def expect_plaintext(response: ResponseContextManager) -> str | None:
    return None if response.text == HELLO else f"body is not {HELLO!r}"


def expect_json(response: ResponseContextManager) -> str | None:
    return None if parse_json(response) == {"message": HELLO} else "unexpected JSON body"


def expect_row(response: ResponseContextManager) -> str | None:
    return None if is_row(parse_json(response)) else "body is not a row"


def expect_rows(count: int) -> Validator:
    def check(response: ResponseContextManager) -> str | None:
        rows = parse_json(response)
        if not isinstance(rows, list) or len(rows) != count:
            return f"body is not a list of {count} rows"
        return None if all(is_row(row) for row in rows) else "malformed row"

    return check


def expect_fortunes(response: ResponseContextManager) -> str | None:
    text = response.text or ""
    if ADDED_FORTUNE not in text:
        return "the fortune added at request time is missing"
    # 13 fortune rows, plus the header row.
    rows = text.count("<tr")
    return None if rows in (FORTUNE_ROWS, FORTUNE_ROWS + 1) else f"{rows} table rows"


def expect_feed(user_id: int) -> Validator:
    def check(response: ResponseContextManager) -> str | None:
        body = parse_json(response)
        if not isinstance(body, dict) or body.get("user_id") != user_id:
            return "body does not name the user"
        posts = body.get("posts")
        if not isinstance(posts, list) or len(posts) > FEED_SIZE:
            return f"body has no list of at most {FEED_SIZE} posts"
        return None

    return check


def expect_html(response: ResponseContextManager) -> str | None:
    text = response.text or ""
    return None if "<html" in text.lower() else "body is not an HTML page"


def expect_like(post_id: int) -> Validator:
    def check(response: ResponseContextManager) -> str | None:
        body = parse_json(response)
        if not isinstance(body, dict) or body.get("post_id") != post_id:
            return "body does not name the liked post"
        return None if isinstance(body.get("likes"), int) else "body has no like count"

    return check


def expect_upstream(ms: int) -> Validator:
    def check(response: ResponseContextManager) -> str | None:
        body = parse_json(response)
        if not isinstance(body, dict) or body.get("ms") != ms or "upstream" not in body:
            return "body is not the upstream's answer"
        return None

    return check


# --- users ------------------------------------------------------------------------------


class BenchUser(FastHttpUser):
    """Shared plumbing: options, the variant prefix and the response check."""

    abstract = True
    wait_time = constant(0)
    paces_itself = True
    """Takes its own ticket of the schedule per request (``loadtests/userfile.py``)."""

    def __init__(self, environment: Any) -> None:
        # Read by FastHttpUser.__init__ when it builds the client.
        self.network_timeout = self.connection_timeout = request_timeout(environment)
        super().__init__(environment)

    def option(self, name: str, default: Any) -> Any:
        options = self.environment.parsed_options
        return getattr(options, name, default) if options is not None else default

    @property
    def prefix(self) -> str:
        return f"/{self.option('variant', 'async')}"

    def random_user(self) -> int:
        return random.randint(1, int(self.option("max_user_id", DEFAULT_MAX_USER_ID)))

    def random_post(self) -> int:
        return random.randint(1, int(self.option("max_post_id", DEFAULT_MAX_POST_ID)))

    def check(
        self,
        path: str,
        validate: Validator,
        *,
        name: str | None = None,
        method: str = "GET",
        payload: Any = None,
    ) -> None:
        """Request ``prefix + path``; anything but a 200 with a valid body fails.

        The request waits for its turn on the schedule (``loadtests/pacing.py``:
        at once in a closed loop), and its response time, in Locust's statistics
        too, runs from when it was meant to be sent.
        """
        url = self.prefix + path
        paced_request(
            self.client,
            method,
            url,
            lambda response: self.problem(response, validate),
            name=name or url.split("?")[0],
            json=payload,
        )

    @staticmethod
    def problem(response: ResponseContextManager, validate: Validator) -> str | None:
        """What is wrong with a response (None: a 200 with a valid body)."""
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        try:
            return validate(response)
        except ValueError:
            return "invalid JSON"

    # One method per endpoint, shared by the single-endpoint users and MixedUser.

    def do_plaintext(self) -> None:
        self.check("/plaintext", expect_plaintext)

    def do_json(self) -> None:
        self.check("/json", expect_json)

    def do_db(self) -> None:
        self.check("/db", expect_row)

    def do_queries(self) -> None:
        n = int(self.option("queries", DEFAULT_QUERIES))
        self.check(f"/queries?queries={n}", expect_rows(n))

    def do_fortunes(self) -> None:
        self.check("/fortunes", expect_fortunes)

    def do_updates(self) -> None:
        n = int(self.option("queries", DEFAULT_QUERIES))
        self.check(f"/updates?queries={n}", expect_rows(n))

    def do_cached_queries(self) -> None:
        n = int(self.option("queries", DEFAULT_QUERIES))
        self.check(f"/cached-queries?count={n}", expect_rows(n))

    def do_feed(self) -> None:
        user_id = self.random_user()
        self.check(f"/feed/{user_id}", expect_feed(user_id), name=f"{self.prefix}/feed/[user]")

    def do_profile(self) -> None:
        self.check(
            f"/profile/{self.random_user()}", expect_html, name=f"{self.prefix}/profile/[user]"
        )

    def do_like(self) -> None:
        post_id = self.random_post()
        payload = {"user_id": self.random_user(), "post_id": post_id}
        self.check("/like", expect_like(post_id), method="POST", payload=payload)

    def do_upstream(self) -> None:
        ms = int(self.option("upstream_ms", DEFAULT_UPSTREAM_MS))
        self.check(f"/upstream?ms={ms}", expect_upstream(ms))


class PlaintextUser(BenchUser):
    @tag("plaintext")
    @task
    def plaintext(self) -> None:
        self.do_plaintext()


class JsonUser(BenchUser):
    @tag("json")
    @task
    def json_message(self) -> None:  # not `json`: User.json() is a Locust classmethod
        self.do_json()


class DbUser(BenchUser):
    @tag("db")
    @task
    def db(self) -> None:
        self.do_db()


class QueriesUser(BenchUser):
    @tag("queries")
    @task
    def queries(self) -> None:
        self.do_queries()


class FortunesUser(BenchUser):
    @tag("fortunes")
    @task
    def fortunes(self) -> None:
        self.do_fortunes()


class UpdatesUser(BenchUser):
    @tag("updates")
    @task
    def updates(self) -> None:
        self.do_updates()


class CachedQueriesUser(BenchUser):
    @tag("cached-queries")
    @task
    def cached_queries(self) -> None:
        self.do_cached_queries()


class FeedUser(BenchUser):
    @tag("feed")
    @task
    def feed(self) -> None:
        self.do_feed()


class ProfileUser(BenchUser):
    @tag("profile")
    @task
    def profile(self) -> None:
        self.do_profile()


class LikeUser(BenchUser):
    @tag("like")
    @task
    def like(self) -> None:
        self.do_like()


class UpstreamUser(BenchUser):
    @tag("upstream")
    @task
    def upstream(self) -> None:
        self.do_upstream()


class MixedUser(BenchUser):
    """Instagram-like traffic: mostly feed reads, some profiles, likes and upstream calls."""

    @tag("mixed", "feed")
    @task(MIXED_WEIGHTS["feed"])
    def feed(self) -> None:
        self.do_feed()

    @tag("mixed", "profile")
    @task(MIXED_WEIGHTS["profile"])
    def profile(self) -> None:
        self.do_profile()

    @tag("mixed", "like")
    @task(MIXED_WEIGHTS["like"])
    def like(self) -> None:
        self.do_like()

    @tag("mixed", "upstream")
    @task(MIXED_WEIGHTS["upstream"])
    def upstream(self) -> None:
        self.do_upstream()


# The workload name -> user class mapping, in the catalog's order.
USER_CLASSES: dict[str, type[BenchUser]] = {
    name: globals()[workload.user_class] for name, workload in WORKLOADS.items()
}
