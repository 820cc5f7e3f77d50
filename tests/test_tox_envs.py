"""Every ``tox -e`` environment starts: its own command, in the interpreter tox builds.

The rest of the suite runs in the ``py`` environment, which holds every dependency
group, so it cannot see an environment that lacks a module its command imports
(``tox -e serve`` once failed on ``hdrh``, a module of the ``bench`` group). Each
environment of ``tox.ini`` runs its first command with ``--help`` (``serve``:
``--list``) through ``tox exec``, which builds the environment from ``uv.lock``
as ``tox -e`` does and applies its settings; the test checks the exit status and
the first line printed.

An environment that is already built is checked in the fast tier (about half a
second each); one that is not is marked ``slow``, because building it takes uv a
few seconds to a minute.
"""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TOX_INI = REPO_ROOT / "tox.ini"

# env -> (the flag asking the command for its help, the start of its first line)
EXPECTED: dict[str, tuple[str, str]] = {
    "py": ("--help", "usage: pytest"),
    "fast": ("--help", "usage: pytest"),
    "lint": ("--help", "Run Ruff on the given files or directories"),
    "type": ("--help", "usage: mypy"),
    "serve": ("--list", "Runners (worker counts for"),
    "agent": ("--help", "usage: python -m runners.agent"),
    "bench": ("--help", "usage: python -m runners.bench"),
    "report": ("--help", "usage: python -m runners.report"),
    "micro": ("--help", "usage: python -m runners.micro"),
    "ui": ("--help", "usage: python -m runners.cli.ui"),
    "plan": ("--help", "usage: python -m runners.plan"),
}


def tox_envs() -> dict[str, str]:
    """Every environment of tox.ini and its first command (``{posargs}`` kept)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(TOX_INI)
    envs = [name.strip() for name in config["tox"]["env_list"].split(",")]
    envs += [s.removeprefix("testenv:") for s in config.sections() if s.startswith("testenv:")]
    commands = {}
    for env in dict.fromkeys(envs):
        section = f"testenv:{env}"
        text = None
        if config.has_section(section):
            text = config.get(section, "commands", fallback=None)
        if text is None:
            text = config.get("testenv", "commands")
        first = next(line.strip() for line in text.splitlines() if line.strip())
        commands[env] = first
    return commands


def command_with(first: str, flag: str) -> list[str]:
    """The env's command with ``flag`` where its extra arguments go (or at the end)."""
    argv = shlex.split(first)
    if "{posargs}" in argv:
        return [flag if a == "{posargs}" else a for a in argv]
    return [*argv, flag]


def test_every_environment_has_an_expectation() -> None:
    """A new environment in tox.ini needs its line in EXPECTED (so it is checked)."""
    assert set(tox_envs()) == set(EXPECTED)


def _params() -> list[object]:
    built = REPO_ROOT / ".tox"
    return [
        pytest.param(
            env, marks=() if (built / env / "bin" / "python").exists() else pytest.mark.slow
        )
        for env in tox_envs()
    ]


@pytest.mark.parametrize("env", _params())
def test_environment_command_starts(env: str) -> None:
    tox = shutil.which("tox")
    assert tox is not None, "tox is not on PATH (python3 -m pip install tox tox-uv)"
    flag, first_line = EXPECTED[env]
    argv = command_with(tox_envs()[env], flag)
    done = subprocess.run(
        [tox, "exec", "-q", "-e", env, "--", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    shown = f"tox exec -e {env} -- {shlex.join(argv)}"
    assert done.returncode == 0, f"{shown}: exit {done.returncode}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"{shown} printed nothing\n{done.stderr[-2000:]}"
    assert lines[0].startswith(first_line), f"{shown}: first line {lines[0]!r}"
