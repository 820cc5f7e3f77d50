"""Bad input never gives a 500; both middleware profiles serve every endpoint."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_django import Settings as SettingsWrapper

from apps.bench.seed import SeedSizes
from apps.bench.views_common import LikeRequest, parse_count, parse_like_body, parse_ms
from apps.project.settings import MIDDLEWARE_PROFILES
from tests.conftest import Api, Resp, call

pytestmark = pytest.mark.django_db

GET_ENDPOINTS = [
    "plaintext",
    "json",
    "db",
    "queries",
    "fortunes",
    "updates",
    "cached-queries",
    "feed/1",
    "profile/1",
    "upstream",
]
HUGE = 10**30


def assert_json_error(resp: Resp, status: int) -> None:
    assert resp.status == status, resp.content
    assert resp.content_type == "application/json"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    body = resp.json()
    assert isinstance(body["error"], str)
    assert body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "feed/9999",
        "feed/0",
        f"feed/{HUGE}",
        "profile/9999",
        "profile/0",
        f"profile/{HUGE}",
    ],
)
def test_unknown_users_are_404(api: Api, seeded: SeedSizes, path: str) -> None:
    assert_json_error(api.get(path), 404)


@pytest.mark.parametrize("path", ["nope", "feed/abc", "feed/-1", "json/", "feed"])
def test_unknown_paths_are_json_404(api: Api, path: str) -> None:
    assert_json_error(api.get(path), 404)


def test_unknown_root_path_is_json_404() -> None:
    assert_json_error(call("GET", "/nothing/here"), 404)


@pytest.mark.parametrize("path", GET_ENDPOINTS)
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(api: Api, path: str, method: str) -> None:
    resp = api.request(method, path)
    assert_json_error(resp, 405)
    assert resp.headers["Allow"] == "GET, HEAD"
    assert resp.json()["allowed"] == ["GET", "HEAD"]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_like_wrong_method_is_405(api: Api, method: str) -> None:
    resp = api.request(method, "like")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    if method != "HEAD":
        assert_json_error(resp, 405)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"text"',
        b"{}",
        b'{"user_id": 1}',
        b'{"post_id": 1}',
        b'{"user_id": "1", "post_id": 1}',
        b'{"user_id": 1, "post_id": 1.5}',
        b'{"user_id": true, "post_id": 1}',
        b'{"user_id": null, "post_id": 1}',
        b"[" * 10_000 + b"]" * 10_000,
    ],
)
def test_like_bad_body_is_400(api: Api, seeded: SeedSizes, body: bytes) -> None:
    assert_json_error(api.post("like", raw=body), 400)


@pytest.mark.parametrize(
    ("user_id", "post_id"),
    [(9999, 1), (0, 1), (-1, 1), (HUGE, 1), (1, 9999), (1, 0), (1, -HUGE), (1, HUGE)],
)
def test_like_unknown_ids_are_404(api: Api, seeded: SeedSizes, user_id: int, post_id: int) -> None:
    resp = api.post("like", {"user_id": user_id, "post_id": post_id})
    assert_json_error(resp, 404)
    assert resp.json()["error"] == ("user not found" if user_id != 1 else "post not found")


@pytest.mark.parametrize("ms", ["-1", "5001", "abc", "1.5", "", "99999999999999999999"])
def test_upstream_bad_ms_is_400(api: Api, ms: str) -> None:
    assert_json_error(api.get(f"upstream?ms={ms}"), 400)


# -- the pure parsers, over many inputs ----------------------------------------


@given(st.one_of(st.none(), st.text(max_size=30), st.integers().map(str)))
def test_parse_count_always_in_range(raw: str | None) -> None:
    value = parse_count(raw)
    assert 1 <= value <= 500
    # int() strips ASCII whitespace only (not all of \s, e.g. not "\x1f").
    if raw is None or not re.fullmatch(r"[ \t\n\r\f\v]*[+-]?[0-9]+[ \t\n\r\f\v]*", raw):
        return
    assert value == min(max(int(raw), 1), 500)


@given(st.one_of(st.none(), st.text(max_size=30), st.integers().map(str)))
def test_parse_ms_accepts_only_0_to_5000(raw: str | None) -> None:
    value = parse_ms(raw)
    assert value is None or 0 <= value <= 5000


@given(
    st.binary(max_size=200)
    | st.recursive(st.none() | st.integers(), st.lists).map(repr).map(str.encode)
)
def test_parse_like_body_never_raises(body: bytes) -> None:
    result = parse_like_body(body)
    assert isinstance(result, LikeRequest | str)


# -- middleware profiles ----------------------------------------------------


@pytest.fixture(params=sorted(MIDDLEWARE_PROFILES))
def profile(request: pytest.FixtureRequest, settings: SettingsWrapper) -> str:
    name = str(request.param)
    settings.MIDDLEWARE = MIDDLEWARE_PROFILES[name]
    return name


def test_every_endpoint_under_each_profile(
    api: Api, profile: str, seeded: SeedSizes, settings: SettingsWrapper, upstream_url: str
) -> None:
    settings.UPSTREAM_URL = upstream_url
    for path in GET_ENDPOINTS:
        resp = api.get(path)
        assert resp.status == 200, (path, resp.content)
        assert int(resp.headers["Content-Length"]) == len(resp.content)
        if profile == "default":
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        else:
            assert "X-Frame-Options" not in resp.headers
    # The like API is csrf_exempt: even with CSRF checks enforced it works.
    strict = Api(api.variant, enforce_csrf_checks=True)
    resp = strict.post("like", {"user_id": 1, "post_id": 1})
    assert resp.status == 200, resp.content
    assert resp.json()["post_id"] == 1
    assert_json_error(strict.get("feed/9999"), 404)
    assert_json_error(strict.request("POST", "json"), 405)
