"""Proving who you are: the notice link, the reference code, and the one-time code."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

import pyotp
from flask import current_app
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload

from portal import clock
from portal.extensions import db
from portal.i18n import language_for
from portal.mail.compose import compose_code, compose_new_link
from portal.models import AuditEvent, Challenge, Customer, Incident, Notice, OutboxMessage
from portal.models.audit import Actor
from portal.services import audit, background, outbox, reference_codes, tokens
from portal.services.customers import find_by_email, mask_email
from portal.unit_of_work import write_is_the_point
from portal.validation import normalise_email


class VerificationError(Exception):
    """Something a visitor should be told, in words, with what to do next."""


class LinkInvalid(VerificationError):
    """The link is not one we issued (or was changed), has expired, or was replaced."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # "tampered", "expired" or "revoked"


class VerificationLocked(VerificationError):
    """Too many wrong codes: only support can let this customer verify again."""


class NoContactOnFile(VerificationLocked):
    """Neither a phone nor an email on file to send a code to (a person reached by letter):
    a person at support checks who they are instead."""


class TooManyCodes(VerificationError):
    """This customer was sent as many codes as an hour allows."""


class ChallengeEnded(VerificationError):
    """The code can no longer be used (expired, used, or too many wrong tries)."""


class CodeRejected(VerificationError):
    """A wrong (or unreadable) code; `remaining` tries are left on this challenge."""

    def __init__(self, message: str, remaining: int | None):
        super().__init__(message)
        self.remaining = remaining


class ResendLimited(VerificationError):
    """The same code was sent again as often as allowed."""


@dataclass(frozen=True)
class LinkLanding:
    notice: Notice
    incident: Incident

    @property
    def channel(self) -> str:
        """Where the code will go, masked ("by text message to the phone number ending in 67"):
        worded when the page asks, in the page's language, which is known only once the notice
        is (the customer's, unless they picked another). Plain text, escaped where shown."""
        return describe_channel(self.notice.customer)


# --- channels ---


def _uses_sms(customer: Customer) -> bool:
    config = current_app.config
    return (
        customer.phone_sealed is not None
        and (bool(config["SMS_URL"]) or config["PORTAL_ENV"] == "development")
        and not _held(customer, "phone")
    )


def _held(customer: Customer, field: str) -> bool:
    """A number or address staff changed within the hold, unapproved: no code goes to it."""
    from portal.services import contact_changes  # it builds on this module's code digests

    return contact_changes.recently_changed(customer, field)


def describe_channel(customer: Customer, channel: str | None = None) -> str:
    """Where the code goes, masked enough to reveal nothing to someone holding the link."""
    if (channel or ("sms" if _uses_sms(customer) else "email")) == "sms":
        return _(
            "by text message to the phone number ending in %(digits)s", digits=customer.phone[-2:]
        )
    return _("by email to %(address)s", address=mask_email(customer.email or ""))


def _channels(customer: Customer) -> list[str]:
    """Every way to reach this customer with a code, on file with the organisation."""
    return (["sms"] if _uses_sms(customer) else []) + (
        [] if customer.email_sealed is None or _held(customer, "email") else ["email"]
    )


@dataclass(frozen=True)
class CodeDelivery:
    """Where the pending code went, and where else it can go (the other contact on file)."""

    sent_to: str
    other_channel: str | None
    other_to: str | None


def delivery(challenge_public_id: str | None) -> CodeDelivery | None:
    """For the code page: where the code went; None when there is no pending code."""
    try:
        challenge = _active_challenge(challenge_public_id)
    except (ChallengeEnded, VerificationLocked):
        return None
    customer = challenge.customer
    others = [c for c in _channels(customer) if c != challenge.channel]
    other = others[0] if others else None
    return CodeDelivery(
        sent_to=describe_channel(customer, challenge.channel),
        other_channel=other,
        other_to=describe_channel(customer, other) if other else None,
    )


# --- the link ---


# Its customer and incident in the same query: the link page and the code's start read both.
# Built once: making this statement (two joined loads) cost about as much CPU as running it.
_NOTICE_BY_PUBLIC_ID = (
    select(Notice)
    .where(Notice.public_id == bindparam("public_id"))
    .options(
        joinedload(Notice.customer, innerjoin=True), joinedload(Notice.incident, innerjoin=True)
    )
)


def _notice_from_token(token: str) -> Notice:
    try:
        public_id, nonce = tokens.load(tokens.Purpose.NOTICE_LINK, token)
    except tokens.ExpiredToken as exc:
        raise LinkInvalid("expired") from exc
    except tokens.InvalidToken as exc:
        raise LinkInvalid("tampered") from exc
    notice = db.session.scalar(_NOTICE_BY_PUBLIC_ID, {"public_id": public_id})
    if notice is None:
        raise LinkInvalid("tampered")
    # A newer link replaces the nonce: every link sent before it stops working.
    if not hmac.compare_digest(nonce.encode(), notice.link_nonce.encode()):
        raise LinkInvalid("revoked")
    return notice


def open_link(token: str) -> LinkLanding:
    """Check a notice link and say where its code would go. Spends nothing: scanners open links."""
    notice = _notice_from_token(token)
    # Written on this GET on purpose: the first opening is a figure for the response team's
    # funnel (not a state of the link), and every opening of a personal link is recorded.
    write_is_the_point(Notice.opened_at, AuditEvent)
    if notice.opened_at is None:
        notice.opened_at = clock.now()  # a figure for the response team, not a state of the link
    audit.record(
        "link.opened", actor=Actor.CUSTOMER, subject_type="notice", subject_id=notice.public_id
    )
    return LinkLanding(notice, notice.incident)


def start_from_link(token: str, *, chosen: str | None = None) -> Challenge:
    """The visitor pressed the button on the link page: send a code (in the language they
    `chosen` on the page, if they picked one, else their own)."""
    notice = _notice_from_token(token)
    return _start(notice.customer, notice, chosen=chosen)


def start_from_reference(typed: str, *, chosen: str | None = None) -> Challenge:
    """The visitor typed the reference code from a paper letter."""
    code = reference_codes.normalise(typed)
    if not reference_codes.is_well_formed(code):
        # A typo is caught by the check character before any lookup: it counts against nobody.
        raise CodeRejected(
            _(
                "That code does not look right. It has 12 letters and numbers, like "
                "ABCD-EFGH-JKMN; please check each character."
            ),
            remaining=None,
        )
    notice = db.session.scalar(select(Notice).where(Notice.reference_code == code))
    if notice is None:
        raise CodeRejected(
            _("We could not find that reference code. Please check it against your letter."),
            remaining=None,
        )
    return _start(notice.customer, notice, chosen=chosen)


def start_step_up(customer: Customer) -> Challenge:
    """A signed-in customer proves themselves again before a sensitive act."""
    return _start(customer, None, purpose="step_up")


# --- the one-time code -------------------------------------------------------------------------


def _code_digest(challenge_public_id: str, code: str) -> bytes:
    key = hmac.new(
        current_app.config["SECRET_KEY"].encode(), b"portal challenge code v1", hashlib.sha256
    ).digest()
    return hmac.new(key, f"{challenge_public_id}:{code}".encode(), hashlib.sha256).digest()


def _failures_in_window(customer_id: int) -> int:
    since = clock.now() - current_app.config["VERIFY_LOCK_WINDOW_TTL"]
    return db.session.scalar(
        select(func.coalesce(func.sum(Challenge.tries), 0)).where(
            Challenge.customer_id == customer_id, Challenge.created_at >= since
        )
    )


def _start(
    customer: Customer, notice: Notice | None, purpose: str = "verify", chosen: str | None = None
) -> Challenge:
    from portal.services import contact_changes

    config = current_app.config
    contact_changes.settle_due(customer)  # a change whose hold is over: the code goes there
    if customer.verification_locked_at is not None:
        raise VerificationLocked()
    now = clock.now()
    recent = db.session.scalar(
        select(func.count())
        .select_from(Challenge)
        .where(
            Challenge.customer_id == customer.id, Challenge.created_at >= now - timedelta(hours=1)
        )
    )
    # Each start sends a message: cap them, or a stranger with a letter could flood a phone.
    if recent >= config["CHALLENGES_PER_HOUR"]:
        raise TooManyCodes()
    if not _uses_sms(customer) and _held(customer, "email"):
        # The only way left is an address staff changed without a second approval: a person
        # at support must look first (that address may be whoever asked for the change).
        raise VerificationLocked()
    if not _uses_sms(customer) and customer.email_sealed is None:
        # Known only by a postal address: no code can reach them, and a letter's reference
        # code alone must not open the account. Support checks who they are.
        raise NoContactOnFile()
    # A fresh random secret per challenge; the code is its first HOTP value (6 digits).
    code = pyotp.HOTP(pyotp.random_base32()).at(0)
    challenge = Challenge(
        public_id=secrets.token_hex(16),
        customer_id=customer.id,
        notice_id=notice.id if notice else None,
        purpose=purpose,
        channel="sms" if _uses_sms(customer) else "email",
        expires_at=now + config["CODE_TTL"],
        created_at=now,
    )
    challenge.code_digest = _code_digest(challenge.public_id, code)
    challenge.code = code  # sealed, only so that "resend" can send it again
    db.session.add(challenge)
    db.session.flush()
    _send_code(challenge, customer, code, chosen)
    audit.record(
        "challenge.started",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=customer.public_id,
        details={"channel": challenge.channel},
    )
    db.session.flush()
    return challenge


def _send_code(challenge: Challenge, customer: Customer, code: str, chosen: str | None) -> None:
    key = f"code:{challenge.public_id}:{challenge.resends}"
    sms = challenge.channel == "sms"
    outbox.queue_message(
        compose_code,
        to=customer.phone if sms else customer.email,
        # The language the person picked on the page they asked from: a code in the other
        # language, right after they switched, reads like a message from someone else.
        locale=chosen or customer.locale,
        dedupe_key=key,
        sms=sms,
        # Never delivered late: a code that arrives after it expired only confuses.
        expires_at=challenge.expires_at,
        code=code,
        ttl_minutes=_ttl_minutes(),
    )
    audit.record(
        "code.sent",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=customer.public_id,
        details={"channel": challenge.channel, "resend": challenge.resends},
    )


def language_of(customer: Customer) -> str:
    """The portal language this customer reads."""
    return language_for(customer.locale)


def _ttl_minutes() -> int:
    return int(current_app.config["CODE_TTL"].total_seconds() // 60)


def _active_challenge(challenge_public_id: str | None) -> Challenge:
    challenge = None
    if challenge_public_id:
        challenge = db.session.scalar(
            select(Challenge).where(Challenge.public_id == challenge_public_id)
        )
    if challenge is None:
        raise ChallengeEnded(_("Please start again from the link in your notice."))
    if challenge.customer.verification_locked_at is not None:
        raise VerificationLocked()
    if challenge.consumed_at is not None:
        raise ChallengeEnded(_("This code has already been used. Ask for a new one."))
    if challenge.expires_at <= clock.now():
        raise ChallengeEnded(_("This code has expired. Ask for a new one."))
    if challenge.tries >= current_app.config["CODE_MAX_TRIES"]:
        raise ChallengeEnded(_("Too many wrong tries for this code. Ask for a new one."))
    return challenge


_SIX_ASCII_DIGITS = re.compile("[0-9]{6}")


def normalise_code(typed: str) -> str | None:
    """What people type, as 6 ASCII digits: spaces and dashes dropped, nothing else changed.

    Only ASCII 0-9 count (OTP-04): no Unicode folding, `\\d` or `int()`, which would take
    full-width or other scripts' digits ("１２３４５６") as a code and widen what a guess may be.
    """
    digits = "".join(ch for ch in typed if ch not in " -\t\u00a0")
    if _SIX_ASCII_DIGITS.fullmatch(digits):
        return digits
    return None


def verify_code(challenge_public_id: str | None, typed: str) -> Challenge:
    """Check a typed code against this browser's challenge; return it spent on success."""
    config = current_app.config
    challenge = _active_challenge(challenge_public_id)
    code = normalise_code(typed)
    if code is None:
        # Not a guess at all: tell the person what to type, and count nothing.
        raise CodeRejected(
            _("Enter the 6 digits from the message we sent you."),
            remaining=config["CODE_MAX_TRIES"] - challenge.tries,
        )
    customer = challenge.customer
    if hmac.compare_digest(_code_digest(challenge.public_id, code), challenge.code_digest):
        now = clock.now()
        challenge.consumed_at = now
        challenge.code_sealed = None
        if challenge.notice_id is not None:
            notice = db.session.get(Notice, challenge.notice_id)
            notice.verified_at = notice.verified_at or now
        audit.record(
            "customer.verified",
            actor=Actor.CUSTOMER,
            subject_type="customer",
            subject_id=customer.public_id,
            details={"purpose": challenge.purpose},
        )
        db.session.flush()
        return challenge
    challenge.tries += 1
    db.session.flush()
    audit.record(
        "code.failed",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=customer.public_id,
        outcome="failure",
        details={"tries": challenge.tries},
    )
    # The wrong try counts although an error follows: the view answers it on purpose (a 422 or
    # the locked page), and the edge commits a request it answered.
    if _failures_in_window(customer.id) >= config["VERIFY_LOCK_FAILURES"]:
        _lock(customer)
        db.session.flush()
        raise VerificationLocked()
    remaining = config["CODE_MAX_TRIES"] - challenge.tries
    if remaining <= 0:
        challenge.code_sealed = None
    # Say so before the lock: a person who is about to be paused should slow down, not find out.
    before_lock = config["VERIFY_LOCK_FAILURES"] - _failures_in_window(customer.id)
    db.session.flush()
    if remaining <= 0:
        raise ChallengeEnded(_("Too many wrong tries for this code. Ask for a new one."))
    message = _("That code is not right. Please check the message and try again.")
    if before_lock <= 3:
        # The lock does not lift by itself (a person checks it is them), so the warning says so.
        message += " " + ngettext(
            "One more wrong code today and codes will stop: a person from our team will then"
            " need to check it is you.",
            "After %(num)d more wrong codes today, codes will stop: a person from our team will"
            " then need to check it is you.",
            before_lock,
        )
    elif remaining <= 2:
        # The code's own limit ends it sooner than the day's: said before it does, not after.
        message += " " + ngettext(
            "You can try this code once more; after that, ask for a new one.",
            "You can try this code %(num)d more times; after that, ask for a new one.",
            remaining,
        )
    raise CodeRejected(message, remaining=remaining)


def start_again(challenge_public_id: str | None, *, chosen: str | None = None) -> Challenge:
    """A fresh code for this browser when its code ran out (expired or too many wrong tries):
    the same customer, notice and purpose; the caps on codes and failures still count."""
    challenge = None
    if challenge_public_id:
        challenge = db.session.scalar(
            select(Challenge).where(Challenge.public_id == challenge_public_id)
        )
    if challenge is None or challenge.consumed_at is not None:
        raise ChallengeEnded(_("Please start again from the link in your notice."))
    notice = db.session.get(Notice, challenge.notice_id) if challenge.notice_id else None
    return _start(challenge.customer, notice, purpose=challenge.purpose, chosen=chosen)


def _lock(customer: Customer) -> None:
    customer.verification_locked_at = clock.now()
    for challenge in db.session.scalars(
        select(Challenge).where(
            Challenge.customer_id == customer.id, Challenge.code_sealed.is_not(None)
        )
    ):
        challenge.code_sealed = None  # no code of theirs can be resent or used any more
    audit.record(
        "verification.locked",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=customer.public_id,
        outcome="failure",
    )


def resend_code(
    challenge_public_id: str | None, channel: str | None = None, *, chosen: str | None = None
) -> Challenge:
    """Send the same code again (an earlier message keeps working), a few times at most;
    to the customer's other contact on file when asked (a phone number that is out of date)."""
    challenge = _active_challenge(challenge_public_id)
    # Only a channel already on file: this page must never let anyone add an address.
    if channel is not None and channel not in _channels(challenge.customer):
        raise ResendLimited(_("We have no other way to reach you on file. Please ask a person."))
    if challenge.resends >= current_app.config["CODE_MAX_RESENDS"] or challenge.code_sealed is None:
        raise ResendLimited(
            _(
                "We have sent this code as often as we can. If it has not "
                "arrived, wait a few minutes or start again from your link."
            )
        )
    challenge.resends += 1
    if channel is not None:
        challenge.channel = channel
    code = challenge.code
    _send_code(challenge, challenge.customer, code, chosen)
    db.session.flush()
    return challenge


# --- "send me a new link" ---


def request_new_link(address: str) -> None:
    """Queue a new-link request. The request costs the same whether the address is known:
    the lookup happens in the worker, and the answer never says which it was."""
    normalised = normalise_email(address)
    background.submit("new_link", {"email": normalised}, actor=Actor.CUSTOMER)
    audit.record("link.requested", actor=Actor.CUSTOMER)  # no address: it may not be a customer's
    db.session.flush()


def reissue_link(notice: Notice, customer: Customer, *, reason: str) -> bool:
    """A fresh access link for a notice, mailed to the address on file; earlier links die.

    False (nothing sent) when that address was changed by staff within the hold without a
    second approval: the link would open the account for whoever asked for the change.
    """
    if customer.email_sealed is None or _held(customer, "email"):
        return False
    notice.link_nonce = secrets.token_urlsafe(16)  # every earlier link stops working
    outbox.queue_message(
        compose_new_link,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"{reason}:{notice.public_id}:{secrets.token_hex(8)}",
        incident=notice.incident,
        link=tokens.link(tokens.Purpose.NOTICE_LINK, notice.public_id, notice.link_nonce),
    )
    return True


# Retried like the message it stands for: the person was told a link is on its way.
@background.job("new_link", retry=True)
def send_new_links(payload: dict, progress: background.Progress) -> dict:
    """Job: for each notice of a customer with this address, replace the link and mail it."""
    config = current_app.config
    since = clock.now() - timedelta(hours=1)
    for customer in find_by_email(payload["email"]):
        for notice in db.session.scalars(select(Notice).where(Notice.customer_id == customer.id)):
            sent_recently = db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    OutboxMessage.dedupe_key.like(f"newlink:{notice.public_id}:%"),
                    OutboxMessage.created_at >= since,
                )
            )
            # Per address and hour, a few links at most: nobody can flood a mailbox.
            if sent_recently >= config["NEW_LINKS_PER_HOUR"]:
                continue
            if not reissue_link(notice, customer, reason="newlink"):
                continue
            audit.record(
                "link.reissued",
                actor=Actor.JOBS,
                subject_type="notice",
                subject_id=notice.public_id,
            )
    return {}  # the same for a known and an unknown address, like the request's answer
