"""The declarative base: named constraints so every migration can name what it changes."""

from datetime import UTC
from typing import ClassVar

from sqlalchemy import JSON, DateTime, MetaData, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    @property
    def seal_binding(self) -> str | None:
        """The row identity its sealed values are bound to (see portal.models.sealed)."""
        return getattr(self, "public_id", None)


class Translated:
    """Text the organisation wrote in English, with its other languages beside it.

    `translations` holds {"es": {"title": "...", ...}} for the fields named in
    `translated_fields`; a language or field left out is shown in English, marked as such
    (portal.i18n.localized). Always assigned as a new dict, never changed in place.
    """

    translated_fields: ClassVar[tuple[str, ...]] = ()
    # JSONB on PostgreSQL: plain json has no equality, and some queries ask DISTINCT rows.
    translations: Mapped[dict[str, dict[str, str]]] = mapped_column(
        JSON().with_variant(JSONB(), "postgresql"), default=dict, server_default="{}"
    )
