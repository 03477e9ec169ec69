"""Incidents: create them and find them by slug."""

from __future__ import annotations

import re
from datetime import date

from flask_babel import gettext as _
from sqlalchemy import select

from portal.extensions import db
from portal.models import Incident
from portal.services import audit

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class IncidentError(Exception):
    """The request cannot be carried out; the message says why, in words for a person."""


def get_by_slug(slug: str) -> Incident:
    incident = db.session.scalar(select(Incident).where(Incident.slug == slug))
    if incident is None:
        raise IncidentError(_("No incident has the slug %(slug)s.", slug=slug))
    return incident


def create_incident(
    *, slug: str, title: str, discovered_on: date, actor: str, **fields
) -> Incident:
    """Create an incident; slugs are lowercase words joined by dashes and must be unique."""
    if not _SLUG.match(slug):
        raise IncidentError(_("A slug is lowercase letters, digits and dashes, like acme-2026."))
    title = title.strip()
    if not title or len(title) > 200:
        raise IncidentError(_("A title is required (at most 200 characters)."))
    if db.session.scalar(select(Incident.id).where(Incident.slug == slug)) is not None:
        raise IncidentError(_("An incident with the slug %(slug)s already exists.", slug=slug))
    incident = Incident(slug=slug, title=title, discovered_on=discovered_on, **fields)
    db.session.add(incident)
    db.session.flush()
    audit.record("incident.created", actor=actor, subject_type="incident", subject_id=slug)
    db.session.commit()
    return incident
