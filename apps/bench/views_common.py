"""Helpers shared by the sync and async views: parsing, JSON errors, serialisation.

Nothing here touches the database or the cache, so both variants can use it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from functools import wraps
from operator import itemgetter
from typing import Any, Concatenate, ParamSpec, TypeVar

import ujson
from django.http import HttpRequest, HttpResponse, JsonResponse

from apps.bench.models import WORLD_ROWS, Comment, Member, Post, World

P = ParamSpec("P")
SyncView = Callable[Concatenate[HttpRequest, P], HttpResponse]
AsyncView = Callable[Concatenate[HttpRequest, P], Coroutine[Any, Any, HttpResponse]]
_V = TypeVar("_V", bound=Callable[..., Any])

GET = ("GET", "HEAD")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
POST = ("POST",)

MAX_QUERIES = 500
MAX_UPSTREAM_MS = 5_000
MAX_ID = 2**63 - 1
"""Largest id the databases can hold; larger ones cannot exist (and would overflow)."""

HELLO = "Hello, World!"
ADDITIONAL_FORTUNE = "Additional fortune added at request time."
FORTUNES_TEMPLATE = "bench/fortunes.html"
PROFILE_TEMPLATE = "bench/profile.html"


# -- responses ---------------------------------------------------------------


def set_content_length(response: HttpResponse) -> HttpResponse:
    """Every response states its length (without middleware Django does not)."""
    if not response.streaming and not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    return response


def json_response(data: Any) -> HttpResponse:
    """The TechEmpower endpoints' JSON, serialised with ujson as TechEmpower's
    Django entry does.

    ``JsonResponse`` builds a ``DjangoJSONEncoder`` per response and encodes
    with the standard library: about 5 µs more per request than ujson, which
    was 4% of gunicorn gthread's throughput on ``json`` (measured side by side
    with TechEmpower's app, see the README). The other endpoints keep
    ``JsonResponse``: their payloads hold datetimes, and their cost is
    dominated by the database.
    """
    return HttpResponse(ujson.dumps(data), content_type="application/json")


def json_error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def not_found(what: str) -> JsonResponse:
    return json_error(404, f"{what} not found")


def method_not_allowed(allowed: Iterable[str]) -> JsonResponse:
    methods = sorted(allowed)
    response = json_error(405, "method not allowed", allowed=methods)
    response["Allow"] = ", ".join(methods)
    return response


def _exempt_if_safe(view: _V, allowed: frozenset[str]) -> _V:
    """Views that only accept safe methods answer anything else with a 405.

    Exempting them from CSRF lets that 405 through under the ``default``
    middleware profile, instead of the CSRF middleware's 403 HTML page.
    (Views taking POST are exempted, or not, explicitly.)

    The attribute is what ``csrf_exempt`` sets and ``CsrfViewMiddleware``
    reads; set here, it saves ``csrf_exempt``'s extra call layer on every
    request (about 5 µs of the 100 µs of ``/sync/json``, measured in-process).
    """
    if allowed <= SAFE_METHODS:
        view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def sync_endpoint(*methods: str) -> Callable[[SyncView[P]], SyncView[P]]:
    """Restrict a sync view to ``methods`` (405 JSON otherwise), add Content-Length."""
    allowed = frozenset(methods)

    def decorate(view: SyncView[P]) -> SyncView[P]:
        @wraps(view)
        def wrapper(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
            if request.method not in allowed:
                return set_content_length(method_not_allowed(allowed))
            return set_content_length(view(request, *args, **kwargs))

        return _exempt_if_safe(wrapper, allowed)

    return decorate


def async_endpoint(*methods: str) -> Callable[[AsyncView[P]], AsyncView[P]]:
    """The async twin of :func:`sync_endpoint`."""
    allowed = frozenset(methods)

    def decorate(view: AsyncView[P]) -> AsyncView[P]:
        @wraps(view)
        async def wrapper(
            request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs
        ) -> HttpResponse:
            if request.method not in allowed:
                return set_content_length(method_not_allowed(allowed))
            return set_content_length(await view(request, *args, **kwargs))

        return _exempt_if_safe(wrapper, allowed)

    return decorate


# -- error handlers (urls.py: handler400/404/500) -------------------------------


def health(request: HttpRequest) -> HttpResponse:
    """Readiness check: no database, no cache."""
    return set_content_length(HttpResponse(b"ok", content_type="text/plain"))


def handler400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return set_content_length(json_error(400, "bad request"))


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return set_content_length(json_error(404, "not found"))


def handler500(request: HttpRequest) -> HttpResponse:
    return set_content_length(json_error(500, "server error"))


# -- parsing -----------------------------------------------------------------


def parse_count(raw: str | None) -> int:
    """TechEmpower's rule for ``queries``/``count``: missing, not a number or
    below 1 means 1; above 500 means 500."""
    try:
        value = int(raw) if raw is not None else 1
    except ValueError:
        return 1
    return min(max(value, 1), MAX_QUERIES)


def random_world_id() -> int:
    return random.randint(1, WORLD_ROWS)


def random_world_ids(count: int) -> list[int]:
    return [random.randint(1, WORLD_ROWS) for _ in range(count)]


def distinct_world_ids(count: int) -> list[int]:
    """For updates: distinct ids, so that each row is written once."""
    return random.sample(range(1, WORLD_ROWS + 1), count)


def new_random_number(old: int) -> int:
    """A new random number that differs from the old one (so the row changes)."""
    while True:
        value = random.randint(1, WORLD_ROWS)
        if value != old:
            return value


def valid_id(value: int) -> bool:
    """Ids the database could hold (path ids are unbounded digit strings)."""
    return 1 <= value <= MAX_ID


def parse_ms(raw: str | None) -> int | None:
    """``ms`` for the upstream view: 0..5000, missing means 0; None if invalid."""
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_UPSTREAM_MS else None


@dataclass(frozen=True)
class LikeRequest:
    user_id: int
    post_id: int


def parse_like_body(body: bytes) -> LikeRequest | str:
    """The like body ``{"user_id": int, "post_id": int}``, or an error message."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        return "body must be JSON"
    if not isinstance(data, dict):
        return "body must be a JSON object"
    values: dict[str, int] = {}
    for key in ("user_id", "post_id"):
        value = data.get(key)
        # bool is an int subclass; true is not an id.
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{key} must be an integer"
        values[key] = value
    return LikeRequest(**values)


# -- serialisation -----------------------------------------------------------


def world_dict(world: World) -> dict[str, int]:
    return {"id": world.id, "randomNumber": world.random_number}


def world_key(world_id: int) -> str:
    return f"world:{world_id}"


FortuneRow = Mapping[str, object]
"""A fortune as ``Fortune.objects.values("id", "message")`` gives it."""


def sorted_fortunes(fortunes: Iterable[FortuneRow]) -> list[FortuneRow]:
    """The rows plus the one added at request time, sorted by message.

    The views read the rows with ``values()``: the page needs two columns,
    not model instances (Django's performance guide; building 12 instances
    per request cost about 4% of the view, measured in-process).
    """
    rows = [*fortunes, {"id": 0, "message": ADDITIONAL_FORTUNE}]
    rows.sort(key=itemgetter("message"))
    return rows


def _annotation(obj: object, name: str) -> Any:
    """An attribute added by annotate()/Prefetch(to_attr=...), unknown to type checkers."""
    return vars(obj)[name]


def member_dict(member: Member) -> dict[str, Any]:
    return {"id": member.id, "username": member.username, "display_name": member.display_name}


def comment_dict(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.id,
        "author": member_dict(comment.author),
        "text": comment.text,
        "created_at": comment.created_at.isoformat(),
    }


def feed_post_dict(post: Post) -> dict[str, Any]:
    return {
        "id": post.id,
        "author": member_dict(post.author),
        "caption": post.caption,
        "created_at": post.created_at.isoformat(),
        "likes": _annotation(post, "like_count"),
        "comments": _annotation(post, "comment_count"),
        "recent_comments": [comment_dict(c) for c in _annotation(post, "recent_comments")],
    }


def feed_response(user_id: int, posts: Iterable[Post]) -> JsonResponse:
    return JsonResponse({"user_id": user_id, "posts": [feed_post_dict(p) for p in posts]})


def profile_context(
    member: Member, followers: int, post_count: int, posts: list[Post]
) -> Mapping[str, Any]:
    return {"member": member, "followers": followers, "post_count": post_count, "posts": posts}


def upstream_response(ms: int, status_code: int, body: bytes) -> JsonResponse:
    """Relay the upstream's answer, or 502 if it was not the expected 200 JSON."""
    if status_code != 200:
        return json_error(502, "upstream error", upstream_status=status_code)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return json_error(502, "upstream sent invalid JSON")
    return JsonResponse({"ms": ms, "upstream": payload})


def upstream_unreachable(exc: Exception) -> JsonResponse:
    return json_error(502, "upstream unreachable", detail=type(exc).__name__)
