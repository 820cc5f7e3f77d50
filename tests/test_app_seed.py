"""The seed and prepare commands: deterministic, idempotent, safe to run concurrently."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import models

from apps.bench.models import (
    WORLD_ROWS,
    Comment,
    Follow,
    Fortune,
    Like,
    Member,
    Post,
    SeedState,
    World,
)
from apps.bench.seed import FORTUNES, SeedSizes, build_rows, is_seeded, seed
from tests.conftest import REPO_ROOT, SMALL, TINY_ARGS, PreparedSqlite

TINY = SeedSizes(users=12, follows=3, posts=40, likes=80, comments=60)
MODELS: tuple[type[models.Model], ...] = (World, Fortune, Member, Follow, Post, Like, Comment)


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every seeded table, in id order."""
    return {
        model.__name__: [
            tuple(row)
            for row in model._default_manager.order_by("pk").values_list(
                *[f.attname for f in model._meta.concrete_fields]
            )
        ]
        for model in MODELS
    }


def test_build_rows_is_deterministic() -> None:
    def values(sizes: SeedSizes) -> dict[str, list[tuple[Any, ...]]]:
        return {
            model.__name__: [
                tuple(getattr(obj, f.attname) for f in model._meta.concrete_fields) for obj in objs
            ]
            for model, objs in build_rows(sizes).items()
        }

    first, second = values(SMALL), values(SMALL)
    assert first == second
    assert values(TINY) != first
    counts = {name: len(rows) for name, rows in first.items()}
    assert counts == {
        "World": 10_000,
        "Fortune": 12,
        "Member": 30,
        "Follow": 30 * 5,
        "Post": 200,
        "Like": 600,
        "Comment": 400,
    }


@pytest.mark.django_db
def test_seed_twice_gives_identical_rows(seeded: SeedSizes) -> None:
    seed(TINY)
    first = dump()
    # Disturb the data the way the benchmark does, then seed again.
    World.objects.filter(id__lte=50).update(random_number=1)
    Like.objects.filter(id__lte=10).delete()
    Member.objects.create(username="extra", display_name="Extra", created_at=datetime.now(UTC))
    assert dump() != first
    result = seed(TINY)
    assert result.seeded
    assert dump() == first
    assert is_seeded(TINY)
    assert not is_seeded(SMALL)


@pytest.mark.django_db
def test_seed_content(seeded: SeedSizes) -> None:
    assert list(World.objects.order_by("id").values_list("id", flat=True)) == list(
        range(1, WORLD_ROWS + 1)
    )
    numbers = list(World.objects.values_list("random_number", flat=True))
    assert min(numbers) >= 1
    assert max(numbers) <= 10_000
    assert len(set(numbers)) > 5_000  # random, not constant
    assert dict(Fortune.objects.values_list("id", "message")) == dict(FORTUNES)
    assert Member.objects.count() == 30
    for member in Member.objects.all():
        followees = list(Follow.objects.filter(follower=member).values_list("followee", flat=True))
        assert len(followees) == len(set(followees)) == 5
        assert member.id not in followees
    assert Like.objects.count() == 600
    assert Comment.objects.count() == 400


@pytest.mark.django_db
def test_seed_if_needed_skips(seeded: SeedSizes) -> None:
    before = dump()
    result = seed(SMALL, only_if_needed=True)
    assert not result.seeded
    assert dump() == before


@pytest.mark.django_db
def test_new_rows_after_seed_get_fresh_ids(seeded: SeedSizes) -> None:
    # Seeding writes explicit ids; the sequences must have moved past them.
    post = Post.objects.get(id=1)
    member = Member.objects.create(
        username="newcomer", display_name="New", created_at=post.created_at
    )
    like = Like.objects.create(user=member, post=post, created_at=post.created_at)
    assert member.id > 30
    assert like.id > 600


@pytest.mark.django_db
def test_seed_command(seeded: SeedSizes) -> None:
    out = io.StringIO()
    call_command("seed", *TINY_ARGS, stdout=out)
    assert "seeded in" in out.getvalue()
    assert Member.objects.count() == 12
    out = io.StringIO()
    call_command("seed", *TINY_ARGS, "--if-needed", stdout=out)
    assert "already seeded" in out.getvalue()


@pytest.mark.django_db
def test_prepare_command_when_done(seeded: SeedSizes) -> None:
    out = io.StringIO()
    started = time.perf_counter()
    call_command(
        "prepare",
        "--users=30",
        "--follows=5",
        "--posts=200",
        "--likes=600",
        "--comments=400",
        stdout=out,
    )
    assert time.perf_counter() - started < 2
    assert "already done" in out.getvalue()
    assert SeedState.objects.get().fingerprint == SMALL.fingerprint()


@pytest.mark.parametrize(
    "args",
    [
        ["--users", "5", "--follows", "5"],
        ["--users", "-1"],
        ["--users", "2", "--posts", "2", "--likes", "5"],
        ["--users", "0", "--follows", "0", "--posts", "1"],
    ],
)
def test_seed_command_rejects_impossible_sizes(args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("seed", *args)


def test_concurrent_prepare_on_a_fresh_sqlite_file(prepared_sqlite: PreparedSqlite) -> None:
    for result in prepared_sqlite.results:
        assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.strip() for result in prepared_sqlite.results)
    # One did the work, the other waited for the lock and found it done.
    assert lines[0].startswith("prepare: already done"), lines
    assert lines[1].startswith("prepare: migrated and seeded"), lines

    started = time.perf_counter()
    again = subprocess.run(
        [sys.executable, "-m", "apps.manage", "prepare", *TINY_ARGS],
        cwd=REPO_ROOT,
        env=prepared_sqlite.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert time.perf_counter() - started < 2
    assert again.stdout.startswith("prepare: already done")

    conn = sqlite3.connect(prepared_sqlite.data_dir / "bench.sqlite3")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        counts = {
            table: conn.execute(f"SELECT COUNT(*) FROM bench_{table}").fetchone()[0]
            for table in ("world", "fortune", "member", "follow", "post", "like", "comment")
        }
    finally:
        conn.close()
    assert counts == {
        "world": 10_000,
        "fortune": 12,
        "member": 12,
        "follow": 36,
        "post": 40,
        "like": 80,
        "comment": 60,
    }


@pytest.mark.django_db
def test_seeded_rows_read_back_as_they_were_built(seeded: SeedSizes) -> None:
    """The seed inserts with ``executemany``, not ``bulk_create``: every value, the
    adapted datetimes included, reads back through the ORM as the instance held it."""
    seed(TINY)
    built = build_rows(TINY)
    for model in (Member, Post, Comment):
        expected = {
            obj.pk: {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
            for obj in built[model]
        }
        stored = {
            obj.pk: {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
            for obj in model.objects.all()
        }
        assert stored == expected, model.__name__
