"""Frozen dataclasses that mirror the JSON objects of results.json, and back.

A record is a ``@dataclass(frozen=True, kw_only=True)`` subclass of ``Record``
whose field names are the JSON keys. ``from_dict`` converts nested objects by
the field types (a ``Record`` type, ``tuple[X, ...]``, ``dict[str, X]``,
``X | None``); scalars are kept as they are (an ``int`` in a ``float`` field
stays an ``int``), so ``Run.from_dict(d).to_dict() == d`` for any valid ``d``,
key order included. The schema (``runners/results/schema.json``), not this
module, checks types.

Which keys ``to_dict`` writes:

- a record read by ``from_dict`` writes the keys it was read with, in their
  order, plus any field whose value was changed from its default since;
- a record built by the driver writes every field, except those declared
  with ``optional()`` (or another ``omit`` rule) while the rule holds: an
  optional field holding its default is left out of the JSON object.

Keys a record does not know (a newer file, a hand-written one) are kept in
``extra`` and written back unchanged.

Adding a field is one line: ``load: str | None = optional(None)``; a nested
record is a ``Record`` subclass used as a field type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Self

OMIT = "results.omit"
"""Field metadata: ``(record, value) -> bool``, true when a built record leaves the key out."""

Omit = Callable[[Any, Any], bool]


def optional(default: Any = None, omit: Omit | None = None) -> Any:
    """A field whose key a built record leaves out while it holds ``default``
    (or while ``omit(record, value)`` says so)."""
    rule = omit if omit is not None else (lambda _record, value: value == default)
    if isinstance(default, list | dict | set):
        raise TypeError("use an immutable default (a tuple) for an optional field")
    return dataclasses.field(default=default, metadata={OMIT: rule})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
    """Base of every results.json record: ``to_dict()`` and ``from_dict()``."""

    source_keys: tuple[str, ...] | None = dataclasses.field(default=None, compare=False, repr=False)
    """The keys of the JSON object this record was read from, in order (None: built here)."""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    """Keys of that object this record does not know, kept to be written back."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The record of a JSON object (nested objects become records too)."""
        fields = _fields(cls)
        values = {name: _decode(tp, data[name]) for name, tp in fields.items() if name in data}
        extra = {key: value for key, value in data.items() if key not in fields}
        return cls(**values, source_keys=tuple(data), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (nested records and tuples become dicts and lists)."""
        fields = _field_specs(type(self))
        wanted = [f.name for f in fields.values() if self._writes(f)]
        order = list(self.source_keys or ())
        order += [name for name in wanted if name not in order]
        order += [key for key in self.extra if key not in order]
        out: dict[str, Any] = {}
        for key in order:
            if key in fields:
                if key in wanted:
                    out[key] = _encode(getattr(self, key))
            elif key in self.extra:
                out[key] = _encode(self.extra[key])
        return out

    def _writes(self, spec: dataclasses.Field[Any]) -> bool:
        value = getattr(self, spec.name)
        if self.source_keys is not None:
            return spec.name in self.source_keys or value != _default(spec)
        rule: Omit | None = spec.metadata.get(OMIT)
        return rule is None or not rule(self, value)


# --- conversion by type ---------------------------------------------------------------------


_SPECS: dict[type[Record], dict[str, dataclasses.Field[Any]]] = {}
_TYPES: dict[type[Record], dict[str, Any]] = {}


def _field_specs(cls: type[Record]) -> dict[str, dataclasses.Field[Any]]:
    """The record's own fields (not ``source_keys`` and ``extra``), by name."""
    if cls not in _SPECS:
        base = {f.name for f in dataclasses.fields(Record)}
        _SPECS[cls] = {f.name: f for f in dataclasses.fields(cls) if f.name not in base}
    return _SPECS[cls]


def _fields(cls: type[Record]) -> dict[str, Any]:
    """The type of each field, resolved (``from __future__ import annotations``)."""
    if cls not in _TYPES:
        hints = typing.get_type_hints(cls)
        _TYPES[cls] = {name: hints[name] for name in _field_specs(cls)}
    return _TYPES[cls]


def _default(spec: dataclasses.Field[Any]) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return dataclasses.MISSING


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        choices = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _decode(choices[0], value) if len(choices) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, Mapping):
        return tp.from_dict(value)
    if origin is tuple and isinstance(value, list | tuple):
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v) for v in value)
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        item = typing.get_args(tp)[1]
        return {key: _decode(item, v) for key, v in value.items()}
    return value


def _encode(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {key: _encode(v) for key, v in value.items()}
    return value
