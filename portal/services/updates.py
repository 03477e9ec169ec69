"""Updates about an incident: drafted, previewed, published; corrected in the open."""

from __future__ import annotations

from sqlalchemy import func, select

from portal import clock, unit_of_work
from portal.extensions import db
from portal.i18n import with_translation
from portal.models import Incident, IncidentUpdate
from portal.services import audit
from portal.services.background import Progress, job
from portal.validation import SINGLE_LINE_EXPECTED, is_single_line


class UpdateError(Exception):
    """Something to tell the admin, in words; nothing was changed."""


def _check(title: str, body: str) -> tuple[str, str]:
    title, body = (title or "").strip(), (body or "").strip()
    if not is_single_line(title):  # a title is one line, wherever it is shown or sent
        raise UpdateError(str(SINGLE_LINE_EXPECTED))
    if not title or len(title) > 200:
        raise UpdateError("A title is required (at most 200 characters).")
    if not body or len(body) > 20000:
        raise UpdateError("Write the update (at most 20,000 characters).")
    return title, body


def _translate(update: IncidentUpdate, translations: dict[str, dict[str, str]] | None) -> None:
    """Set the update's title and text in other languages; an empty one falls back to English."""
    for language, texts in (translations or {}).items():
        if not is_single_line(texts.get("title") or ""):
            raise UpdateError(str(SINGLE_LINE_EXPECTED))
        if len((texts.get("title") or "").strip()) > 200:
            raise UpdateError("A title is required (at most 200 characters).")
        if len((texts.get("body") or "").strip()) > 20000:
            raise UpdateError("Write the update (at most 20,000 characters).")
        update.translations = with_translation(update, language, texts)


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


def draft(
    incident: Incident, title: str, body: str, *, actor: str, translations=None
) -> IncidentUpdate:
    title, body = _check(title, body)
    update = IncidentUpdate(incident_id=incident.id, title=title, body=body)
    _translate(update, translations)
    db.session.add(update)
    db.session.flush()
    audit.record(
        "update.drafted", actor=actor, subject_type="incident_update", subject_id=update.id
    )
    db.session.flush()
    return update


def subject_of(update: IncidentUpdate) -> str:
    """What kind of thing legal approves: a correction, or an update."""
    return "correction" if update.corrects_id else "update"


def pinned(update: IncidentUpdate) -> dict:
    """What legal approves for an update: its title and text in every language version."""
    versions = {"en": {"title": update.title, "body": update.body}}
    for locale, fields in sorted((update.translations or {}).items()):
        versions[locale] = {f: fields.get(f, "") for f in IncidentUpdate.translated_fields}
    return {"versions": versions, "corrects": update.corrects_id}


def get(update_id: int) -> IncidentUpdate | None:
    return db.session.get(IncidentUpdate, update_id)


def publish(update: IncidentUpdate, *, actor: str) -> None:
    """Publish a draft: customers see it on their page, everyone on the public page."""
    if update.published_at is not None:
        raise UpdateError("This update is already published; publish a correction instead.")
    from portal.services import approvals

    # Four eyes: legal approved exactly this text in every language (or two admins overrode).
    try:
        approvals.require(subject_of(update), str(update.id), pinned(update))
    except approvals.NotApproved as exc:
        raise UpdateError(str(exc)) from None
    update.published_at = clock.now()
    audit.record(
        "update.published", actor=actor, subject_type="incident_update", subject_id=update.id
    )
    db.session.flush()


def edit_draft(
    update: IncidentUpdate, title: str, body: str, *, actor: str, translations=None
) -> None:
    if update.published_at is not None:
        raise UpdateError("A published update is never edited; publish a correction instead.")
    from portal.services import approvals

    before = pinned(update)
    update.title, update.body = _check(title, body)
    _translate(update, translations)
    if pinned(update) != before:
        # A change after approval (or while legal looks) returns it to draft: approve again.
        approvals.withdraw(subject_of(update), str(update.id), actor=actor)
    audit.record("update.edited", actor=actor, subject_type="incident_update", subject_id=update.id)
    db.session.flush()


def correct(
    update: IncidentUpdate, title: str, body: str, *, actor: str, translations=None
) -> IncidentUpdate:
    """A correction is a new update pointing at the original (kept as it was), saved as a
    draft: like any update, it is published once legal approved it."""
    if update.published_at is None:
        raise UpdateError("Only a published update can be corrected; edit the draft instead.")
    title, body = _check(title, body)
    correction = IncidentUpdate(
        incident_id=update.incident_id,
        title=title,
        body=body,
        corrects_id=update.id,
    )
    _translate(correction, translations)
    db.session.add(correction)
    db.session.flush()
    audit.record(
        "update.corrected",
        actor=actor,
        subject_type="incident_update",
        subject_id=correction.id,
        details={"corrects": update.id},
    )
    db.session.flush()
    return correction


def notify_affected(update_id: int, *, progress=None, batch_size: int = 500) -> int:
    """Email everyone the incident touched that there is an update (once each, in batches)."""
    from portal.mail.compose import compose_update_notice
    from portal.models import Customer, Exposure, OutboxMessage
    from portal.services import outbox

    update = db.session.get(IncidentUpdate, update_id)
    incident = db.session.get(Incident, update.incident_id)
    affected = (
        select(Exposure.customer_id)
        .where(Exposure.incident_id == incident.id)
        .distinct()
        .scalar_subquery()
    )
    total = db.session.scalar(
        select(func.count()).select_from(Customer).where(Customer.id.in_(affected))
    )
    queued, done, last = 0, 0, 0
    while True:
        customers = db.session.scalars(
            select(Customer)
            .where(Customer.id.in_(affected), Customer.id > last)
            .order_by(Customer.id)
            .limit(batch_size)
        ).all()
        if not customers:
            break
        keys = {f"update:{update.id}:{c.public_id}": c for c in customers}
        already = set(
            db.session.scalars(
                select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys))
            )
        )
        for key, customer in keys.items():
            if key in already:
                continue  # a rerun after a crash sends nobody a second copy
            outbox.queue_message(
                compose_update_notice,
                to=customer.email,
                locale=customer.locale,
                dedupe_key=key,
                incident=incident,
                update=update,
            )
            queued += 1
        last = customers[-1].id
        done += len(customers)
        # Each batch is kept as it finishes: a rerun after a crash carries on from here.
        unit_of_work.checkpoint()
        if progress is not None:
            progress(done, total)
    return queued


@job("notify_update")
def _notify_update_job(payload: dict, progress: Progress) -> dict:
    """Job: email the affected customers about a published update."""
    return {"queued": notify_affected(payload["update_id"], progress=progress)}
