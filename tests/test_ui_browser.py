"""Locust's web UI with the server-memory tab, in headless Chromium.

Starts ``python -m runners.cli.ui gunicorn-sync-freeze`` for real, runs a short
swarm through Locust's HTTP API, then lets Chromium load the UI with the
memory tab selected (``/?tab=server-memory``: the React UI keeps the tab in
the URL) and the chart page (``/memory/``): ``--dump-dom`` shows what they
rendered, ``--screenshot`` keeps a picture. Set ``UI_SCREENSHOT_DIR`` to keep
the screenshots (``ui-memory-tab.png``, ``ui-memory-page.png``).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
from contextlib import suppress
from pathlib import Path

import pytest

from tests.test_ui import UiSession, ui_session

pytestmark = [pytest.mark.browser, pytest.mark.servers, pytest.mark.slow]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
WIDTH, HEIGHT = 1400, 900
VIRTUAL_TIME_MS = 6000
"""Long enough for the React UI to fetch /stats/requests and the page to poll /memory twice."""


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def run_chromium(binary: str, profile: Path, *args: str, timeout: float = 120.0) -> str:
    """One headless Chromium run (its own session, all of it ended after); its stdout."""
    profile.mkdir(exist_ok=True)
    argv = [
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--virtual-time-budget={VIRTUAL_TIME_MS}",
        *args,
    ]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HOME": str(profile)},
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0, err[-2000:]
    return out


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:16]
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def keep(path: Path) -> None:
    target = os.environ.get("UI_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def loaded_session(session: UiSession) -> None:
    session.wait_for_ui()
    session.swarm(4)
    session.wait_for_load()


def test_memory_tab_and_page_in_chromium(tmp_path: Path) -> None:
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with ui_session(
        tmp_path, "gunicorn-sync-freeze", "--workers", "2", "--workload", "json"
    ) as session:
        loaded_session(session)
        tab_url = f"{session.web_url}/?tab=server-memory"
        page_url = f"{session.web_url}/memory/"

        dom = run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", tab_url)
        # Locust's own tabs, then ours, selected, with the table fed from /stats/requests.
        assert "Statistics" in dom or "STATISTICS" in dom.upper()
        assert "Server memory: gunicorn-sync-freeze" in dom
        assert 'aria-selected="true"' in dom.split("Server memory: gunicorn-sync-freeze")[0][-600:]
        for header in ("PSS", "Private (USS)", "Shared", "RSS", "Req/s per GiB PSS"):
            assert f">{header}<" in dom, header
        assert ">all (3 processes)<" in dom
        assert ">master<" in dom
        assert ">worker 1<" in dom and ">worker 2<" in dom

        tab_png = tmp_path / "ui-memory-tab.png"
        run_chromium(binary, tmp_path / "profile-tab", f"--screenshot={tab_png}", tab_url)
        keep(tab_png)

        page_dom = run_chromium(binary, tmp_path / "profile-page-dom", "--dump-dom", page_url)
        assert "Server memory: gunicorn-sync-freeze" in page_dom
        assert 'data-samples="' in page_dom  # the page read /memory and drew
        assert page_dom.count("<canvas") == 3
        assert ">worker 2<" in page_dom
        assert '<div class="status" id="status">root pid ' in page_dom  # not an error

        page_png = tmp_path / "ui-memory-page.png"
        run_chromium(binary, tmp_path / "profile-page", f"--screenshot={page_png}", page_url)
        keep(page_png)

        assert session.post_form("/stop", [])["success"]

    for png in (tab_png, page_png):
        data = png.read_bytes()
        assert png_size(data) == (WIDTH, HEIGHT)
        assert len(data) > 30_000, (png, len(data))  # a blank page is a few kB
