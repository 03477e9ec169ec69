"""Sealed columns and blind indexes, declared once on the model.

A column of type `Sealed` holds AES-256-GCM ciphertext; the model reaches its plaintext through a
`SealedField` descriptor, which seals for and opens from the row's own place. The place
(associated data) is `<prefix>.<part>.<binding>`: the model's `__seal_prefix__` (its table by
default), the column's part (its name without `_sealed`), and the row's `seal_binding`
(its public id unless the model says otherwise). A ciphertext copied into another row or column
therefore fails to open. No caller spells a context.

A column of type `BlindIndex` holds a keyed digest of a normalised sealed value, so that a row can
be found without storing the value; a `SealedField` refreshes every index that reads it.

`sealed_columns()` and `blind_index_columns()` list them all from the metadata: key rotation walks
that list, and a test fails if a sealed-looking column is not declared here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import LargeBinary, TypeDecorator


class Sealed(TypeDecorator):
    """AES-256-GCM ciphertext bound to its table, column and row; opened via a `SealedField`."""

    impl = LargeBinary
    cache_ok = True

    def __init__(self, part: str | None = None):
        super().__init__()
        # The context's middle part; None: the column's name without "_sealed".
        self.part = part

    def process_result_value(self, value, dialect):
        # PostgreSQL hands back a memoryview; callers compare and slice bytes.
        return bytes(value) if value is not None else None


class BlindIndex(TypeDecorator):
    """A keyed digest (16 bytes) of a normalised sealed value, for lookups without the value."""

    impl = LargeBinary(16)
    cache_ok = True

    def __init__(self, source: str, purpose: str, normalise: Callable[[str], str] | None = None):
        super().__init__()
        self.source = source  # the SealedField whose plaintext is indexed
        # The digest's purpose; may name row attributes, e.g. "activation-code.{row.offer_id}".
        self.purpose = purpose
        self.normalise = normalise

    def process_result_value(self, value, dialect):
        return bytes(value) if value is not None else None

    def purpose_for(self, row: Any = None) -> str:
        return self.purpose.format(row=row) if "{" in self.purpose else self.purpose

    def digest(self, value: str, row: Any = None) -> bytes:
        """The digest under the newest key, as stored."""
        from portal.extensions import vault

        return vault.blind_index(self._normal(value), self.purpose_for(row))

    def digests(self, value: str, row: Any = None) -> list[bytes]:
        """The digest under every configured key: lookups keep working during a rotation."""
        from portal.extensions import vault

        return vault.blind_indexes(self._normal(value), self.purpose_for(row))

    def _normal(self, value: str) -> str:
        return self.normalise(value) if self.normalise else value


def context(model, column: str, binding: str) -> str:
    """The associated data of a sealed column for the row identified by binding."""
    part = model.__table__.c[column].type.part or column.removesuffix("_sealed")
    return f"{getattr(model, '__seal_prefix__', model.__tablename__)}.{part}.{binding}"


def seal(model, column: str, binding: str, value: str | bytes) -> bytes:
    """Seal a value for a row that is written without the ORM (a bulk import)."""
    from portal.extensions import vault

    return vault.seal(value, context(model, column, binding))


def open_text(model, column: str, binding: str, blob: bytes) -> str:
    """Open a value read without the ORM (a bulk comparison, a joined query)."""
    from portal.extensions import vault

    return vault.open(blob, context(model, column, binding))


def index_of(column_attr, value: str, row: Any = None) -> bytes:
    """The blind index of value for an indexed column attribute (e.g. Customer.email_index)."""
    return column_attr.property.columns[0].type.digest(value, row)


def matches(column_attr, value: str, row: Any = None):
    """A WHERE clause: the indexed column holds value's digest under any configured key."""
    return column_attr.in_(column_attr.property.columns[0].type.digests(value, row))


class SealedField:
    """The plaintext of a `Sealed` column: opened on read, sealed for this row on write.

    kind: "text" (str), "bytes" (bytes) or "json" (any JSON value).
    """

    def __init__(self, column: str, kind: str = "text"):
        self.column = column
        self.kind = kind

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, row, owner=None):
        if row is None:
            return self
        from portal.extensions import vault

        blob = getattr(row, self.column)
        if blob is None:
            return None
        plain = vault.open_bytes(blob, context(type(row), self.column, row.seal_binding))
        if self.kind == "bytes":
            return plain
        text = plain.decode()
        return json.loads(text) if self.kind == "json" else text

    def __set__(self, row, value) -> None:
        from portal.extensions import vault

        # Indexes first: a binding may read one (an activation code is bound to its digest).
        for column in type(row).__table__.columns:
            if isinstance(column.type, BlindIndex) and column.type.source == self.name:
                digest = None if value is None else column.type.digest(value, row)
                setattr(row, column.key, digest)
        if value is None:
            setattr(row, self.column, None)
            return
        binding = row.seal_binding
        if binding is None:
            raise ValueError(f"{type(row).__name__} needs its identity before {self.name} is set")
        data = json.dumps(value) if self.kind == "json" else value
        setattr(row, self.column, vault.seal(data, context(type(row), self.column, binding)))


def fields_of(model) -> dict[str, str]:
    """{sealed column: the SealedField's name} for a model."""
    return {
        value.column: name
        for klass in reversed(model.__mro__)
        for name, value in vars(klass).items()
        if isinstance(value, SealedField)
    }


@dataclass(frozen=True)
class SealedColumn:
    model: type
    column: str  # the *_sealed attribute


@dataclass(frozen=True)
class IndexColumn:
    model: type
    column: str  # the *_index attribute
    type: BlindIndex


def _mapped_models():
    from portal.models.base import Base

    return sorted((m.class_ for m in Base.registry.mappers), key=lambda m: m.__tablename__)


def sealed_columns() -> list[SealedColumn]:
    """Every sealed column of every model, from the metadata."""
    return [
        SealedColumn(model, column.key)
        for model in _mapped_models()
        for column in model.__table__.columns
        if isinstance(column.type, Sealed)
    ]


def blind_index_columns() -> list[IndexColumn]:
    """Every blind-index column of every model, from the metadata."""
    return [
        IndexColumn(model, column.key, column.type)
        for model in _mapped_models()
        for column in model.__table__.columns
        if isinstance(column.type, BlindIndex)
    ]
