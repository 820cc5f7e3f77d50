"""``python -m apps.manage seed [--users N --follows N --posts N --likes N --comments N]``

Writes the deterministic seed: World (10,000 rows) and Fortune (12 rows), and
the social graph at the given sizes. Whatever the tables held is replaced, so
running it twice leaves the same data. ``--if-needed`` skips the work when the
database already holds this seed.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from apps.bench.management.commands._sizes import add_size_arguments, sizes_from_options
from apps.bench.seed import data_dir_lock, seed


class Command(BaseCommand):
    # Skipping the system checks keeps the already-done case fast (they import
    # every view module, httpx included).
    requires_system_checks: list[str] = []

    help = "Write the deterministic benchmark data (replacing what is there)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_size_arguments(parser)
        parser.add_argument(
            "--if-needed",
            action="store_true",
            help="do nothing if the database already holds this seed",
        )
        parser.add_argument("--database", default="default", help="database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        sizes = sizes_from_options(options)
        started = time.perf_counter()
        with data_dir_lock():
            result = seed(sizes, only_if_needed=options["if_needed"], using=options["database"])
        elapsed = time.perf_counter() - started
        if not result.seeded:
            self.stdout.write(f"already seeded ({elapsed:.2f} s)")
            return
        counts = ", ".join(f"{name} {count}" for name, count in result.rows.items())
        self.stdout.write(f"seeded in {elapsed:.2f} s: {counts}")
