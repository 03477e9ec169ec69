"""Assisted sign-in: after an agent checked who a caller is, a link that signs them in once.

It belongs with verification (another way to prove who you are): the link is a challenge of
purpose "assisted" whose secret is stored only as a digest, like a one-time code.
"""

from __future__ import annotations

import hmac
import secrets

from flask_babel import gettext as _
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_assisted_link
from portal.models import Challenge, Customer
from portal.models.audit import customer_actor
from portal.services import audit, outbox, tokens
from portal.services.verification import VerificationError, _code_digest


class LinkUnusable(VerificationError):
    """The link was changed, has expired, or was already used."""


def send_link(customer: Customer) -> None:
    """Mail a link that signs the customer in once, for an hour, to the address on file only.

    The agent never signs in as the customer, and never sees the link.
    """
    from portal.services import contact_changes

    # Never to an address staff changed within the hold without a second approval.
    if contact_changes.recently_changed(customer, "email"):
        raise contact_changes.ContactChangeError(
            _("The email on file was changed too recently to send a sign-in link to it.")
        )
    nonce = secrets.token_urlsafe(24)
    challenge = Challenge(
        public_id=secrets.token_hex(16),
        customer_id=customer.id,
        purpose="assisted",
        channel="email",
        expires_at=clock.now() + tokens.lifetime(tokens.Purpose.ASSISTED_SIGN_IN),
        created_at=clock.now(),
    )
    challenge.code_digest = _code_digest(challenge.public_id, nonce)
    db.session.add(challenge)
    db.session.flush()
    link = tokens.link(tokens.Purpose.ASSISTED_SIGN_IN, challenge.public_id, nonce)
    outbox.queue_message(
        compose_assisted_link,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"assisted:{challenge.public_id}",
        expires_at=challenge.expires_at,
        link=link,
    )


def use_link(token: str) -> Customer:
    """Spend an assisted sign-in link (POST only); raise LinkUnusable when it cannot be used."""
    try:
        public_id, nonce = tokens.load(tokens.Purpose.ASSISTED_SIGN_IN, token)
    except tokens.InvalidToken as exc:
        raise LinkUnusable(_("This sign-in link does not work any more.")) from exc
    challenge = db.session.scalar(
        select(Challenge).where(Challenge.public_id == public_id, Challenge.purpose == "assisted")
    )
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= clock.now()
        or not hmac.compare_digest(_code_digest(public_id, str(nonce)), challenge.code_digest)
    ):
        raise LinkUnusable(_("This sign-in link does not work any more."))
    challenge.consumed_at = clock.now()
    audit.record(
        "customer.verified",
        actor=customer_actor(challenge.customer),
        subject_type="customer",
        subject_id=challenge.customer.public_id,
        details={"purpose": "assisted"},
    )
    db.session.flush()
    return challenge.customer


def check_link(token: str) -> None:
    """GET: is the link usable? Spends nothing (mail scanners open links)."""
    try:
        public_id, _nonce = tokens.load(tokens.Purpose.ASSISTED_SIGN_IN, token)
    except tokens.InvalidToken as exc:
        raise LinkUnusable(_("This sign-in link does not work any more.")) from exc
    challenge = db.session.scalar(select(Challenge).where(Challenge.public_id == public_id))
    if (
        challenge is None
        or challenge.consumed_at is not None
        or challenge.expires_at <= clock.now()
    ):
        raise LinkUnusable(_("This sign-in link does not work any more."))
