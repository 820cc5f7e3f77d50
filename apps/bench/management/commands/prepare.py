"""``python -m apps.manage prepare [same size options as seed]``

Migrate, then seed if the database does not already hold this seed. Runners
call it before every serve: when there is nothing to do it only checks the
migration plan and the seed fingerprint. A file lock in BENCH_DATA_DIR keeps
concurrent calls from stepping on each other.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.bench.management.commands._sizes import add_size_arguments, sizes_from_options
from apps.bench.seed import data_dir_lock, needs_migrations, seed


class Command(BaseCommand):
    # Skipping the system checks keeps the already-done case fast (they import
    # every view module, httpx included).
    requires_system_checks: list[str] = []

    help = "Migrate and seed the benchmark database; fast when already done."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_size_arguments(parser)
        parser.add_argument("--force", action="store_true", help="re-seed even if seeded")
        parser.add_argument("--database", default="default", help="database alias")

    def handle(self, *args: Any, **options: Any) -> None:
        sizes = sizes_from_options(options)
        using: str = options["database"]
        started = time.perf_counter()
        with data_dir_lock():
            migrated = needs_migrations(using)
            if migrated:
                call_command("migrate", database=using, interactive=False, verbosity=0)
            result = seed(sizes, only_if_needed=not options["force"], using=using)
        elapsed = time.perf_counter() - started
        done = [word for word, flag in (("migrated", migrated), ("seeded", result.seeded)) if flag]
        self.stdout.write(f"prepare: {' and '.join(done) or 'already done'} ({elapsed:.2f} s)")
