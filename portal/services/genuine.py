"""'Is this genuine?': anyone checks a link, a reference code, or the address or number a message
came from against the organisation's own record.

What it guarantees:
- it tells the holder of a real link the day it was sent and the address it went to (masked),
  the holder of a real code only the day, and nothing else of the person;
- every check runs the same two statements whatever was typed, so no path is measurably slower
  than another (the answers themselves differ: a mistyped code is said to be mistyped);
- the day's checks are counted by answer: a rising number of "no record" and "not ours" is a
  phishing wave, and the response team should warn people.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

from flask import current_app
from sqlalchemy import func, literal, select, union
from sqlalchemy.orm import joinedload

from portal import clock
from portal.extensions import db, limiter
from portal.models import Incident, Letter, Notice
from portal.models.protection import ProtectionOffer
from portal.services import reference_codes, tokens
from portal.services.customers import mask_email
from portal.validation import normalise_email, normalise_phone

_COUNTS_KEPT_SECONDS = 3 * 24 * 3600
# A code that can exist nowhere: stands in for the lookup when what was typed cannot be one.
_NO_CODE = "-"
# The first web address in what was pasted (a whole message may be): with a scheme, or a bare
# host name with a dot ("portal.example.com/a/...").
_URL = re.compile(r"(?:https?:)?//\S+|\b[\w.-]+\.[a-z]{2,}(?:[:/]\S*)?", re.IGNORECASE)
_PHONE = re.compile(r"(?:tel:)?\+?[\d\s().-]{7,}")


class Verdict(StrEnum):
    NOTICE = "notice"  # a notice we sent: by this link or with this code
    OURS = "ours"  # our site, or one of our sender addresses or phone numbers
    TYPO = "typo"  # a reference code whose check character does not match: a mistyped one
    NOT_OURS = "not_ours"  # a link to another site
    UNKNOWN = "unknown"  # a link, code, address or number we have no record of
    UNREADABLE = "unreadable"  # none of those: nothing to check


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    kind: str  # what was typed: "link", "code", "email", "phone" or "other"
    sent_at: datetime | None = None
    sent_to: str = ""  # masked; links only
    # A letter was printed for this notice's person: "•••, CA" (the state or country only).
    by_post: str = ""
    host: str = ""  # for a link to another site: where it really goes, as ASCII (punycode)


@dataclass(frozen=True)
class Typed:
    """What was typed, read once: its kind and the key it is looked up and rate-limited by."""

    kind: str
    text: str  # the normalised thing itself (a code, an address, a number, a link)
    link: SplitResult | None = None
    code: str = ""  # a well-formed code to look up
    notice_id: str = ""  # a notice's public id from a link we signed


def read(typed: str) -> Typed:
    """Classify what someone typed or pasted (a whole message may have been pasted)."""
    typed = unicodedata.normalize("NFKC", typed).strip()  # full-width keyboards, odd spaces
    address = parseaddr(typed)[1]
    if "@" in typed and "/" not in typed and "@" in address:
        return Typed("email", normalise_email(address))
    phone = typed.removeprefix("tel:")
    if _PHONE.fullmatch(typed) and len(re.sub(r"\D", "", phone)) >= 7 and "/" not in phone:
        return Typed("phone", _e164(phone))
    code = reference_codes.normalise(typed)
    if len(code) == reference_codes.BODY_LENGTH + 1 and code.isalnum() and not code.isdigit():
        return Typed("code", code, code=code if reference_codes.is_well_formed(code) else "")
    found = _URL.search(typed)
    if found:
        text = found.group(0)
        text = "https:" + text if text.startswith("//") else text
        text = text if "://" in text else "https://" + text
        try:
            link = urlsplit(text)
            link.port  # noqa: B018 (a port that is no number raises here)
        except ValueError:
            return Typed("link", text)
        return Typed("link", text, link=link, notice_id=_notice_public_id(link))
    return Typed("other", typed[:200])


def _e164(number: str) -> str:
    """A phone number in E.164; one without a country code is read as North American (the
    organisation notifies under US law): 800-555-0199 and +1 (800) 555 0199 are one number,
    +44 800 555 0199 is another."""
    phone = normalise_phone(number)
    if phone.startswith("+"):
        return phone
    if len(phone) == 10:
        return "+1" + phone
    if len(phone) == 11 and phone.startswith("1"):
        return "+" + phone
    return phone


def _our_origin() -> tuple[str, str, int]:
    # Only the customers' site: the staff host is for the organisation's own networks, and
    # nothing here should confirm where it is.
    base = urlsplit(current_app.config["BASE_URL"])
    return base.scheme, (base.hostname or "").lower(), base.port or _default_port(base.scheme)


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _is_ours(link: SplitResult | None) -> bool:
    """Whether a browser opening this link would reach our site, and nothing else.

    Browsers read a backslash as a slash and ignore what comes before an @ in the host part, so
    such links, and any other port, are not ours whatever host name they show.
    """
    if link is None or "\\" in link.netloc or "@" in link.netloc:
        return False
    scheme, host, port = _our_origin()
    return (
        link.scheme == scheme
        and (link.hostname or "").lower().rstrip(".") == host
        and (link.port or _default_port(link.scheme)) == port
    )


def _notice_public_id(link: SplitResult) -> str:
    if not _is_ours(link) or not link.path.startswith("/a/"):
        return ""
    found = tokens.signed_by_us(tokens.Purpose.NOTICE_LINK, link.path.removeprefix("/a/"))
    return found[0] if found else ""


def check(typed: str) -> Answer:
    """What the organisation's record says of what someone typed or pasted."""
    what = read(typed)
    notice, letter_at = _notice(code=what.code, public_id=what.notice_id)
    contacts = _our_contacts()
    answer = _answer(what, notice, contacts, letter_at)
    _count(answer.verdict)
    return answer


def _notice(*, code: str, public_id: str) -> tuple[Notice | None, datetime | None]:
    """The one notice lookup every check makes (an impossible key when there is nothing), with
    when a letter was printed for its person (None: no letter). One statement, the same for
    every check: the answer's time does not tell a real code from any other."""
    printed = (
        select(func.min(Letter.produced_at))
        .where(
            Letter.customer_id == Notice.customer_id,
            Letter.incident_id == Notice.incident_id,
            Letter.produced_at.is_not(None),
        )
        .scalar_subquery()
    )
    query = select(Notice, printed).options(joinedload(Notice.customer))
    if public_id:
        query = query.where(Notice.public_id == public_id)
    else:
        query = query.where(Notice.reference_code == (code or _NO_CODE))
    found = db.session.execute(query).first()
    return (found[0], found[1]) if found is not None else (None, None)


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
    emails = {
        normalise_email(parseaddr(config[name])[1])
        for name in ("MAIL_FROM", "ALERT_EMAIL", "ABUSE_EMAIL")
        if config.get(name)
    }
    phones = {_e164(config["SUPPORT_PHONE"])} if config["SUPPORT_PHONE"] else set()
    for email, phone in rows:
        if email and "@" in email:
            emails.add(normalise_email(email))
        if phone:
            phones.add(_e164(phone))
    return _Contacts(emails, phones)


def _answer(
    what: Typed, notice: Notice | None, contacts: _Contacts, letter_at: datetime | None = None
) -> Answer:
    if what.kind == "link":
        if not _is_ours(what.link):
            host = what.link.hostname if what.link is not None else ""
            return Answer(Verdict.NOT_OURS, what.kind, host=_ascii(host or ""))
        if notice is not None:
            return _sent(notice, what.kind, letter_at)
        # Our site, but no notice link we signed: its pages are ours; a forged token is not.
        path = what.link.path if what.link is not None else ""
        return Answer(Verdict.UNKNOWN if path.startswith("/a/") else Verdict.OURS, what.kind)
    if what.kind == "code":
        if not what.code:
            return Answer(Verdict.TYPO, what.kind)
        if notice is None:
            return Answer(Verdict.UNKNOWN, "code")
        return _sent(notice, what.kind, letter_at)
    if what.kind == "email":
        return Answer(Verdict.OURS if what.text in contacts.emails else Verdict.UNKNOWN, "email")
    if what.kind == "phone":
        return Answer(Verdict.OURS if what.text in contacts.phones else Verdict.UNKNOWN, "phone")
    return Answer(Verdict.UNREADABLE, what.kind)


def _ascii(host: str) -> str:
    """The host as its ASCII (punycode) form: a look-alike such as pοrtal (a Greek ο) shows as
    what it is, xn--prtal-..., not as our name."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host.encode("ascii", "backslashreplace").decode("ascii")


def by_post_to(region: str | None) -> str:
    """Where a letter went, as the public page says it: the state's (or country's) short form
    only. Street, city and postal code stay hidden: the page answers anyone who holds a code,
    and the state is on the letter's own envelope and in the notice's regional text."""
    short = (region or "").split("-")[-1]
    return f"•••, {short}" if short else "•••"


def _sent(notice: Notice, kind: str, letter_at: datetime | None = None) -> Answer:
    sent_at = notice.sent_at or notice.queued_at or letter_at or notice.created_at
    # Only the region, a plain column: no sealed address is opened for a stranger's check.
    by_post = by_post_to(notice.customer.region) if letter_at is not None else ""
    if kind != "link":
        # A code is printed on a letter, which may lie in a shared hall: its day only. The
        # address it went to is told to the holder of the email's own link alone.
        return Answer(Verdict.NOTICE, kind, sent_at=sent_at, by_post=by_post)
    email = notice.customer.email
    return Answer(
        Verdict.NOTICE,
        kind,
        sent_at=sent_at,
        sent_to=mask_email(email) if email else "",
        by_post=by_post,
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


def limit_key(typed: str) -> str:
    """What a check is rate-limited by: the thing itself however it is written (a code in any
    case or grouping, a link by the notice it opens), never the raw text."""
    what = read(typed)
    if what.notice_id:
        return "notice:" + what.notice_id
    return f"{what.kind}:{what.text}"
