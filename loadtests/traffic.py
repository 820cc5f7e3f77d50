"""What users request of your own project: three sources, and the traffic each becomes.

Each source is one file and becomes one workload named after it (the file's stem:
``urls.txt`` is ``urls``, ``access.log`` is ``access``). Every problem with a file is a
``TrafficError`` of one line that names the file (and the line, where there is one).

``parse_urls(path)``: ``--urls FILE``, a list of requests, one a line::

    # weight  method  path                 then, in any order: @BODYFILE  Header:Value  status=N
    3         GET     /products/?page=2
    1         POST    /api/cart/           @cart.json  Content-Type:application/json
    0.5       GET     /legacy/             "User-Agent:replay bot 1.0"  status=301

- A line is split into words as a POSIX shell splits them (``shlex``): words are
  separated by blanks, quotes keep blanks inside one word, and ``#`` outside quotes
  starts a comment that runs to the end of the line. Blank and comment lines are
  ignored; at least one request line is needed.
- ``WEIGHT``: a positive number (``3``, ``0.5``). A line gets its weight's share of the
  requests (weight / the sum of the weights).
- ``METHOD``: ``GET``, ``HEAD``, ``POST``, ``PUT``, ``PATCH``, ``DELETE`` or ``OPTIONS``
  (any case; kept upper-case).
- ``PATH``: starts with ``/``, visible ASCII other than ``"`` and ``\\`` (percent-encode
  anything else), with its query string if any (``/search?q=shoes``); sent as written.
- ``@BODYFILE`` (at most one): the request's body, the text of that file (UTF-8) sent
  as it is; a relative path is relative to the folder of the URL file.
- ``Name:Value`` (any number, each name once): a request header. The name is an HTTP
  token; the value is what follows the first colon, leading blanks removed (quote the
  word to keep blanks in it).
- ``status=N``: the one response status that counts as a success (default: any status
  below 400).

``parse_access_log(path, top=20, allow_writes=False)``: ``--access-log FILE``, a web
server's access log in the common or combined format, or gunicorn's default
(``%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"``, combined's shape).
Each line's request (``"METHOD PATH HTTP/x.y"``) and status are read; a request is its
method and path, query string included, weighted by how many lines have it; the
``top`` most frequent are kept (``skipped["beyond_top"]``: the lines of the others).
Requests other than GET and HEAD are skipped and counted (``skipped["writes"]``)
unless ``allow_writes``; a line that does not parse (another format, a request line
such as ``"-"`` or a proxy's ``http://host/...``, a path as ``PATH`` above does not
allow) is counted (``skipped["unparsed"]``), never fatal. A log with no usable line is
an error. The log has no bodies, headers or cookies: requests are sent without them.
A request whose every line logged the same 4xx status expects that status (a path that
was always 404 is not a failure when it is 404 again); any other expects a status below
400.

``check_locustfile(path)``: ``--locustfile FILE``, your own Locust file. It is compiled
(a syntax error is the error, with its line) and its user classes are found without
running it (``ast``): the classes defined at its top level that derive from ``User``,
``HttpUser`` or ``FastHttpUser`` (or from such a class of the same file) and do not set
``abstract = True``. A file with none is an error. User classes imported from elsewhere
are not seen. ``Traffic.user_classes`` holds their names and ``entries`` is empty.

``Traffic`` and ``TrafficEntry`` are frozen records; ``Traffic.write``/``read`` keep
one as JSON, the file ``loadtests/trafficfile.py`` (``--traffic FILE``) drives Locust's
users with. ``writes(traffic)``: the entries that are not GET or HEAD.

Standard library only: the driver imports this module, and it never imports Locust
(whose import patches the standard library with gevent).
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

Source = Literal["urls", "access-log", "locustfile"]
SOURCES: tuple[Source, ...] = ("urls", "access-log", "locustfile")
READS = ("GET", "HEAD")
"""The methods that do not change what the server holds; the others are writes."""
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods a URL file may use."""
USER_BASES = frozenset({"User", "HttpUser", "FastHttpUser"})
DEFAULT_TOP = 20

# Visible ASCII except `"` and `\` (which a log escapes and a URL must percent-encode).
_PATH = re.compile(r"/[\x21\x23-\x5b\x5d-\x7e]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_STATUS = re.compile(r"status=(\d+)")
# host ident user [time] "request" status bytes ... (common, combined and gunicorn's).
_LOG_LINE = re.compile(r'\S+ \S+ \S+ \[[^\]]+\] "((?:[^"\\]|\\.)*)" (\d{3}) (?:\d+|-)(?:\s|$)')
_REQUEST_LINE = re.compile(r"([A-Z]+) (\S+) HTTP/\d(?:\.\d)?")


class TrafficError(ValueError):
    """A traffic source that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class TrafficEntry:
    """One request users make, and its share of the traffic."""

    weight: float
    method: str
    path: str
    """Starts with ``/``; carries the query string, if any."""
    body: str | None
    headers: tuple[tuple[str, str], ...]
    expect_status: int | None = None
    """The status that counts as a success; None: any status below 400."""

    @property
    def request_name(self) -> str:
        """The name Locust's statistics give it: ``METHOD PATH`` without the query."""
        return f"{self.method} {self.path.split('?', 1)[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight": self.weight,
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "headers": [list(header) for header in self.headers],
            "expect_status": self.expect_status,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrafficEntry:
        body, status = data.get("body"), data.get("expect_status")
        return cls(
            weight=float(data["weight"]),
            method=str(data["method"]),
            path=str(data["path"]),
            body=None if body is None else str(body),
            headers=tuple((str(name), str(value)) for name, value in data.get("headers", ())),
            expect_status=None if status is None else int(status),
        )


@dataclass(frozen=True)
class Traffic:
    """What one source says users request: a workload named after its file."""

    name: str
    source: Source
    entries: tuple[TrafficEntry, ...]
    """Empty for a locustfile (its own tasks say what is requested)."""
    skipped: dict[str, int]
    """Lines left out, by reason (an access log's ``unparsed``, ``writes``, ``beyond_top``)."""
    user_classes: tuple[str, ...] = ()
    """A locustfile's user classes."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "entries": [entry.to_dict() for entry in self.entries],
            "skipped": dict(self.skipped),
            "user_classes": list(self.user_classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Traffic:
        source = str(data["source"])
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        return cls(
            name=str(data["name"]),
            source=cast(Source, source),
            entries=tuple(TrafficEntry.from_dict(entry) for entry in data.get("entries", ())),
            skipped={str(key): int(count) for key, count in data.get("skipped", {}).items()},
            user_classes=tuple(str(name) for name in data.get("user_classes", ())),
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Traffic:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise TrafficError(f"{path}: {exc.strerror or exc}") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TrafficError(f"{path}: not a traffic file ({_one_line(exc)})") from exc


def writes(traffic: Traffic) -> list[TrafficEntry]:
    """The entries whose method is not GET or HEAD (they change what the server holds)."""
    return [entry for entry in traffic.entries if entry.method not in READS]


# --- --urls -----------------------------------------------------------------------------------


def parse_urls(path: Path) -> Traffic:
    """A URL file (the syntax is in this module's docstring)."""
    path = Path(path)
    entries = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
            if words:
                entries.append(_url_entry(words, path.parent))
        except ValueError as exc:  # shlex's own (an unclosed quote) and ours
            raise TrafficError(f"{path}:{number}: {_one_line(exc)}") from exc
    if not entries:
        raise TrafficError(f"{path}: no request line (WEIGHT METHOD PATH ...)")
    return Traffic(path.stem, "urls", tuple(entries), {})


def _url_entry(words: list[str], folder: Path) -> TrafficEntry:
    if len(words) < 3:
        raise ValueError(f"expected WEIGHT METHOD PATH, got {' '.join(words)!r}")
    weight_word, method, path, *rest = words
    try:
        weight = float(weight_word)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"weight {weight_word!r} is not a positive number")
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"method {words[1]!r} is not one of {', '.join(METHODS)}")
    _check_path(path)
    body: str | None = None
    headers: list[tuple[str, str]] = []
    status: int | None = None
    for word in rest:
        if word.startswith("@"):
            if body is not None:
                raise ValueError(f"a second body file {word!r}")
            body = _read_body(folder / word[1:], word)
        elif match := _STATUS.fullmatch(word):
            status = int(match[1])
            if not 100 <= status <= 599:
                raise ValueError(f"{word!r} is not an HTTP status (100 to 599)")
        elif ":" in word:
            headers.append(_header(word, headers))
        else:
            raise ValueError(f"{word!r} is none of @BODYFILE, Header:Value, status=N")
    return TrafficEntry(weight, method, path, body, tuple(headers), status)


def _check_path(path: str) -> None:
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} does not start with /")
    if not _PATH.fullmatch(path):
        raise ValueError(
            f'path {path!r} has a character other than visible ASCII, " and \\ (percent-encode it)'
        )


def _header(word: str, earlier: list[tuple[str, str]]) -> tuple[str, str]:
    name, value = word.split(":", 1)
    value = value.lstrip(" \t")
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"header {word!r}: {name!r} is not a header name")
    if not _HEADER_VALUE.fullmatch(value):
        raise ValueError(f"header {word!r}: its value is not visible ASCII")
    if any(name.lower() == seen.lower() for seen, _ in earlier):
        raise ValueError(f"header {name!r} given twice")
    return name, value


def _read_body(path: Path, word: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"body file {word!r}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"body file {word!r} is not UTF-8 text (byte {exc.start})") from exc


# --- --access-log -----------------------------------------------------------------------------


def parse_access_log(path: Path, top: int = DEFAULT_TOP, allow_writes: bool = False) -> Traffic:
    """An access log's most frequent requests, weighted by frequency (see the docstring)."""
    path = Path(path)
    if top < 1:
        raise TrafficError(f"{path}: top must be at least 1, not {top}")
    counts: Counter[tuple[str, str]] = Counter()
    statuses: dict[tuple[str, str], int] = {}  # what every line of a request logged (0: not one)
    skipped = {"unparsed": 0, "writes": 0, "beyond_top": 0}
    lines = 0
    for line in _read_text(path, errors="replace").splitlines():
        if not line.strip():
            continue
        lines += 1
        request = _logged_request(line)
        if request is None:
            skipped["unparsed"] += 1
            continue
        method, target, status = request
        if method not in READS and not allow_writes:
            skipped["writes"] += 1
            continue
        key = (method, target)
        counts[key] += 1
        statuses[key] = status if statuses.get(key, status) == status else 0
    if not counts:
        kept = "request" if allow_writes else "GET or HEAD request"
        raise TrafficError(
            f"{path}: no {kept} in {lines} lines "
            f"({skipped['unparsed']} unparsed, {skipped['writes']} writes skipped)"
        )
    kept_counts = counts.most_common(top)  # ties: in the order first seen
    skipped["beyond_top"] = counts.total() - sum(count for _, count in kept_counts)
    entries = tuple(
        TrafficEntry(
            float(count),
            method,
            target,
            None,
            (),
            statuses[(method, target)] if 400 <= statuses[(method, target)] < 500 else None,
        )
        for (method, target), count in kept_counts
    )
    return Traffic(path.stem, "access-log", entries, skipped)


def _logged_request(line: str) -> tuple[str, str, int] | None:
    """(method, path, status) of an access-log line, or None."""
    match = _LOG_LINE.match(line)
    if match is None:
        return None
    request = _REQUEST_LINE.fullmatch(match[1])
    if request is None or not _PATH.fullmatch(request[2]):
        return None
    return request[1], request[2], int(match[2])


# --- --locustfile -----------------------------------------------------------------------------


def check_locustfile(path: Path) -> Traffic:
    """Compile a user's locustfile and name its user classes (see the docstring)."""
    path = Path(path)
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise TrafficError(f"{path}: {exc.strerror or exc}") from exc
    try:
        compile(source, str(path), "exec", dont_inherit=True)
        module = ast.parse(source, str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise TrafficError(f"{where}: {exc.msg}") from exc
    except ValueError as exc:  # a null byte, on Python 3.11
        raise TrafficError(f"{path}: {_one_line(exc)}") from exc
    users = _user_classes(module)
    if not users:
        raise TrafficError(
            f"{path}: no user class (a class deriving from HttpUser, FastHttpUser or User, "
            "without abstract = True)"
        )
    return Traffic(path.stem, "locustfile", (), {}, tuple(users))


def _user_classes(module: ast.Module) -> list[str]:
    """The non-abstract top-level classes deriving from a Locust user class."""
    derived: set[str] = set()
    users = []
    for node in module.body:
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {_base_name(base) for base in node.bases}
        if bases & (USER_BASES | derived):
            derived.add(node.name)
            if not _abstract(node):
                users.append(node.name)
    return users


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):  # locust.HttpUser, fasthttp.FastHttpUser
        return base.attr
    return ""


def _abstract(node: ast.ClassDef) -> bool:
    """The class body says ``abstract = True`` (Locust does not inherit it)."""
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        else:
            continue
        value = statement.value
        if (
            any(isinstance(t, ast.Name) and t.id == "abstract" for t in targets)
            and isinstance(value, ast.Constant)
            and value.value is True
        ):
            return True
    return False


# --- shared -----------------------------------------------------------------------------------


def _read_text(path: Path, errors: str = "strict") -> str:
    try:
        return path.read_text(encoding="utf-8", errors=errors)
    except OSError as exc:
        raise TrafficError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise TrafficError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
