"""The JSON Schema of results.json (``schema.json`` beside this file) and its one validator."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_VERSION = 2
"""What the driver writes; the report reads version 1 too."""


@cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


@cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema())


def _where(error: jsonschema.ValidationError, root: str) -> str:
    return "/".join(str(part) for part in error.absolute_path) or root


def validation_errors(doc: Mapping[str, Any]) -> list[str]:
    """Every way ``doc`` breaks the schema, as ``path: message`` lines."""
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{_where(error, '<root>')}: {error.message}" for error in errors]


def first_error(doc: Any) -> tuple[str, str] | None:
    """``(where, message)`` of the most relevant way ``doc`` breaks the schema, or None."""
    error = jsonschema.exceptions.best_match(validator().iter_errors(doc))
    if error is None:
        return None
    return _where(error, "the top level"), error.message
