"""Before a campaign goes out: who will get which notice, and the exact message of a sample
reader of each group, made by the campaign's own templates."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import case, func, select

from portal.extensions import db
from portal.mail.compose import Composed
from portal.mail.mime import Skeleton, fill
from portal.models import AuditEvent, Customer, Exposure, Incident, Notice
from portal.models.audit import Actor
from portal.services import audit
from portal.services.notices import Variants, variant_of
from portal.services.outbox import one_line, template_digest
from portal.unit_of_work import write_is_the_point

# What stands in for each reader's own link and reference code: the preview must never make a
# working link to somebody's page, not even for an admin.
PREVIEW_LINK_PATH = "/a/preview-only-each-reader-gets-their-own-link"
PREVIEW_CODE = "XXXX-XXXX-XXXX"
PREVIEW_FRAGMENT = "••••"


@dataclass(frozen=True)
class Group:
    """Readers of one language and one place of residence: each group gets its own wording."""

    locale: str
    region: str
    affected: int
    waiting: int  # not yet notified


def groups(incident: Incident) -> list[Group]:
    """The incident's readers by language and region, with how many are still to notify."""
    notified = select(Notice.customer_id).where(Notice.incident_id == incident.id).subquery()
    rows = db.session.execute(
        select(
            Customer.locale,
            Customer.region,
            func.count(func.distinct(Customer.id)),
            func.count(func.distinct(case((notified.c.customer_id.is_(None), Customer.id)))),
        )
        .select_from(Exposure)
        .join(Customer, Customer.id == Exposure.customer_id)
        .outerjoin(notified, notified.c.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id)
        .group_by(Customer.locale, Customer.region)
        .order_by(Customer.locale, Customer.region)
    )
    return [Group(locale, region or "", int(n), int(w)) for locale, region, n, w in rows]


@dataclass(frozen=True)
class Preview:
    reader: str  # the organisation's id of the reader previewed by name; "" for a group
    reader_public_id: str
    locale: str
    region: str
    composed: Composed  # with the placeholders filled in
    digest: str  # the campaign template this reader's notice is filled from
    message: bytes  # the whole message as the worker hands it to the server


class PreviewError(Exception):
    """Something to tell the admin; nothing was changed."""


def sample_reader(
    incident: Incident, *, locale: str = "", region: str = "", external_id: str = "", public_id=""
) -> Customer:
    """The reader a preview shows: by the organisation's own id (or our public id), else the
    first of a group of readers."""
    query = (
        select(Customer)
        .join(Exposure, Exposure.customer_id == Customer.id)
        .where(Exposure.incident_id == incident.id)
    )
    if external_id:
        query = query.where(Customer.external_id == external_id.strip())
    elif public_id:
        query = query.where(Customer.public_id == public_id)
    else:
        query = query.where(Customer.locale == locale, Customer.region == region)
    reader = db.session.scalar(query.order_by(Customer.id).limit(1))
    if reader is None:
        raise PreviewError(
            _("Nobody affected by this incident has that id.")
            if external_id or public_id
            else _("Nobody affected by this incident reads that language in that region.")
        )
    return reader


def preview(
    incident: Incident, reader: Customer, *, actor: str, named: bool, record: bool = True
) -> Preview:
    """The notice `reader` would get from the campaign, byte for byte, but for their link and
    reference code (placeholders) and the message's Date, Message-ID and boundary.

    A group's preview (`named` False) stands for everyone in it: the masked fragments are
    placeholders too, and nobody is named. Asked for one reader by id, it is theirs.
    """
    shown, fragments = variant_of(
        [(e.data_class, e.fragment) for e in reader.exposures if e.incident_id == incident.id]
    )
    variants = Variants(incident)
    composed = variants.compose(reader.locale, shown, reader.region or "")
    values = {
        "link": current_app.config["BASE_URL"].rstrip("/") + PREVIEW_LINK_PATH,
        "code": PREVIEW_CODE,
        **(fragments if named else dict.fromkeys(fragments, PREVIEW_FRAGMENT)),
    }
    sender = variants.sender
    subject = one_line(composed.subject)
    skeleton = Skeleton(
        sender=sender, subject=subject, locale=reader.locale, text=composed.text, html=composed.html
    )
    message = skeleton.build(
        recipient="reader@preview.invalid",
        message_id="<preview@preview.invalid>",
        date="Thu, 01 Jan 1970 00:00:00 +0000",
        values=values,
    )
    if record:
        # A preview shows a person's data types (and, by id, their masked fragments) to the
        # admin: on the record, though a GET writes nothing else.
        write_is_the_point(AuditEvent)
        audit.record(
            "notice.previewed",
            actor=actor,
            subject_type="incident",
            subject_id=incident.slug,
            details={"customer": reader.public_id, "named": named},
        )
    return Preview(
        reader=reader.external_id if named else "",
        reader_public_id=reader.public_id,
        locale=reader.locale,
        region=reader.region or "",
        composed=Composed(
            subject=subject,
            text=fill(composed.text, values, html=False),
            html=fill(composed.html, values, html=True),
        ),
        digest=template_digest(sender, subject, reader.locale, composed.text, composed.html),
        message=message,
    )


def incident_texts(incident: Incident) -> dict:
    """The incident's own words in every language: what each notice's sections are made of."""
    texts = {"en": {f: getattr(incident, f) or "" for f in Incident.translated_fields}}
    for locale, fields in sorted((incident.translations or {}).items()):
        texts[locale] = {f: fields.get(f, "") for f in Incident.translated_fields}
    return texts


def pinned(incident: Incident) -> dict:
    """What legal approves for a campaign, exactly as the preview shows it: the incident's words
    in each language, and per language and region the count of readers still to notify and the
    sample reader's message (subject and text, placeholders for link, code and fragments).

    Any change to the words, the templates, or who is waiting makes a different content, so it
    needs approving again."""
    shown = []
    for group in groups(incident):
        if not group.waiting:
            continue
        reader = sample_reader(incident, locale=group.locale, region=group.region)
        # Not recorded (record=False): a group's sample, nobody's data looked at by anyone.
        message = preview(incident, reader, actor=Actor.STAFF, named=False, record=False).composed
        shown.append(
            {
                "locale": group.locale,
                "region": group.region,
                "waiting": group.waiting,
                "subject": message.subject,
                "text": message.text,
            }
        )
    return {
        "incident": incident.slug,
        "texts": incident_texts(incident),
        "groups": shown,
        "total": sum(g["waiting"] for g in shown),
    }
