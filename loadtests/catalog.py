"""The workloads, as data: one name, one Locust user class, one description.

This module never imports Locust (importing Locust monkey-patches the
standard library with gevent), so the benchmark driver can read it. The user
classes themselves live in ``loadtests/locustfile.py``; ``USER_CLASSES``
there is built from ``WORKLOADS`` here, and a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Defaults shared by the locustfile's command-line options and the driver.
DEFAULT_QUERIES = 20
DEFAULT_UPSTREAM_MS = 50
# The app's default seed: users 1..1000, posts 1..20000.
DEFAULT_MAX_USER_ID = 1000
DEFAULT_MAX_POST_ID = 20000
# A request unanswered for this long fails (connect, and each read or write),
# so that a hung server turns into counted failures instead of stalled users.
DEFAULT_REQUEST_TIMEOUT_S = 30.0

# The Instagram-like mix of the `mixed` workload, in percent of requests.
MIXED_WEIGHTS: dict[str, int] = {"feed": 50, "profile": 20, "like": 10, "upstream": 20}


@dataclass(frozen=True)
class Workload:
    """One workload: the traffic of one Locust user class."""

    name: str
    user_class: str
    description: str
    needs_upstream: bool = False


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("plaintext", "PlaintextUser", 'GET plaintext: "Hello, World!"'),
        Workload("json", "JsonUser", 'GET json: {"message": "Hello, World!"}'),
        Workload("db", "DbUser", "GET db: one random row"),
        Workload("queries", "QueriesUser", f"GET queries?queries={DEFAULT_QUERIES}: N random rows"),
        Workload("fortunes", "FortunesUser", "GET fortunes: an HTML table rendered by a template"),
        Workload(
            "updates", "UpdatesUser", f"GET updates?queries={DEFAULT_QUERIES}: N rows updated"
        ),
        Workload(
            "cached-queries",
            "CachedQueriesUser",
            f"GET cached-queries?count={DEFAULT_QUERIES}: N rows from the cache",
        ),
        Workload("feed", "FeedUser", "GET feed/<user>: the 20 newest posts of followed users"),
        Workload("profile", "ProfileUser", "GET profile/<user>: an HTML profile page"),
        Workload("like", "LikeUser", "POST like {user_id, post_id}: a write"),
        Workload(
            "upstream",
            "UpstreamUser",
            f"GET upstream?ms={DEFAULT_UPSTREAM_MS}: waits on a slow upstream HTTP service",
            needs_upstream=True,
        ),
        Workload(
            "mixed",
            "MixedUser",
            "Instagram-like mix: "
            + ", ".join(f"{name} {share}%" for name, share in MIXED_WEIGHTS.items()),
            needs_upstream=True,
        ),
    )
}


def needs_upstream(workload: str) -> bool:
    """Whether ``workload`` calls the upstream service (a project's traffic: never)."""
    found = WORKLOADS.get(workload)
    return found is not None and found.needs_upstream


def workload_options(upstream_ms: int, seed: Mapping[str, int]) -> tuple[str, ...]:
    """The suite's workloads' own Locust options: the upstream's delay and the seeded ids
    to draw from (``seed``: ``--seed``'s sizes, the app's defaults where absent)."""
    return (
        "--upstream-ms",
        str(upstream_ms),
        "--max-user-id",
        str(seed.get("users", DEFAULT_MAX_USER_ID)),
        "--max-post-id",
        str(seed.get("posts", DEFAULT_MAX_POST_ID)),
    )
