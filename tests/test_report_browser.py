"""Open a rendered report in headless Chromium: the charts draw, the console
stays clean, nothing is fetched from any host, and a screenshot is taken.

Chromium is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4),
so the test needs nothing but the standard library and Debian's chromium.
Set REPORT_SCREENSHOT=path.png to keep the screenshots (path-<sample>.png).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from runners.report import render_run

pytestmark = pytest.mark.browser

DATA = Path(__file__).parent / "data"
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
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)
TIMEOUT = 60.0


def chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class DevTools:
    """The smallest DevTools-protocol client: commands and events over pipes."""

    def __init__(self, pid: int, write_fd: int, read_fd: int) -> None:
        self.pid = pid
        self.write_fd = write_fd
        self.read_fd = read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        command: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        data = json.dumps(command).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data) :]
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            message = self._read_message(deadline)
            self.events.append(message)
            if message.get("method") == method:
                return message


def _high_fd(fd: int) -> int:
    """A copy of fd numbered 10 or more (so that dup2 onto 3 and 4 cannot collide)."""
    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return copy


def _reaped(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@contextmanager
def launched(binary: str, profile: Path, log: Path) -> Iterator[DevTools]:
    """Chromium with its DevTools pipe on fds 3 (commands in) and 4 (answers out)."""
    to_chrome_r, to_chrome_w = (_high_fd(fd) for fd in os.pipe())
    from_chrome_r, from_chrome_w = (_high_fd(fd) for fd in os.pipe())
    argv = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    pid = os.posix_spawn(
        binary,
        argv,
        {**os.environ, "HOME": str(profile)},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
            (os.POSIX_SPAWN_DUP2, to_chrome_r, 3),
            (os.POSIX_SPAWN_DUP2, from_chrome_w, 4),
        ],
        setsid=True,
    )
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    tools = DevTools(pid, to_chrome_w, from_chrome_r)
    try:
        yield tools
    finally:
        with suppress(OSError, RuntimeError, TimeoutError):
            tools.send("Browser.close")
        if not _reaped(pid, timeout=10):
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        # Chromium's helpers live in its own session (setsid): end any left.
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        os.close(to_chrome_w)
        os.close(from_chrome_r)


CHECK_CHARTS = """
(() => {
  const canvases = Array.from(document.querySelectorAll('canvas[data-chart]'));
  const drawn = canvases.map((canvas) => {
    const chart = window.Chart && Chart.getChart(canvas);
    const ctx = canvas.getContext('2d');
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) painted++; }
    return {
      id: canvas.getAttribute('data-chart'),
      chart: Boolean(chart),
      type: chart ? chart.config.type : null,
      width: canvas.width,
      height: canvas.height,
      painted: painted,
      datasets: chart ? chart.data.datasets.length : 0,
      scales: chart ? Object.keys(chart.scales).map((id) => chart.scales[id].type) : [],
      points: chart ? chart.data.datasets.map((d) => d.data.length) : [],
      labels: chart ? chart.data.datasets.map((d) => d.label) : [],
      // A bar chart's bars: the pixel length of each (null where there is none).
      spans: chart && chart.config.type === 'bar'
        ? chart.data.datasets.map((d, i) => chart.getDatasetMeta(i).data.map(
            (e, j) => (d.data[j] === null ? null : Math.round(Math.abs(e.x - e.base)))))
        : [],
    };
  });
  return JSON.stringify({
    canvases: canvases.length,
    flag: document.documentElement.getAttribute('data-charts-drawn'),
    chartVersion: window.Chart ? Chart.version : null,
    drawn: drawn,
    specs: Object.keys(
      JSON.parse(document.getElementById('report-data').textContent).charts).length,
  });
})()
"""


def console_problems(events: list[dict[str, Any]]) -> list[str]:
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            problems.append(f"exception: {details.get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [a.get("value", a.get("description")) for a in params.get("args", [])]
            problems.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            problems.append(f"log {entry.get('source')}: {entry.get('text')} {entry.get('url')}")
    return problems


@pytest.mark.parametrize(
    ("sample", "saturation", "retaken"),
    [
        ("sample_results.json", 0, set()),
        ("sample_capacity.json", 4, set()),
        ("sample_bands.json", 4, {"w0-sat", "w0-sp99", "w1-sat", "w1-sp99"}),
    ],
    ids=["closed", "capacity", "bands"],
)
def test_report_draws_in_chromium(
    tmp_path: Path, sample: str, saturation: int, retaken: set[str]
) -> None:
    """``saturation``: the saturation charts the sample has (two per open-loop workload);
    ``retaken``: those that draw takes the search retook."""
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    run_dir = tmp_path / "reports" / "20261121T100012Z"
    run_dir.mkdir(parents=True)
    shutil.copy(DATA / sample, run_dir / "results.json")
    report = render_run(run_dir)
    profile = tmp_path / "profile"
    profile.mkdir()

    with launched(binary, profile, tmp_path / "chromium.log") as tools:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session)
        tools.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1366,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        tools.send("Page.navigate", session, url=report.as_uri())
        tools.wait_for("Page.loadEventFired")
        state = json.loads(
            tools.send("Runtime.evaluate", session, expression=CHECK_CHARTS, returnByValue=True)[
                "result"
            ]["value"]
        )
        metrics = tools.send("Page.getLayoutMetrics", session)
        size = metrics["cssContentSize"]
        shot = tools.send(
            "Page.captureScreenshot",
            session,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        events = list(tools.events)

    png = base64.b64decode(shot["data"])
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(png)
    if os.environ.get("REPORT_SCREENSHOT"):
        keep = Path(os.environ["REPORT_SCREENSHOT"])
        shutil.copy(screenshot, keep.with_name(f"{keep.stem}-{Path(sample).stem}{keep.suffix}"))

    # The charts drew: one Chart.js chart per canvas, each with painted pixels.
    assert state["chartVersion"] == "4.6.1"
    assert state["canvases"] >= 8
    assert state["canvases"] == state["specs"]
    assert state["flag"] == str(state["canvases"])
    for chart in state["drawn"]:
        assert chart["chart"], chart
        assert chart["datasets"] > 0, chart
        assert chart["width"] > 100 and chart["height"] > 100, chart
        assert chart["painted"] > 2000, chart
    kinds = {c["type"] for c in state["drawn"]}
    assert kinds == {"bar", "line"}
    # The saturation curves: log axes, one line per runner (4), the knees and the
    # reference line (achieved = offered, or the latency target).
    curves = [c for c in state["drawn"] if c["id"].endswith(("-sat", "-sp99"))]
    assert len(curves) == saturation
    for chart in curves:
        assert chart["scales"] == ["logarithmic", "logarithmic"], chart
        assert chart["datasets"] == (7 if chart["id"] in retaken else 6), chart
        assert chart["points"][-2] == 4 and chart["points"][-1] == 2, chart
        if chart["id"] in retaken:
            assert chart["labels"][4] == "retaken (not believed)" and chart["points"][4] > 0
    # The capacity bars carry their bands: a thinner floating bar over each bar that has
    # one, drawn (a span of pixels), an open band (a lower bound) the longest.
    bands = [c for c in state["drawn"] if c["id"].endswith("-rpg") and len(c["labels"]) > 1]
    if sample == "sample_bands.json":
        assert {c["id"] for c in bands} == {"w0-rpg", "w1-rpg"}
        for chart in bands:
            assert chart["labels"][1].startswith("band"), chart
            bars, spans = chart["spans"]
            assert all(s is not None and s > 0 for s in bars + spans), chart
        json_spans = next(c for c in bands if c["id"] == "w0-rpg")["spans"][1]
        assert json_spans[0] == max(json_spans)  # gunicorn-gthread: ≥, open above

    # The console is clean (CSP violations and failed loads are log errors).
    assert console_problems(events) == []

    # Nothing was requested from any host: only the file itself (and data: URLs).
    requested = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested, "the navigation itself should be seen"
    assert all(url.startswith(("file://", "data:")) for url in requested), requested

    # A real screenshot: a PNG of the whole page.
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 50_000
    assert size["height"] > 2000
