"""QuerySets shared by the sync and async views (built here, evaluated there).

Building a QuerySet runs no SQL, so the same builder serves both variants: the
sync view iterates it, the async view uses ``async for``.
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from apps.bench.models import Comment, Follow, Like, Post

FEED_POSTS = 20
FEED_COMMENTS = 3
PROFILE_POSTS = 12

# Queries the feed runs when the user exists and the feed is not empty:
# the user check, the posts (authors, like and comment counts included) and
# one prefetch for the newest comments of all those posts (with their authors).
FEED_QUERIES = 3


def _count_per_post(queryset: QuerySet[Like] | QuerySet[Comment]) -> Coalesce:
    counts = (
        queryset.filter(post=OuterRef("pk"))
        .order_by()
        .values("post")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def feed_posts(user_id: int) -> QuerySet[Post]:
    """The newest posts by the people ``user_id`` follows, ready to serialise.

    Each post carries ``like_count``, ``comment_count`` and ``recent_comments``
    (the newest FEED_COMMENTS, each with its author): 2 queries in all.
    """
    followees = Follow.objects.filter(follower_id=user_id).values("followee_id")
    newest_comments = Comment.objects.select_related("author").order_by("-created_at", "-id")
    return (
        Post.objects.filter(author_id__in=followees)
        .select_related("author")
        .annotate(
            like_count=_count_per_post(Like.objects.all()),
            comment_count=_count_per_post(Comment.objects.all()),
        )
        .prefetch_related(
            Prefetch(
                "comments",
                queryset=newest_comments[:FEED_COMMENTS],
                to_attr="recent_comments",
            )
        )
        .order_by("-created_at", "-id")[:FEED_POSTS]
    )


def profile_posts(user_id: int) -> QuerySet[Post]:
    return Post.objects.filter(author_id=user_id).order_by("-created_at", "-id")[:PROFILE_POSTS]


def followers_of(user_id: int) -> QuerySet[Follow]:
    return Follow.objects.filter(followee_id=user_id)


def posts_by(user_id: int) -> QuerySet[Post]:
    return Post.objects.filter(author_id=user_id)


def likes_of(post_id: int) -> QuerySet[Like]:
    return Like.objects.filter(post_id=post_id)
