"""Data-key rotation: re-seal every sealed column under the newest key, in resumable batches.

The columns come from the models' declarations (`portal.models.sealed`), so a sealed column
added later is rotated without anyone remembering to add it here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from portal import unit_of_work
from portal.extensions import db, vault
from portal.models.sealed import blind_index_columns, fields_of, sealed_columns
from portal.services import audit

BATCH_SIZE = 500


@dataclass
class Progress:
    """Where a rotation is: the table, rows looked at, rows re-sealed (so far, in that table)."""

    table: str
    seen: int
    resealed: int


def sealed_models() -> list[type]:
    """Every model with a sealed column or a blind index, in a stable order."""
    models = {c.model for c in sealed_columns()} | {c.model for c in blind_index_columns()}
    return sorted(models, key=lambda m: m.__tablename__)


def _needs_work(row, columns: list[str], indexes) -> bool:
    for column in columns:
        blob = getattr(row, column)
        if blob is not None and not vault.is_current(blob):
            return True
    # A row from before an index existed gets it here: rotation is the one pass over every row.
    return any(
        getattr(row, index.column) is None and getattr(row, index.type.source) is not None
        for index in indexes
    )


def _reseal(row, fields: dict[str, str]) -> None:
    # Open everything with the row's current binding first, then write back: writing a value
    # refreshes its indexes and seals it under the newest key (and a binding that reads an
    # index, like an activation code's, moves with it).
    plain = {name: getattr(row, name) for name in fields.values()}
    for name, value in plain.items():
        setattr(row, name, value)


def rotate(
    *,
    actor: str,
    progress: Callable[[Progress], None] = lambda _: None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, int]:
    """Re-seal every value not under the newest key. Each batch is a checkpoint (committed), so
    a rerun after a crash (even kill -9) resumes where it stopped. Returns rows re-sealed per
    table. A command's work: never in a request."""
    counts: dict[str, int] = {}
    for model in sealed_models():
        fields = fields_of(model)
        indexes = [i for i in blind_index_columns() if i.model is model]
        loads = [selectinload(getattr(model, r)) for r in getattr(model, "__seal_loads__", ())]
        table = model.__tablename__
        counts[table] = seen = 0
        last = 0
        while True:
            rows = db.session.scalars(
                select(model)
                .where(model.id > last)
                .order_by(model.id)
                .limit(batch_size)
                .options(*loads)
            ).all()
            if not rows:
                break
            for row in rows:
                last = row.id
                if _needs_work(row, list(fields), indexes):
                    _reseal(row, fields)
                    counts[table] += 1
            seen += len(rows)
            db.session.flush()
            unit_of_work.checkpoint()
            db.session.expunge_all()
            progress(Progress(table, seen, counts[table]))
    audit.record("keys.rotated", actor=actor, details=counts)
    db.session.flush()
    return counts


def stale_counts() -> dict[str, int]:
    """Rows per table that still hold a value under an older key (0 everywhere: done)."""
    columns: dict[type, list] = {}
    for column in sealed_columns():
        columns.setdefault(column.model, []).append(getattr(column.model, column.column))
    # Bytes 2-5 of a sealed value name its key (see portal.crypto): counted in the database.
    return {
        model.__tablename__: db.session.scalar(
            select(func.count()).where(
                or_(*(func.substr(attr, 2, 4) != vault.newest_id for attr in attrs))
            )
        )
        for model, attrs in sorted(columns.items(), key=lambda item: item[0].__tablename__)
    }
