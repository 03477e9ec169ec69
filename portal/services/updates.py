"""Updates about an incident: drafted, previewed, published; corrected in the open."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Incident, IncidentUpdate
from portal.models.base import utcnow
from portal.services import audit


class UpdateError(Exception):
    """Something to tell the admin, in words; nothing was changed."""


def _check(title: str, body: str) -> tuple[str, str]:
    title, body = (title or "").strip(), (body or "").strip()
    if not title or len(title) > 200:
        raise UpdateError("A title is required (at most 200 characters).")
    if not body or len(body) > 20000:
        raise UpdateError("Write the update (at most 20,000 characters).")
    return title, body


def for_incident(incident: Incident) -> list[IncidentUpdate]:
    """Every update, drafts first, then the published ones newest first."""
    return list(
        db.session.scalars(
            select(IncidentUpdate)
            .where(IncidentUpdate.incident_id == incident.id)
            .order_by(
                IncidentUpdate.published_at.is_not(None),
                IncidentUpdate.published_at.desc(),
                IncidentUpdate.id.desc(),
            )
        )
    )


def published(incident: Incident) -> list[IncidentUpdate]:
    return list(
        db.session.scalars(
            select(IncidentUpdate)
            .where(
                IncidentUpdate.incident_id == incident.id, IncidentUpdate.published_at.is_not(None)
            )
            .order_by(IncidentUpdate.published_at.desc(), IncidentUpdate.id.desc())
        )
    )


def draft(incident: Incident, title: str, body: str, *, actor: str) -> IncidentUpdate:
    title, body = _check(title, body)
    update = IncidentUpdate(incident_id=incident.id, title=title, body=body)
    db.session.add(update)
    db.session.flush()
    audit.record(
        "update.drafted", actor=actor, subject_type="incident_update", subject_id=update.id
    )
    db.session.commit()
    return update


def get(update_id: int) -> IncidentUpdate | None:
    return db.session.get(IncidentUpdate, update_id)


def publish(update: IncidentUpdate, *, actor: str) -> None:
    """Publish a draft: customers see it on their page, everyone on the public page."""
    if update.published_at is not None:
        raise UpdateError("This update is already published; publish a correction instead.")
    update.published_at = utcnow()
    audit.record(
        "update.published", actor=actor, subject_type="incident_update", subject_id=update.id
    )
    db.session.commit()


def edit_draft(update: IncidentUpdate, title: str, body: str, *, actor: str) -> None:
    if update.published_at is not None:
        raise UpdateError("A published update is never edited; publish a correction instead.")
    update.title, update.body = _check(title, body)
    audit.record("update.edited", actor=actor, subject_type="incident_update", subject_id=update.id)
    db.session.commit()


def correct(update: IncidentUpdate, title: str, body: str, *, actor: str) -> IncidentUpdate:
    """A correction is published as a new update pointing at the original (kept as it was)."""
    if update.published_at is None:
        raise UpdateError("Only a published update can be corrected; edit the draft instead.")
    title, body = _check(title, body)
    correction = IncidentUpdate(
        incident_id=update.incident_id,
        title=title,
        body=body,
        corrects_id=update.id,
        published_at=utcnow(),
    )
    db.session.add(correction)
    db.session.flush()
    audit.record(
        "update.corrected",
        actor=actor,
        subject_type="incident_update",
        subject_id=correction.id,
        details={"corrects": update.id},
    )
    db.session.commit()
    return correction
