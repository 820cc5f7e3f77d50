"""Addresses and plain HTTP for the processes the suite starts: a free port, whether a
port can be bound, where to connect for a bind address, and ``GET`` without proxies."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Mapping

from runners.serving.supervisor import RunnerError

ALL_IPV4 = ("", "*", "0.0.0.0")


def connect_host(host: str) -> str:
    """Where to connect to reach something bound to ``host``: loopback for the
    all-interfaces addresses (``*``, ``""``, ``0.0.0.0`` and ``::``), else ``host``."""
    if host in ALL_IPV4:
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def all_interfaces(host: str) -> bool:
    """Whether a bind address means every interface (so a URL shows loopback instead)."""
    return host in ALL_IPV4 or host == "::"


def url(host: str, port: int) -> str:
    """``http://host:port`` to connect to (IPv6 in brackets)."""
    shown = connect_host(host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def check_port_free(host: str, port: int, what: str) -> None:
    """``RunnerError`` (``WHAT: cannot listen on HOST:PORT: reason``) if ``host:port``
    cannot be bound. ``what`` names who wanted it (``runner gunicorn-sync``, ``--web-port``).

    (A server that finds its port taken retries for seconds, or serves nothing
    while its readiness check reaches whoever holds the port.)
    """
    bind = "" if host == "*" else host
    with socket.socket(_family(bind), socket.SOCK_STREAM) as sock:
        # As the servers do: a port left in TIME_WAIT by an earlier run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except OSError as exc:
            raise RunnerError(
                f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None


def http_get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of ``GET path`` on ``host:port`` (``connect_host`` applied; plain
    http.client, so no proxy settings apply)."""
    return http_request(host, port, "GET", path, timeout=timeout)


def http_request(
    host: str,
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """(status, body) of one request on ``host:port``, redirects not followed."""
    conn = http.client.HTTPConnection(connect_host(host), port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()
