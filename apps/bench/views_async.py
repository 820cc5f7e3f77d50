"""Async views (served at /async/...): Django's async ORM and async cache API.

No hand-written sync_to_async: what these views cost is what real async
Django code costs (the ORM's a-methods and ``async for`` hop to a worker
thread inside Django itself; template rendering is plain CPU work).
"""

from __future__ import annotations

import httpx
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from apps.bench import queries, upstream_client
from apps.bench.models import Fortune, Like, Member, Post, World
from apps.bench.views_common import (
    FORTUNES_TEMPLATE,
    GET,
    HELLO,
    POST,
    PROFILE_TEMPLATE,
    LikeRequest,
    async_endpoint,
    distinct_world_ids,
    feed_response,
    json_error,
    json_response,
    new_random_number,
    not_found,
    parse_count,
    parse_like_body,
    parse_ms,
    profile_context,
    random_world_id,
    random_world_ids,
    sorted_fortunes,
    upstream_response,
    upstream_unreachable,
    valid_id,
    world_dict,
    world_key,
)


@async_endpoint(*GET)
async def plaintext(request: HttpRequest) -> HttpResponse:
    return HttpResponse(HELLO.encode(), content_type="text/plain")


@async_endpoint(*GET)
async def json_view(request: HttpRequest) -> HttpResponse:
    return json_response({"message": HELLO})


@async_endpoint(*GET)
async def db(request: HttpRequest) -> HttpResponse:
    world = await World.objects.aget(id=random_world_id())
    return json_response(world_dict(world))


@async_endpoint(*GET)
async def queries_view(request: HttpRequest) -> HttpResponse:
    count = parse_count(request.GET.get("queries"))
    worlds = [world_dict(await World.objects.aget(id=i)) for i in random_world_ids(count)]
    return json_response(worlds)


@async_endpoint(*GET)
async def fortunes(request: HttpRequest) -> HttpResponse:
    rows = sorted_fortunes([row async for row in Fortune.objects.values("id", "message")])
    return render(request, FORTUNES_TEMPLATE, {"fortunes": rows})


@async_endpoint(*GET)
async def updates(request: HttpRequest) -> HttpResponse:
    count = parse_count(request.GET.get("queries"))
    worlds = [await World.objects.aget(id=i) for i in distinct_world_ids(count)]
    for world in worlds:
        world.random_number = new_random_number(world.random_number)
    # In id order, so that concurrent updates lock rows in the same order.
    await World.objects.abulk_update(sorted(worlds, key=lambda w: w.id), ["random_number"])
    return json_response([world_dict(w) for w in worlds])


@async_endpoint(*GET)
async def cached_queries(request: HttpRequest) -> HttpResponse:
    ids = random_world_ids(parse_count(request.GET.get("count")))
    keys = {world_id: world_key(world_id) for world_id in ids}
    found = await cache.aget_many(list(keys.values()))
    missing = [world_id for world_id, key in keys.items() if key not in found]
    if missing:
        fetched = {
            world_key(w.id): world_dict(w) async for w in World.objects.filter(id__in=missing)
        }
        await cache.aset_many(fetched, timeout=None)
        found.update(fetched)
    return json_response([found[keys[world_id]] for world_id in ids])


@async_endpoint(*GET)
async def feed(request: HttpRequest, user_id: int) -> HttpResponse:
    if not valid_id(user_id) or not await Member.objects.filter(id=user_id).aexists():
        return not_found("user")
    posts = [post async for post in queries.feed_posts(user_id)]
    return feed_response(user_id, posts)


@async_endpoint(*GET)
async def profile(request: HttpRequest, user_id: int) -> HttpResponse:
    if not valid_id(user_id):
        return not_found("user")
    try:
        member = await Member.objects.aget(id=user_id)
    except Member.DoesNotExist:
        return not_found("user")
    followers = await queries.followers_of(user_id).acount()
    post_count = await queries.posts_by(user_id).acount()
    posts = [post async for post in queries.profile_posts(user_id)]
    return render(request, PROFILE_TEMPLATE, profile_context(member, followers, post_count, posts))


async def _record_like(like: LikeRequest) -> HttpResponse:
    if not valid_id(like.user_id) or not await Member.objects.filter(id=like.user_id).aexists():
        return not_found("user")
    if not valid_id(like.post_id) or not await Post.objects.filter(id=like.post_id).aexists():
        return not_found("post")
    _, created = await Like.objects.aget_or_create(
        user_id=like.user_id,
        post_id=like.post_id,
        defaults={"created_at": timezone.now()},
    )
    likes = await queries.likes_of(like.post_id).acount()
    return JsonResponse({"post_id": like.post_id, "likes": likes, "created": created})


@csrf_exempt
@async_endpoint(*POST)
async def like(request: HttpRequest) -> HttpResponse:
    parsed = parse_like_body(request.body)
    if isinstance(parsed, str):
        return json_error(400, parsed)
    return await _record_like(parsed)


@async_endpoint(*GET)
async def upstream(request: HttpRequest) -> HttpResponse:
    ms = parse_ms(request.GET.get("ms"))
    if ms is None:
        return json_error(400, "ms must be an integer from 0 to 5000")
    try:
        response = await upstream_client.async_clients().get(upstream_client.delay_url(ms))
    except httpx.HTTPError as exc:
        return upstream_unreachable(exc)
    return upstream_response(ms, response.status_code, response.content)


urlpatterns: list[URLPattern] = [
    path("plaintext", plaintext, name="plaintext"),
    path("json", json_view, name="json"),
    path("db", db, name="db"),
    path("queries", queries_view, name="queries"),
    path("fortunes", fortunes, name="fortunes"),
    path("updates", updates, name="updates"),
    path("cached-queries", cached_queries, name="cached-queries"),
    path("feed/<int:user_id>", feed, name="feed"),
    path("profile/<int:user_id>", profile, name="profile"),
    path("like", like, name="like"),
    path("upstream", upstream, name="upstream"),
]
