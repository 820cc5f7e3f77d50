"""The app under random bad input: never a 500, never a stack trace, never a debug page.

Hypothesis drives Django's test clients (in-process, both view variants, both
middleware profiles) with random query strings, path suffixes, methods, Host
headers and like bodies. The clients re-raise any exception a view lets
escape, so an unhandled error fails the test with its traceback; a response
must also be below 500 and carry nothing of Django's debug pages.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.http.response import HttpResponseBase
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pytest_django import Settings as SettingsWrapper

from apps.bench.seed import SeedSizes
from apps.bench.views_common import parse_ms
from apps.project.settings import MIDDLEWARE_PROFILES

pytestmark = pytest.mark.django_db

VARIANTS = ("sync", "async")
ENDPOINTS = (
    "plaintext",
    "json",
    "db",
    "queries",
    "fortunes",
    "updates",
    "cached-queries",
    "feed/1",
    "profile/1",
    "like",
    "upstream",
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND")
DEBUG_MARKERS = ("Traceback", "Django Version", "Exception Value", "settings.py", "DEBUG = True")
HUGE = 10**40

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Query values: the ones the views parse (queries, count, ms) and anything else.
numbers = st.one_of(
    st.integers(min_value=-HUGE, max_value=HUGE).map(str),
    st.sampled_from(["", "-0", "+1", " 2", "1e3", "0x10", "1_000", "١٢", "NaN", "∞", "5001"]),
)
values = st.one_of(numbers, st.text(max_size=40), st.text(string.printable, max_size=200))
keys = st.one_of(st.sampled_from(["queries", "count", "ms", "user_id"]), st.text(max_size=12))
raw_queries = st.text(alphabet=string.ascii_letters + string.digits + "%&=;+#[]?/<>'", max_size=80)
queries = st.one_of(
    st.lists(st.tuples(keys, values), max_size=6).map(lambda pairs: urlencode(pairs)),
    raw_queries.map(lambda q: quote(q, safe="%&=;+/?")),
)
segments = st.one_of(
    st.integers(min_value=-HUGE, max_value=HUGE).map(str),
    st.text(max_size=30).map(lambda t: quote(t, safe="")),
    st.sampled_from(["", ".", "..", "%00", "%2e%2e", "%ff", "abc", "1.5", "0", "-1"]),
)
paths = st.one_of(
    st.tuples(st.sampled_from(["feed", "profile", "like", "json", "nope"]), segments).map("/".join),
    st.lists(segments, min_size=1, max_size=4).map("/".join),
    st.sampled_from(ENDPOINTS),
)
prefixes = st.sampled_from(["/sync/", "/async/", "/", "/health/", "//", "/static/", "/admin/"])
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-HUGE, max_value=HUGE)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
like_objects = st.fixed_dictionaries(
    {},
    optional={
        "user_id": json_values | st.integers(min_value=-HUGE, max_value=HUGE),
        "post_id": json_values | st.integers(min_value=-HUGE, max_value=HUGE),
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    like_objects.map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "multipart/form-data",
        "application/json; charset=nope",
        "",
    ]
)
hosts = st.sampled_from(["testserver", "127.0.0.1", "evil.example", "", "[::1]", "a b", "x" * 300])


def request(
    variant: str,
    method: str,
    url: str,
    body: bytes = b"",
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> HttpResponseBase:
    """One request through Client (sync) or AsyncClient (async); exceptions propagate."""
    if variant == "sync":
        return Client().generic(method, url, body, content_type, headers=headers)
    client = AsyncClient()

    async def send() -> HttpResponseBase:
        return await client.generic(method, url, body, content_type, headers=headers)

    return async_to_sync(send)()


def assert_safe(response: HttpResponseBase, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, _body(response)[:500])
    body = _body(response)
    for marker in DEBUG_MARKERS:
        assert marker not in body, (what, marker, body[:500])


def _body(response: HttpResponseBase) -> str:
    content = getattr(response, "content", b"")
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else ""


@pytest.fixture(autouse=True)
def _safe_upstream(settings: SettingsWrapper, upstream_url: str, seeded: SeedSizes) -> None:
    """A real upstream, and the settings production runs with."""
    settings.UPSTREAM_URL = upstream_url
    assert django_settings.DEBUG is False


def fast_upstream(url: str) -> None:
    """Skip examples that would make the upstream wait for long (valid ms above 20)."""
    if "upstream" in url:
        from urllib.parse import parse_qs, urlsplit

        for raw in parse_qs(urlsplit(url).query, keep_blank_values=True).get("ms", [])[-1:]:
            ms = parse_ms(raw)
            assume(ms is None or ms <= 20)


def profile_of(name: str) -> Any:
    return override_settings(MIDDLEWARE=MIDDLEWARE_PROFILES[name])


@FUZZ
@given(
    variant=st.sampled_from(VARIANTS),
    profile=st.sampled_from(sorted(MIDDLEWARE_PROFILES)),
    endpoint=st.sampled_from(ENDPOINTS),
    query=queries,
)
@example(variant="sync", profile="minimal", endpoint="queries", query="queries=" + "9" * 5000)
@example(variant="async", profile="minimal", endpoint="db", query="&".join(["a=1"] * 2000))
@example(variant="async", profile="default", endpoint="upstream", query="ms=%ff%fe")
def test_random_query_strings(variant: str, profile: str, endpoint: str, query: str) -> None:
    url = f"/{variant}/{endpoint}?{query}"
    fast_upstream(url)
    method = "POST" if endpoint == "like" else "GET"
    with profile_of(profile):
        assert_safe(request(variant, method, url, b'{"user_id": 1, "post_id": 1}'), url)


@FUZZ
@given(
    variant=st.sampled_from(VARIANTS),
    profile=st.sampled_from(sorted(MIDDLEWARE_PROFILES)),
    prefix=st.one_of(st.none(), prefixes),
    path=paths,
    method=st.sampled_from(METHODS),
    host=hosts,
)
@example(
    variant="sync",
    profile="default",
    prefix=None,
    path=f"feed/{HUGE}",
    method="GET",
    host="testserver",
)
@example(
    variant="async",
    profile="minimal",
    prefix=None,
    path="profile/abc",
    method="GET",
    host="testserver",
)
@example(
    variant="async",
    profile="default",
    prefix=None,
    path="x" * 5000,
    method="GET",
    host="testserver",
)
def test_random_paths_methods_and_hosts(
    variant: str, profile: str, prefix: str | None, path: str, method: str, host: str
) -> None:
    """Any path, under the variant's prefix (``prefix`` None) or another one."""
    url = (prefix or f"/{variant}/") + path
    fast_upstream(url)
    with profile_of(profile):
        response = request(variant, method, url, headers={"Host": host})
    assert_safe(response, f"{method} {url} {host!r}")


@FUZZ
@given(
    variant=st.sampled_from(VARIANTS),
    profile=st.sampled_from(sorted(MIDDLEWARE_PROFILES)),
    body=bodies,
    content_type=content_types,
)
@example(variant="sync", profile="minimal", body=b"x" * (3 * 2**20), content_type="text/plain")
@example(
    variant="async",
    profile="default",
    body=json.dumps({"user_id": HUGE, "post_id": -HUGE}).encode(),
    content_type="application/json",
)
@example(variant="sync", profile="default", body=b"--x\r\n\r\n", content_type="multipart/form-data")
def test_random_like_bodies(variant: str, profile: str, body: bytes, content_type: str) -> None:
    url = f"/{variant}/like"
    with profile_of(profile):
        response = request(variant, "POST", url, body, content_type)
    assert_safe(response, f"POST {url} {body[:80]!r}")
    assert response.status_code in (200, 400, 404, 413), response.status_code


def test_debug_is_off_and_a_404_shows_nothing_of_django() -> None:
    assert django_settings.DEBUG is False
    for variant in VARIANTS:
        response = request(variant, "GET", f"/{variant}/no/such/page")
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert json.loads(_body(response)) == {"error": "not found"}
