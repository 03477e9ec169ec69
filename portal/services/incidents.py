"""Incidents: create them and find them by slug."""

from __future__ import annotations

import re
from datetime import date

from flask_babel import gettext as _
from sqlalchemy import bindparam, select

from portal.extensions import db
from portal.i18n import with_translation
from portal.models import Incident, Notice
from portal.services import audit
from portal.validation import SINGLE_LINE_EXPECTED, Invalid, email_address, is_single_line

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class IncidentError(Exception):
    """The request cannot be carried out; the message says why, in words for a person."""


def _checked_contact(fields: dict) -> dict:
    """The fields with the contact email in its kept form (the one rule of portal.validation).

    The contact phone is left as written: it is a helpline shown to people ("1-800-555-0199"),
    in the form they dial it at home, not a number the portal sends anything to.
    """
    if fields.get("contact_email"):
        try:
            return {**fields, "contact_email": email_address(fields["contact_email"])}
        except Invalid:
            raise IncidentError(_("That email address is not valid.")) from None
    return fields


# Shown on one line, and the title is in the subject of every update email: a line break there
# would end the Subject header (the email cannot be built) or forge another header.
SINGLE_LINE = ("title", "contact_phone", "contact_hours", "contact_email")


def _refuse_line_breaks(fields: dict, translations: dict[str, dict[str, str]] | None) -> None:
    texts = [fields, *(translations or {}).values()]
    for values in texts:
        for name in SINGLE_LINE:
            value = values.get(name)
            if isinstance(value, str) and not is_single_line(value):
                raise IncidentError(str(SINGLE_LINE_EXPECTED))


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
    _refuse_line_breaks({**fields, "title": title}, None)
    title = title.strip()
    if not title or len(title) > 200:
        raise IncidentError(_("A title is required (at most 200 characters)."))
    if db.session.scalar(select(Incident.id).where(Incident.slug == slug)) is not None:
        raise IncidentError(_("An incident with the slug %(slug)s already exists.", slug=slug))
    fields = _checked_contact(fields)
    incident = Incident(slug=slug, title=title, discovered_on=discovered_on, **fields)
    db.session.add(incident)
    db.session.flush()
    audit.record("incident.created", actor=actor, subject_type="incident", subject_id=slug)
    db.session.flush()
    return incident


EDITABLE = (
    "title",
    "status",
    "occurred_on",
    "occurred_to",
    "discovered_on",
    "contained_on",
    "materiality_on",
    "delayed_by_law_enforcement",
    "hipaa_role",
    "postal_notice",
    "what_happened",
    "what_we_are_doing",
    "more_information",
    "contact_phone",
    "contact_hours",
    "contact_email",
)


_LIMITS = {"title": 200, "contact_hours": 200}  # the sections: 20,000 characters


def update_incident(
    incident: Incident,
    *,
    actor: str,
    translations: dict[str, dict[str, str]] | None = None,
    **fields,
) -> Incident:
    """Change the incident's notice text and facts (Markdown is sanitised when shown), and its
    text in other languages: {"es": {"title": ...}}; an empty text falls back to the English."""
    from portal.models.incident import HIPAA_ROLES, INCIDENT_STATUSES

    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise IncidentError(
            _("These cannot be changed here: %(names)s", names=", ".join(sorted(unknown)))
        )
    _refuse_line_breaks(fields, translations)
    title = (fields.get("title") or incident.title).strip()
    if not title or len(title) > 200:
        raise IncidentError(_("A title is required (at most 200 characters)."))
    if fields.get("status", incident.status) not in INCIDENT_STATUSES:
        raise IncidentError(_("Unknown status."))
    if fields.get("discovered_on", incident.discovered_on) is None:
        raise IncidentError(_("The discovery date is required."))
    first = fields.get("occurred_on", incident.occurred_on)
    last = fields.get("occurred_to", incident.occurred_to)
    if first is not None and last is not None and last < first:
        raise IncidentError(_("The last day cannot be before the first day."))
    if fields.get("hipaa_role", incident.hipaa_role) not in HIPAA_ROLES:
        raise IncidentError(_("Unknown HIPAA role."))
    fields = _checked_contact(fields)
    for name in ("what_happened", "what_we_are_doing", "more_information"):
        if len(fields.get(name) or "") > 20000:
            raise IncidentError(_("Each section may hold at most 20,000 characters."))
    for texts in (translations or {}).values():
        for name, value in texts.items():
            if len((value or "").strip()) > _LIMITS.get(name, 20000):
                raise IncidentError(_("A translation is longer than the field allows."))
    for name, value in fields.items():
        setattr(incident, name, value.strip() if isinstance(value, str) else value)
    incident.title = title
    for language, texts in (translations or {}).items():
        incident.translations = with_translation(incident, language, texts)
    audit.record(
        "incident.updated",
        actor=actor,
        subject_type="incident",
        subject_id=incident.slug,
        details={"fields": sorted(fields), "languages": sorted(translations or {})},
    )
    db.session.flush()
    return incident


def all_incidents() -> list[Incident]:
    return list(db.session.scalars(select(Incident).order_by(Incident.discovered_on.desc())))


def _announced():
    """Incidents people have been told about: at least one notice queued. Before that, an
    incident is the response team's business, not the public's."""
    return select(Notice.id).where(Notice.incident_id == Incident.id).exists()


# Built once: making a statement costs more CPU than running it.
_ANNOUNCED = (
    select(Incident).where(_announced()).order_by(Incident.discovered_on.desc(), Incident.id.desc())
)

_ANNOUNCED_BY_SLUG = select(Incident).where(Incident.slug == bindparam("slug"), _announced())


def get_announced(slug: str) -> Incident:
    """The incident with this slug, if people have been told about it (its public page): before
    its first notice, even a guessed slug finds nothing (a law-enforcement delay, say)."""
    incident = db.session.scalar(_ANNOUNCED_BY_SLUG, {"slug": slug})
    if incident is None:
        raise IncidentError(_("No incident has the slug %(slug)s.", slug=slug))
    return incident


def announced_incidents() -> list[Incident]:
    """The incidents the front page lists, newest first."""
    return list(db.session.scalars(_ANNOUNCED))


def support_line(
    notice_id: int | None = None, announced: list[Incident] | None = None
) -> Incident | None:
    """The incident whose helpline (phone, hours, email) a stuck person should see: the one
    their notice is about, else the newest announced incident that has a phone line (picked
    from `announced` when the page has read them already: the front page, one query less)."""
    if notice_id is None and announced is not None:
        return next((incident for incident in announced if incident.contact_phone), None)
    with_line = select(Incident).where(Incident.contact_phone != "")
    if notice_id is not None:
        incident = db.session.scalar(
            with_line.join(Notice, Notice.incident_id == Incident.id).where(Notice.id == notice_id)
        )
        if incident is not None:
            return incident
    return db.session.scalar(
        with_line.where(_announced())
        .order_by(Incident.discovered_on.desc(), Incident.id.desc())
        .limit(1)
    )
