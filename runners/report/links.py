"""Links from a report to the files beside its results.json (Locust reports, CSV
files, logs, micro-benchmarks): only to files that exist inside the folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from runners.results.record import Run


def safe_relative_href(base: Path, relative: str | None) -> str | None:
    """A link to ``relative`` (a path inside ``base``) if that file exists.

    Paths come from results.json: anything with a scheme, a host, an absolute
    path or a way out of ``base`` gets no link, and neither does a missing file.
    """
    if not relative or "\\" in relative or "\x00" in relative:
        return None
    parts = urlsplit(relative)
    if parts.scheme or parts.netloc or relative.startswith("/"):
        return None
    target = base / relative
    try:
        inside = target.resolve().is_relative_to(base.resolve())
        exists = target.is_file()
    except OSError:
        return None
    if not inside or not exists:
        return None
    return quote(relative, safe="/")


def short_names(paths: list[str]) -> list[str]:
    """File names without the prefix they share ('stats.csv' for 'run-1_stats.csv')."""
    names = [Path(p).name for p in paths]
    if len(names) < 2:
        return names
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    short = [n[len(prefix) :].lstrip("_-.") for n in names]
    return short if all(short) and len(set(short)) == len(short) else names


def artifact_links(results_dir: Path, run: Run) -> dict[str, Any]:
    """The links of a run's row: its Locust report, CSV files and server log."""
    artifacts = run.artifacts
    paths: list[str] = list(artifacts.locust_csv or ()) if artifacts else []
    csvs = []
    for path, name in zip(paths, short_names(paths), strict=True):
        href = safe_relative_href(results_dir, path)
        if href is not None:
            csvs.append({"name": name, "href": href, "path": path})
    return {
        "locust_html": safe_relative_href(
            results_dir, artifacts.locust_html if artifacts else None
        ),
        "csv": csvs,
        "server_log": safe_relative_href(results_dir, artifacts.server_log if artifacts else None),
        "flamegraph": safe_relative_href(
            results_dir, run.cpu_profile.flamegraph if run.cpu_profile else None
        ),
    }
