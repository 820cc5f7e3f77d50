"""The one error of the project package."""

from __future__ import annotations


class ProjectError(ValueError):
    """A project that cannot be benchmarked as given: one line naming the problem and,
    where it helps, what is accepted."""
