"""Security keys (WebAuthn / FIDO2) for staff: the ceremonies, checked with py_webauthn.

A key signs the portal's origin and a challenge the server made for this one staff session, so a
look-alike site gets nothing it can replay (the phishing resistance checklist OTP-03 asks of
admins). The challenges live on the session row, never in the cookie; each is spent by the first
answer, right or wrong, and lasts CHALLENGE_TTL.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from portal import clock
from portal.extensions import db
from portal.models import SecurityKey, StaffMember, StaffSession
from portal.unit_of_work import write_is_the_point

# Long enough to find the key and touch it; a challenge nobody answered soon is worthless.
CHALLENGE_TTL = timedelta(minutes=5)
CEREMONY_TIMEOUT_MS = 120_000
MAX_KEYS = 10  # a spare or two per person; more is a mistake or an attack
# What a browser sends for one credential is a few hundred bytes; refuse anything far larger.
MAX_ANSWER_CHARS = 16_000
# The answers py_webauthn can give to malformed input besides its own exceptions.
_MALFORMED = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


class KeyRefused(Exception):
    """The answer is not a valid signature by one of this member's keys, for this challenge."""


class KeyCloned(KeyRefused):
    """A valid signature whose counter did not move forward: the key may have been copied."""

    def __init__(self, key: SecurityKey) -> None:
        super().__init__("signature counter went backwards")
        self.key = key


@dataclass(frozen=True)
class NewKey:
    credential_id: bytes
    public_key: bytes
    sign_count: int


def rp_id() -> str:
    """The relying party: BASE_URL's host (never the request's Host header)."""
    return urlsplit(current_app.config["BASE_URL"]).hostname or ""


def origin() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def of(member: StaffMember) -> list[SecurityKey]:
    return list(
        db.session.scalars(
            select(SecurityKey).where(SecurityKey.staff_id == member.id).order_by(SecurityKey.id)
        )
    )


def count(member: StaffMember) -> int:
    return len(of(member))


def _descriptors(keys: list[SecurityKey]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=key.credential_id) for key in keys]


def _challenge() -> bytes:
    return secrets.token_bytes(32)


def sign_options(session_: StaffSession) -> str | None:
    """navigator.credentials.get() options (JSON) with a fresh challenge kept on the session row;
    None when the member has no key."""
    keys = of(session_.staff)
    if not keys:
        return None
    # Kept on the GET that shows the page: the key's answer is checked against this challenge.
    write_is_the_point(StaffSession.sign_challenge, StaffSession.sign_challenge_at)
    session_.sign_challenge = _challenge()
    session_.sign_challenge_at = clock.now()
    db.session.flush()
    return options_to_json(
        generate_authentication_options(
            rp_id=rp_id(),
            challenge=session_.sign_challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            allow_credentials=_descriptors(keys),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
    )


def register_options(session_: StaffSession) -> str:
    """navigator.credentials.create() options (JSON) with a fresh challenge on the session row."""
    member = session_.staff
    write_is_the_point(StaffSession.register_challenge, StaffSession.register_challenge_at)
    session_.register_challenge = _challenge()
    session_.register_challenge_at = clock.now()
    db.session.flush()
    organisation = current_app.config["ORGANISATION_NAME"]
    return options_to_json(
        generate_registration_options(
            rp_id=rp_id(),
            rp_name=f"{organisation} staff",
            # The public id, not the address: the key keeps the user id, and may show it.
            user_id=member.public_id.encode(),
            user_name=member.email,
            challenge=session_.register_challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            # "none": any FIDO key will do, and no maker's certificate is collected about it.
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.DISCOURAGED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(of(member)),
        )
    )


def _take(session_: StaffSession, kind: str) -> bytes | None:
    """Spend the session's challenge of this kind: it answers once, right or wrong."""
    challenge = getattr(session_, f"{kind}_challenge")
    issued = getattr(session_, f"{kind}_challenge_at")
    setattr(session_, f"{kind}_challenge", None)
    setattr(session_, f"{kind}_challenge_at", None)
    if challenge is None or issued is None or clock.now() - issued > CHALLENGE_TTL:
        return None
    return challenge


def _answered(client_data_json: bytes, expected: bytes) -> None:
    """The challenge the browser signed is ours, compared in constant time."""
    signed = parse_client_data_json(client_data_json).challenge
    if not hmac.compare_digest(signed, expected):
        raise KeyRefused("another challenge")


def _check_size(answer: str) -> None:
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        raise KeyRefused("no answer, or far too long")


def verify_sign_in(session_: StaffSession, answer: str) -> SecurityKey:
    """Check a navigator.credentials.get() answer against this session's challenge and the
    member's keys; move the key's counter on. KeyRefused (or KeyCloned) otherwise."""
    expected = _take(session_, "sign")
    _check_size(answer)
    if expected is None:
        raise KeyRefused("no live challenge")
    try:
        credential = parse_authentication_credential_json(json.loads(answer))
        _answered(credential.response.client_data_json, expected)
    except _MALFORMED as exc:
        raise KeyRefused("malformed") from exc
    key = db.session.scalar(
        select(SecurityKey).where(
            SecurityKey.staff_id == session_.staff_id,
            SecurityKey.credential_id == credential.raw_id,
        )
    )
    if key is None:
        raise KeyRefused("not one of this member's keys")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            credential_public_key=key.public_key,
            # The counter is checked below, after the signature: a counter that went backwards
            # on a valid signature means a copied key, which is audited, not just refused.
            credential_current_sign_count=0,
            require_user_verification=False,  # "preferred": a key without a PIN still counts
        )
    except _MALFORMED as exc:
        raise KeyRefused("signature, origin or relying party wrong") from exc
    new = verified.new_sign_count
    # Keys that keep no counter always say 0; any other key must count up on every use.
    if (new or key.sign_count) and new <= key.sign_count:
        raise KeyCloned(key)
    key.sign_count = new
    key.last_used_at = clock.now()
    return key


def verify_registration(session_: StaffSession, answer: str) -> NewKey:
    """Check a navigator.credentials.create() answer against this session's challenge."""
    expected = _take(session_, "register")
    _check_size(answer)
    if expected is None:
        raise KeyRefused("no live challenge")
    try:
        credential = parse_registration_credential_json(json.loads(answer))
        _answered(credential.response.client_data_json, expected)
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            require_user_verification=False,
        )
    except _MALFORMED as exc:
        raise KeyRefused("attestation, origin or relying party wrong") from exc
    return NewKey(verified.credential_id, verified.credential_public_key, verified.sign_count)
