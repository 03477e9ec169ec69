"""An optional authenticator app (TOTP) so a customer can come back without a new link."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_security_notice
from portal.models import Customer
from portal.models.audit import Actor, customer_actor
from portal.models.sealed import matches
from portal.services import audit, outbox, totp
from portal.services.verification import CodeRejected, VerificationLocked

# After this many wrong codes in a day, signing in with the app waits: 30 s, doubling with
# each further wrong code, an hour at most (AUTH-07, OTP-06). Never a lock (see sign_in).
WAIT_AFTER = 5
WAIT_BASE = timedelta(seconds=30)
WAIT_MAX = timedelta(hours=1)


class SignInFailed(Exception):
    """Email and code do not match (the same answer for every reason)."""


class SignInWaiting(Exception):
    """The right code, while app sign-in waits after wrong ones: try again from `until`."""

    def __init__(self, until: datetime):
        super().__init__("app sign-in waits")
        self.until = until


@dataclass(frozen=True)
class Enrollment:
    secret: str  # shown once, grouped, for typing into the app by hand
    qr_data_uri: str  # an SVG QR code as a data: URI (no markup of ours is built from it)


def _pyotp(customer: Customer) -> pyotp.TOTP:
    return pyotp.TOTP(customer.totp_secret)


def is_enabled(customer: Customer) -> bool:
    return customer.totp_enabled_at is not None


def begin(customer: Customer, current_code: str | None = None) -> None:
    """Make a fresh 160-bit seed, sealed on the server (never in the cookie), pending a code.

    When an app is on already, a right code from it comes first: an open session (even with a
    fresh code from the mailbox) must not silently swap the factor for one an intruder holds
    (OTP-05). Someone who lost the app removes it instead, which tells them too.
    """
    replacing = is_enabled(customer)
    if replacing and not (current_code and _accept(customer, current_code)):
        audit.record(
            "authenticator.replace_refused",
            actor=customer_actor(customer),
            subject_type="customer",
            subject_id=customer.public_id,
            outcome="failure",
        )
        db.session.flush()
        raise CodeRejected(
            _(
                "That code does not match the app you use now. Type the 6 digits it shows "
                "for %(organisation)s, or remove the app if you no longer have it.",
                organisation=current_app.config["ORGANISATION_NAME"],
            ),
            remaining=None,
        )
    customer.totp_secret = totp.new_secret()
    customer.totp_enabled_at = None
    customer.totp_last_step = None
    audit.record(
        "authenticator.replaced" if replacing else "authenticator.setup_started",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    if replacing:
        # The old app stops working now: the customer hears of it at once, not only when (or
        # if) the new one is confirmed.
        _notify(
            customer,
            "authenticator-replaced",
            _l(
                "The authenticator app on your account was switched off so that a new one "
                "could be set up."
            ),
        )
    db.session.flush()


def pending(customer: Customer) -> Enrollment | None:
    """The seed to scan while set-up is pending; None once confirmed (never shown again)."""
    if customer.totp_sealed is None or customer.totp_enabled_at is not None:
        return None
    app_totp = _pyotp(customer)
    uri = app_totp.provisioning_uri(
        name=current_app.config["ORGANISATION_NAME"],
        issuer_name=current_app.config["ORGANISATION_NAME"],
    )
    secret = app_totp.secret
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return Enrollment(grouped, segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def _accept(customer: Customer, typed: str) -> bool:
    """A right code for now, of a step not used before (the step is remembered)."""
    step = totp.accept(customer.totp_secret, typed, customer.totp_last_step)
    if step is None:
        return False
    customer.totp_last_step = step
    return True


def confirm(customer: Customer, typed: str) -> None:
    """Turn the authenticator on once the app shows a right code; tell the customer by email."""
    if customer.totp_sealed is None or customer.totp_enabled_at is not None:
        raise CodeRejected(_("Start the set-up again."), remaining=None)
    if not _accept(customer, typed):
        raise CodeRejected(
            _(
                "That code does not match. Check the app shows %(organisation)s "
                "and type the 6 digits it shows now.",
                organisation=current_app.config["ORGANISATION_NAME"],
            ),
            remaining=None,
        )
    customer.totp_enabled_at = clock.now()
    audit.record(
        "authenticator.added",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    _notify(customer, "authenticator-added", _l("An authenticator app was added to your account."))
    db.session.flush()


def remove(customer: Customer) -> None:
    customer.totp_sealed = None
    customer.totp_enabled_at = None
    customer.totp_last_step = None
    audit.record(
        "authenticator.removed",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    _notify(
        customer,
        "authenticator-removed",
        _l("The authenticator app was removed from your account."),
    )
    db.session.flush()


def _notify(customer: Customer, kind: str, what: str) -> None:
    outbox.queue_message(
        compose_security_notice,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"{kind}:{customer.public_id}:{clock.now().timestamp()}",
        what=what,
    )


def _wait_after(failures: int) -> timedelta:
    """How long app sign-in waits after this many wrong codes in a day (none below the first)."""
    return min(WAIT_MAX, WAIT_BASE * 2 ** (failures - WAIT_AFTER))


def sign_in(address: str, typed: str) -> Customer:
    """Email + authenticator code. Every failure looks the same: wrong, unknown or not set up.

    Wrong codes make app sign-in wait (never a lock: a stranger who knows the address could
    set one off). The notice link and its emailed or texted code are not touched by them.
    """
    config = current_app.config
    customer = db.session.scalar(
        select(Customer)
        .where(matches(Customer.email_index, address), Customer.totp_enabled_at.is_not(None))
        .limit(1)
    )
    if customer is None:
        pyotp.TOTP(pyotp.random_base32()).verify("000000")  # the same work as a real check
        raise SignInFailed()
    now = clock.now()
    waiting = customer.totp_retry_at is not None and customer.totp_retry_at > now
    # Checked even while waiting, so the right code is spent either way: learning that a code
    # was right then is worth nothing (it cannot be used again), and a wrong one counts.
    accepted = _accept(customer, typed)
    if customer.verification_locked_at is not None:
        # The step is spent even so (flushed; the edge commits it with the refusal).
        db.session.flush()
        # Only someone holding the right code learns the account is locked (and whom to call).
        if accepted:
            raise VerificationLocked()
        raise SignInFailed()
    if accepted and waiting:
        db.session.flush()  # the step is spent: the edge commits it with the answer
        # Only someone holding the right code learns of the wait, and that the link still works.
        raise SignInWaiting(customer.totp_retry_at)
    if accepted:
        customer.totp_failures = 0
        customer.totp_failed_since = None
        customer.totp_retry_at = None
        audit.record(
            "customer.verified",
            actor=customer_actor(customer),
            subject_type="customer",
            subject_id=customer.public_id,
            details={"purpose": "authenticator"},
        )
        db.session.flush()
        return customer
    if customer.totp_failed_since is None or (
        now - customer.totp_failed_since > config["VERIFY_LOCK_WINDOW_TTL"]
    ):
        customer.totp_failures, customer.totp_failed_since = 0, now
    customer.totp_failures += 1
    if totp.replayed(customer.totp_secret, typed, customer.totp_last_step):
        # A code that already signed someone in, used again: the owner should hear of it.
        audit.record(
            "code.replayed",
            actor=Actor.CUSTOMER,
            subject_type="customer",
            subject_id=customer.public_id,
            outcome="failure",
            details={"factor": "authenticator"},
        )
        _notify(
            customer,
            "authenticator-replayed",
            _l(
                "A code from your authenticator app that had already been used was typed again "
                "to sign in to your account. It was refused."
            ),
        )
    audit.record(
        "code.failed",
        actor=Actor.CUSTOMER,
        subject_type="customer",
        subject_id=customer.public_id,
        outcome="failure",
        details={"factor": "authenticator"},
    )
    if customer.totp_failures >= WAIT_AFTER:
        # 30 s, doubling with each further wrong code, an hour at most: guessing stays hopeless
        # and the real person waits briefly at worst, with their notice link working meanwhile.
        wait = _wait_after(customer.totp_failures)
        customer.totp_retry_at = now + wait
        audit.record(
            "authenticator.sign_in_paused",
            actor=Actor.CUSTOMER,
            subject_type="customer",
            subject_id=customer.public_id,
            outcome="failure",
            details={"seconds": int(wait.total_seconds())},
        )
    # The failure counts although an error follows: the view answers it on purpose, and the
    # edge commits a request it answered (only an error of ours rolls back).
    db.session.flush()
    raise SignInFailed()
