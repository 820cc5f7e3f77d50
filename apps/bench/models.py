"""Models of the benchmark subject.

Two groups:

- the TechEmpower Framework Benchmarks tables, ``World`` (10,000 rows) and
  ``Fortune`` (12 rows);
- an Instagram-like social graph: ``Member`` (a user of the site), ``Follow``,
  ``Post``, ``Like`` and ``Comment``.

``SeedState`` remembers which seed is in the database, so that ``prepare`` can
tell in one query that there is nothing to do.
"""

from __future__ import annotations

from django.db import models

WORLD_ROWS = 10_000
"""Number of World rows; ids are 1..WORLD_ROWS, random numbers 1..WORLD_ROWS."""


class World(models.Model):
    id = models.IntegerField(primary_key=True)
    random_number = models.IntegerField(db_column="randomnumber")

    def __str__(self) -> str:
        return f"World {self.id}: {self.random_number}"


class Fortune(models.Model):
    id = models.IntegerField(primary_key=True)
    message = models.CharField(max_length=2048)

    def __str__(self) -> str:
        return f"Fortune {self.id}"


class Member(models.Model):
    """A user of the social site (not ``django.contrib.auth``'s User)."""

    username = models.CharField(max_length=40, unique=True)
    display_name = models.CharField(max_length=80)
    bio = models.TextField(blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.username


class Follow(models.Model):
    follower = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="following")
    followee = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="followers")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["follower", "followee"], name="follow_once"),
            models.CheckConstraint(
                condition=~models.Q(follower=models.F("followee")), name="follow_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.follower_id} follows {self.followee_id}"


class Post(models.Model):
    author = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="posts")
    caption = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["author", "-created_at"], name="post_author_newest")]

    def __str__(self) -> str:
        return f"Post {self.pk} by {self.author_id}"


class Like(models.Model):
    user = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="likes")
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="likes")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "post"], name="like_once")]

    def __str__(self) -> str:
        return f"{self.user_id} likes {self.post_id}"


class Comment(models.Model):
    post = models.ForeignKey(Post, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="comments")
    text = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["post", "-created_at"], name="comment_post_newest")]

    def __str__(self) -> str:
        return f"Comment {self.pk} on {self.post_id}"


class SeedState(models.Model):
    """One row per database: the fingerprint of the seed it holds."""

    name = models.CharField(max_length=40, primary_key=True)
    fingerprint = models.TextField()
    seeded_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.fingerprint}"
