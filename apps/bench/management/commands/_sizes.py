"""The size options shared by the ``seed`` and ``prepare`` commands."""

from __future__ import annotations

from argparse import ArgumentParser
from dataclasses import fields
from typing import Any

from django.core.management.base import CommandError

from apps.bench.seed import SeedSizes

_HELP = {
    "users": "number of users",
    "follows": "follows per user",
    "posts": "number of posts",
    "likes": "number of likes",
    "comments": "number of comments",
}


def add_size_arguments(parser: ArgumentParser) -> None:
    defaults = SeedSizes()
    for field in fields(SeedSizes):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name}",
            type=int,
            default=default,
            metavar="N",
            help=f"{_HELP[field.name]} (default {default})",
        )


def sizes_from_options(options: dict[str, Any]) -> SeedSizes:
    sizes = SeedSizes(**{field.name: options[field.name] for field in fields(SeedSizes)})
    try:
        sizes.validate()
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    return sizes
