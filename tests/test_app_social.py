"""The social endpoints: feed, profile and like, sync and async."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest
from django.db.models import Count
from pytest_django import DjangoAssertNumQueries

from apps.bench.models import Comment, Follow, Like, Member, Post
from apps.bench.queries import FEED_QUERIES
from apps.bench.seed import SeedSizes
from tests.conftest import Api

pytestmark = pytest.mark.django_db

PROFILE_QUERIES = 4  # the member, follower count, post count, newest posts


def test_feed_content(api: Api, seeded: SeedSizes) -> None:
    user_id = 1
    resp = api.get(f"feed/{user_id}")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    data = resp.json()
    assert data["user_id"] == user_id
    posts = data["posts"]

    followees = set(Follow.objects.filter(follower_id=user_id).values_list("followee", flat=True))
    expected = list(
        Post.objects.filter(author__in=followees)
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)[:20]
    )
    assert expected, "the small seed should give user 1 a non-empty feed"
    assert [p["id"] for p in posts] == expected

    likes = dict(
        Like.objects.filter(post__in=expected)
        .values("post")
        .annotate(n=Count("id"))
        .values_list("post", "n")
    )
    comments = dict(
        Comment.objects.filter(post__in=expected)
        .values("post")
        .annotate(n=Count("id"))
        .values_list("post", "n")
    )
    for post in posts:
        stored = Post.objects.select_related("author").get(id=post["id"])
        assert post["author"] == {
            "id": stored.author.id,
            "username": stored.author.username,
            "display_name": stored.author.display_name,
        }
        assert post["caption"] == stored.caption
        assert datetime.fromisoformat(post["created_at"]) == stored.created_at
        assert post["likes"] == likes.get(post["id"], 0)
        assert post["comments"] == comments.get(post["id"], 0)
        newest = list(
            Comment.objects.filter(post_id=post["id"])
            .order_by("-created_at", "-id")
            .values_list("id", flat=True)[:3]
        )
        assert [c["id"] for c in post["recent_comments"]] == newest
        for comment in post["recent_comments"]:
            assert set(comment) == {"id", "author", "text", "created_at"}
            assert set(comment["author"]) == {"id", "username", "display_name"}
    assert any(p["likes"] for p in posts)
    assert any(p["recent_comments"] for p in posts)


def test_feed_same_in_both_variants(seeded: SeedSizes) -> None:
    for user_id in (1, 7, 30):
        assert (
            Api("sync").get(f"feed/{user_id}").json() == Api("async").get(f"feed/{user_id}").json()
        )


def test_feed_query_count_is_bounded(
    api: Api, seeded: SeedSizes, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    for user_id in (1, 2, 3):
        with django_assert_num_queries(FEED_QUERIES):
            posts = api.get(f"feed/{user_id}").json()["posts"]
        assert len(posts) == 20


def test_feed_of_someone_following_nobody(api: Api, seeded: SeedSizes) -> None:
    loner = Member.objects.create(
        username="loner", display_name="Lone", created_at=datetime.now(UTC)
    )
    resp = api.get(f"feed/{loner.id}")
    assert resp.status == 200
    assert resp.json() == {"user_id": loner.id, "posts": []}


def test_profile(
    api: Api, seeded: SeedSizes, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    member = Member.objects.get(id=3)
    with django_assert_num_queries(PROFILE_QUERIES):
        resp = api.get("profile/3")
    assert resp.status == 200
    assert resp.content_type == "text/html; charset=utf-8"
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert "bench/profile.html" in resp.templates
    text = resp.text
    assert html.escape(member.display_name) in text
    assert f"@{member.username}" in text
    followers = Follow.objects.filter(followee=member).count()
    post_count = Post.objects.filter(author=member).count()
    assert f'<span class="followers">{followers}</span>' in text
    assert f'<span class="posts">{post_count}</span>' in text
    newest = list(Post.objects.filter(author=member).order_by("-created_at", "-id")[:12])
    assert text.count('<article class="post"') == len(newest) == min(post_count, 12)
    positions = [text.index(f'id="post-{post.id}"') for post in newest]
    assert positions == sorted(positions)


def test_profile_escapes_user_content(api: Api, seeded: SeedSizes) -> None:
    member = Member.objects.create(
        username="mallory",
        display_name="<script>alert(1)</script>",
        bio='"quoted" & <b>bold</b>',
        created_at=datetime.now(UTC),
    )
    text = api.get(f"profile/{member.id}").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "No posts yet." in text


def _unliked_pair() -> tuple[int, int]:
    liked = set(Like.objects.values_list("user_id", "post_id"))
    for user_id in range(1, 31):
        for post_id in range(1, 201):
            if (user_id, post_id) not in liked:
                return user_id, post_id
    raise AssertionError("no free (user, post) pair")


def test_like_is_idempotent(api: Api, seeded: SeedSizes) -> None:
    user_id, post_id = _unliked_pair()
    before = Like.objects.filter(post_id=post_id).count()
    first = api.post("like", {"user_id": user_id, "post_id": post_id})
    assert first.status == 200
    assert first.content_type == "application/json"
    assert int(first.headers["Content-Length"]) == len(first.content)
    assert first.json() == {"post_id": post_id, "likes": before + 1, "created": True}
    second = api.post("like", {"user_id": user_id, "post_id": post_id})
    assert second.json() == {"post_id": post_id, "likes": before + 1, "created": False}
    assert Like.objects.filter(user_id=user_id, post_id=post_id).count() == 1


def test_like_existing_pair_is_not_duplicated(api: Api, seeded: SeedSizes) -> None:
    like = Like.objects.order_by("id").first()
    assert like is not None
    count = Like.objects.filter(post_id=like.post_id).count()
    resp = api.post("like", {"user_id": like.user_id, "post_id": like.post_id})
    assert resp.json() == {"post_id": like.post_id, "likes": count, "created": False}
