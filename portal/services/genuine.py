"""'Is this genuine?': anyone checks a link, a reference code, or the address or number a message
came from against the organisation's own record.

A real notice is confirmed with what its holder already has (the date it was sent and the
address it went to, masked), never more. Every check costs the same two queries whatever was
typed, so neither its answer's content nor its timing tells a typo from an unknown code, or a
forged link from a real one. The day's checks are counted by outcome: a rising number of "no
record" answers is a phishing wave, and the response team should warn people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import literal, select, union
from sqlalchemy.orm import joinedload

from portal import clock
from portal.extensions import db, limiter
from portal.models import Incident, Notice
from portal.models.protection import ProtectionOffer
from portal.services import reference_codes, tokens
from portal.services.customers import mask_email
from portal.validation import normalise_email

_COUNTS_KEPT_SECONDS = 3 * 24 * 3600
# A code that can exist nowhere: stands in for the lookup when what was typed cannot be one.
_NO_CODE = "-"


class Verdict(StrEnum):
    NOTICE = "notice"  # a notice we sent: by this link or with this code
    OURS = "ours"  # our site, or one of our sender addresses or phone numbers
    TYPO = "typo"  # a reference code whose check character does not match: a mistyped one
    NOT_OURS = "not_ours"  # a link to another site
    UNKNOWN = "unknown"  # we have no record of it


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    kind: str  # what was typed: "link", "code", "email", "phone" or "other"
    sent_at: datetime | None = None
    sent_to: str = ""  # masked
    host: str = ""  # for a link to another site: where it really goes


def check(typed: str) -> Answer:
    """What the organisation's record says of what someone typed or pasted."""
    typed = typed.strip()
    kind, notice_code, notice_id = _classify(typed)
    notice = _notice(code=notice_code, public_id=notice_id)
    contacts = _our_contacts()
    answer = _answer(typed, kind, notice, notice_code, contacts)
    _count(answer.verdict)
    return answer


def _classify(typed: str) -> tuple[str, str, str]:
    """(kind, code to look up, notice public id to look up): '' where there is none."""
    if "://" in typed or typed.lower().startswith("www.") or "/" in typed:
        return "link", "", _notice_public_id(typed)
    code = reference_codes.normalise(typed)
    if len(code) == reference_codes.BODY_LENGTH + 1 and code.isalnum():
        return "code", code if reference_codes.is_well_formed(code) else "", ""
    if "@" in typed:
        return "email", "", ""
    if len(re.sub(r"\D", "", typed)) >= 7 and re.fullmatch(r"[\d\s().+-]+", typed):
        return "phone", "", ""
    return "other", "", ""


def _host(typed: str) -> str:
    link = typed if "://" in typed else "https://" + typed
    try:
        return (urlsplit(link).hostname or "").lower()
    except ValueError:
        return ""


def _our_hosts() -> set[str]:
    config = current_app.config
    return {_host(config["BASE_URL"]), _host(config.get("STAFF_BASE_URL") or config["BASE_URL"])}


def _notice_public_id(typed: str) -> str:
    link = typed if "://" in typed else "https://" + typed
    try:
        parts = urlsplit(link)
    except ValueError:
        return ""
    if (parts.hostname or "").lower() not in _our_hosts() or not parts.path.startswith("/a/"):
        return ""
    found = tokens.signed_by_us(tokens.Purpose.NOTICE_LINK, parts.path.removeprefix("/a/"))
    return found[0] if found else ""


def _notice(*, code: str, public_id: str) -> Notice | None:
    """The one notice lookup every check makes (an impossible key when there is nothing)."""
    query = select(Notice).options(joinedload(Notice.customer))
    if public_id:
        query = query.where(Notice.public_id == public_id)
    else:
        query = query.where(Notice.reference_code == (code or _NO_CODE))
    return db.session.scalar(query)


def _digits(number: str) -> str:
    """A phone number's last ten digits: +1 (800) 555-0199 and 800-555-0199 are one number."""
    return re.sub(r"\D", "", number)[-10:]


@dataclass(frozen=True)
class _Contacts:
    emails: set[str]
    phones: set[str]


def _our_contacts() -> _Contacts:
    """The addresses and numbers we write and call from, and publish (one query)."""
    config = current_app.config
    rows = db.session.execute(
        union(
            select(Incident.contact_email, Incident.contact_phone),
            select(literal(""), ProtectionOffer.enroll_phone),
        )
    ).all()
    emails = {normalise_email(parseaddr(config["MAIL_FROM"])[1])}
    emails.update(
        normalise_email(parseaddr(config[name])[1])
        for name in ("ALERT_EMAIL", "ABUSE_EMAIL")
        if config.get(name)
    )
    phones = {_digits(config["SUPPORT_PHONE"])} if config["SUPPORT_PHONE"] else set()
    for email, phone in rows:
        if email and "@" in email:
            emails.add(normalise_email(email))
        if phone:
            phones.add(_digits(phone))
    phones.discard("")
    return _Contacts(emails, phones)


def _answer(typed, kind, notice, code, contacts) -> Answer:
    if kind == "link":
        host = _host(typed)
        if host not in _our_hosts():
            return Answer(Verdict.NOT_OURS, kind, host=host)
        if notice is not None:
            return _sent(notice, kind)
        # Our site, but no notice link we signed: its front page is ours; a token is not.
        path = urlsplit(typed if "://" in typed else "https://" + typed).path
        return Answer(Verdict.UNKNOWN if path.startswith("/a/") else Verdict.OURS, kind)
    if kind == "code":
        if not code:
            return Answer(Verdict.TYPO, kind)
        return _sent(notice, kind) if notice is not None else Answer(Verdict.UNKNOWN, kind)
    if kind == "email":
        ours = normalise_email(parseaddr(typed)[1] or typed) in contacts.emails
        return Answer(Verdict.OURS if ours else Verdict.UNKNOWN, kind)
    if kind == "phone":
        return Answer(Verdict.OURS if _digits(typed) in contacts.phones else Verdict.UNKNOWN, kind)
    return Answer(Verdict.UNKNOWN, kind)


def _sent(notice: Notice, kind: str) -> Answer:
    # What the holder of the link or code already has: the day it came and where to (masked),
    # as /start itself says where it sends a code.
    return Answer(
        Verdict.NOTICE,
        kind,
        sent_at=notice.sent_at or notice.queued_at or notice.created_at,
        sent_to=mask_email(notice.customer.email) if notice.customer.email else "",
    )


def _count(verdict: Verdict) -> None:
    # In the rate-limit store (Redis in production): shared by every instance, and nothing a
    # stranger typed is written anywhere.
    key = f"portal/genuine/{clock.now().date().isoformat()}/{verdict.value}"
    limiter.storage.incr(key, _COUNTS_KEPT_SECONDS)


def counts_today() -> dict[str, int]:
    """Today's checks by verdict (UTC)."""
    day = clock.now().date().isoformat()
    return {
        v.value: int(limiter.storage.get(f"portal/genuine/{day}/{v.value}") or 0) for v in Verdict
    }
