"""Helpers for tests whose subject is not four-eyes approval: "legal approved it" in one line,
through the real service (a drafter with the drafting role, another member holding legal)."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Incident, IncidentUpdate, StaffMember
from portal.services import approvals, letters, notice_preview, updates
from portal.services.staff import invite

DRAFTER = "drafter@approvals.example"
LEGAL = "legal@approvals.example"


def _member(email: str, *roles: str) -> StaffMember:
    found = next((m for m in db.session.scalars(select(StaffMember)) if m.email == email), None)
    if found is None:
        invite(email, roles[0], actor="test", roles=roles)
        found = next(m for m in db.session.scalars(select(StaffMember)) if m.email == email)
    return found


def _approve(incident, subject: str, ref: str, content: dict):
    drafter = _member(DRAFTER, "admin", "communications", "security")
    legal = _member(LEGAL, "legal")
    asked = approvals.submit(incident, subject, ref, content, drafter=drafter)
    approved = approvals.approve(asked, approver=legal)
    db.session.commit()  # as a request's end would: the pages and commands under test see it
    return approved


def approve_campaign(incident):
    """Legal approves the incident's campaign exactly as it stands now."""
    return _approve(incident, "campaign", incident.slug, notice_preview.pinned(incident))


def approve_letters(incident):
    """Legal approves the letters due exactly as they stand now."""
    return _approve(incident, "letters", incident.slug, letters.pinned(incident))


def approve_update(update: IncidentUpdate):
    """Legal approves an update (or correction) exactly as it stands now."""
    incident = db.session.get(Incident, update.incident_id)
    return _approve(incident, updates.subject_of(update), str(update.id), updates.pinned(update))
