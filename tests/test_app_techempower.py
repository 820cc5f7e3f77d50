"""The TechEmpower Framework Benchmarks endpoints, sync and async, to their rules."""

from __future__ import annotations

import html

import pytest
from django.core.cache import cache
from pytest_django import DjangoAssertNumQueries

from apps.bench.models import WORLD_ROWS, World
from apps.bench.seed import SeedSizes
from apps.bench.views_common import world_key
from tests.conftest import Api, Resp

pytestmark = pytest.mark.django_db

# Written out here (not imported) to check they are stored exactly as written.
FORTUNES = {
    1: "fortune: No such file or directory",
    2: "A computer scientist is someone who fixes things that aren't broken.",
    3: "After enough decimal places, nobody gives a damn.",
    4: "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    5: "A computer program does what you tell it to do, not what you want it to do.",
    6: "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen",
    7: "Any program that runs right is obsolete.",
    8: "A list is only as strong as its weakest link. — Donald Knuth",
    9: "Feature: A bug with seniority.",
    10: "Computers make very fast, very accurate mistakes.",
    11: '<script>alert("This should not be displayed in a browser alert box.");</script>',
    12: "フレームワークのベンチマーク",
}

# (query string, rows expected) per TechEmpower's rules.
COUNT_CASES = [
    ("", 1),
    ("=", 1),
    ("=0", 1),
    ("=-5", 1),
    ("=foo", 1),
    ("=1", 1),
    ("=7", 7),
    ("=500", 500),
    ("=501", 500),
]


def assert_common_headers(resp: Resp, content_type: str) -> None:
    assert resp.status == 200
    assert resp.content_type == content_type
    assert int(resp.headers["Content-Length"]) == len(resp.content)


def assert_world_rows(rows: list[dict[str, int]]) -> None:
    """Each row is a real World row, as the database holds it."""
    stored = World.objects.in_bulk([row["id"] for row in rows])
    for row in rows:
        assert set(row) == {"id", "randomNumber"}
        assert 1 <= row["id"] <= 10_000
        assert 1 <= row["randomNumber"] <= 10_000
        assert stored[row["id"]].random_number == row["randomNumber"]


def test_plaintext(api: Api) -> None:
    resp = api.get("plaintext")
    assert_common_headers(resp, "text/plain")
    assert resp.content == b"Hello, World!"


def test_json(api: Api) -> None:
    resp = api.get("json")
    assert_common_headers(resp, "application/json")
    assert resp.json() == {"message": "Hello, World!"}


def test_db(api: Api, seeded: SeedSizes) -> None:
    resp = api.get("db")
    assert_common_headers(resp, "application/json")
    row = resp.json()
    assert isinstance(row, dict)
    assert_world_rows([row])


@pytest.mark.parametrize(("query", "expected"), COUNT_CASES)
def test_queries_count_rules(api: Api, seeded: SeedSizes, query: str, expected: int) -> None:
    resp = api.get(f"queries?queries{query}" if query else "queries")
    assert_common_headers(resp, "application/json")
    rows = resp.json()
    assert isinstance(rows, list)
    assert len(rows) == expected
    assert_world_rows(rows)


def test_queries_runs_one_query_per_row(
    api: Api, seeded: SeedSizes, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(12):
        resp = api.get("queries?queries=12")
    assert len(resp.json()) == 12


def expected_fortunes_html() -> str:
    rows = sorted(
        [*FORTUNES.items(), (0, "Additional fortune added at request time.")],
        key=lambda item: item[1],
    )
    cells = "".join(
        f"<tr><td>{fid}</td><td>{html.escape(message)}</td></tr>" for fid, message in rows
    )
    return (
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
        f"<tr><th>id</th><th>message</th></tr>{cells}</table></body></html>"
    )


def test_fortunes_exact_html(api: Api, seeded: SeedSizes) -> None:
    resp = api.get("fortunes")
    assert_common_headers(resp, "text/html; charset=utf-8")
    assert resp.text == expected_fortunes_html()
    assert "bench/fortunes.html" in resp.templates


def test_fortunes_escaping_and_order(api: Api, seeded: SeedSizes) -> None:
    text = api.get("fortunes").text
    assert "<script>" not in text
    assert (
        "&lt;script&gt;alert(&quot;This should not be displayed in a browser alert box."
        "&quot;);&lt;/script&gt;" in text
    )
    assert "aren&#x27;t broken" in text
    assert "フレームワークのベンチマーク" in text
    assert "<tr><td>0</td><td>Additional fortune added at request time.</td></tr>" in text
    # Sorted by message: id 11 ("<script>...") sorts first, the Japanese one last.
    order = [int(cell.split("</td>")[0]) for cell in text.split("<tr><td>")[1:]]
    assert order == [11, 4, 5, 2, 8, 0, 3, 7, 10, 6, 9, 1, 12]


def test_updates_change_rows(api: Api, seeded: SeedSizes) -> None:
    before = dict(World.objects.values_list("id", "random_number"))
    resp = api.get("updates?queries=20")
    assert_common_headers(resp, "application/json")
    rows = resp.json()
    assert len(rows) == 20
    assert len({row["id"] for row in rows}) == 20  # each row written once
    assert_world_rows(rows)  # the database holds the new numbers
    for row in rows:
        assert row["randomNumber"] != before[row["id"]]
    after = dict(World.objects.values_list("id", "random_number"))
    changed = {world_id for world_id in before if before[world_id] != after[world_id]}
    assert changed == {row["id"] for row in rows}


@pytest.mark.parametrize(("query", "expected"), [("", 1), ("=0", 1), ("=foo", 1), ("=501", 500)])
def test_updates_count_rules(api: Api, seeded: SeedSizes, query: str, expected: int) -> None:
    resp = api.get(f"updates?queries{query}" if query else "updates")
    assert resp.status == 200
    rows = resp.json()
    assert len(rows) == expected
    assert_world_rows(rows)


@pytest.fixture
def empty_world_cache() -> None:
    """No World row in the cache. The cache outlives each test's database
    transaction: a test that ran ``updates`` and then ``cached-queries`` (the
    fuzz tests do) leaves rows cached that its rollback undid in the database."""
    cache.delete_many([world_key(i) for i in range(1, WORLD_ROWS + 1)])


@pytest.mark.parametrize(("query", "expected"), [("", 1), ("=0", 1), ("=foo", 1), ("=501", 500)])
@pytest.mark.usefixtures("empty_world_cache")
def test_cached_queries_count_rules(api: Api, seeded: SeedSizes, query: str, expected: int) -> None:
    resp = api.get(f"cached-queries?count{query}" if query else "cached-queries")
    assert_common_headers(resp, "application/json")
    rows = resp.json()
    assert len(rows) == expected
    assert_world_rows(rows)


@pytest.mark.usefixtures("empty_world_cache")
def test_cached_queries_fill_and_use_the_cache(
    api: Api, seeded: SeedSizes, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(1):  # the misses, in one query
        rows = api.get("cached-queries?count=50").json()
    assert_world_rows(rows)
    for row in rows:
        assert cache.get(world_key(row["id"])) == row

    cache.set_many({world_key(w["id"]): w for w in _all_worlds()})
    with django_assert_num_queries(0):  # all hits
        rows = api.get("cached-queries?count=500").json()
    assert len(rows) == 500
    assert_world_rows(rows)


def _all_worlds() -> list[dict[str, int]]:
    return [
        {"id": world_id, "randomNumber": number}
        for world_id, number in World.objects.values_list("id", "random_number")
    ]
