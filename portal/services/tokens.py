"""Every signed token the portal mails or prints, in one table: purpose -> salt -> lifetime.

A token carries a pair of strings (a public id and a nonce the row holds); the nonce makes it
single-use or replaceable, the signature makes it unforgeable, and the salt binds it to its
purpose, so a token made for one route opens nothing on another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from portal import clock


class Purpose(StrEnum):
    """What a signed token is for; each has its own row in KINDS."""

    NOTICE_LINK = "notice_link"
    HELP_CASE = "help_case"
    STAFF_INVITE = "staff_invite"
    ASSISTED_SIGN_IN = "assisted_sign_in"
    CONTACT_CONFIRM = "contact_confirm"
    CONTACT_CANCEL = "contact_cancel"


@dataclass(frozen=True)
class Kind:
    """One row of the table: how a purpose's tokens are signed, how long they live, where."""

    # The salt is part of every token already sent: changing it kills those links.
    salt: str
    ttl: str  # the config key of its lifetime
    path: str  # where its link opens, under the origin below
    # The config key of the origin its links start with: staff links go to the staff host.
    origin: str = "BASE_URL"


KINDS: dict[Purpose, Kind] = {
    # The access link in a notice: `BASE_URL/a/<token>`.
    Purpose.NOTICE_LINK: Kind("notice-link-v1", "NOTICE_LINK_TTL", "/a/"),
    # One help request's conversation, for its writer who cannot sign in.
    Purpose.HELP_CASE: Kind("help-case-v1", "HELP_CASE_LINK_TTL", "/help/case/"),
    # A staff member's set-up link, printed by `portal staff invite` or mailed after an MFA
    # reset: on the staff host, the only one that serves it.
    Purpose.STAFF_INVITE: Kind(
        "staff-invite-v1", "STAFF_INVITE_TTL", "/staff/setup/", origin="STAFF_BASE_URL"
    ),
    # The one-time sign-in an agent mails after checking who the caller is.
    Purpose.ASSISTED_SIGN_IN: Kind("assisted-signin-v1", "ASSISTED_LINK_TTL", "/assisted/"),
    # The new address of a staff contact change enters the code sent to it.
    Purpose.CONTACT_CONFIRM: Kind(
        "contact-confirm-v1", "CONTACT_CHANGE_HOLD_TTL", "/contact/confirm/"
    ),
    # The old address says a staff contact change was not theirs.
    Purpose.CONTACT_CANCEL: Kind(
        "contact-cancel-v1", "CONTACT_CHANGE_CANCEL_TTL", "/contact/not-me/"
    ),
}


class InvalidToken(Exception):
    """The token is tampered, for another purpose, or signed with a retired key."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is older than its lifetime."""


class _ClockSigner(TimestampSigner):
    """Dates and ages tokens by the portal's clock, like every other lifetime."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


class _DatedSigner(TimestampSigner):
    """Dates a token by a given time: a message filled when it is sent carries the token it
    would have carried when it was queued (every try of it the same, its age from then)."""

    def __init__(self, *args, timestamp: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.timestamp = timestamp

    def get_timestamp(self) -> int:
        return self.timestamp

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        # Signing derives the key (a SHA-1 of salt and secret) for every token; a campaign's
        # batch signs thousands with the same one. Verifying passes its key and derives anew.
        if secret_key is not None:
            return super().derive_key(secret_key)
        key = self.__dict__.get("_derived")
        if key is None:
            key = self._derived = super().derive_key()
        return key


class _DatedSerializer(URLSafeTimedSerializer):
    """One signer for all the tokens it dates: itsdangerous makes a new signer for each token,
    which was about a third of the cost of a link in the worker's hot path (cProfile of
    bench/outbox_bench.py). A dated signer holds nothing that changes between tokens."""

    def make_signer(self, salt: str | bytes | None = None):
        if salt is not None:
            return super().make_signer(salt)
        signer = self.__dict__.get("_signer")
        if signer is None:
            signer = self._signer = super().make_signer()
        return signer


def _serializer(salt: str, timestamp: int | None = None) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous wants the keys oldest to newest: it signs with the last, accepts them all.
    keys = (*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"])
    if timestamp is not None:
        return _dated_serializer(keys, salt, timestamp)
    return URLSafeTimedSerializer(list(keys), salt=salt, signer=_ClockSigner)


@lru_cache(maxsize=16)
def _dated_serializer(keys: tuple, salt: str, timestamp: int) -> _DatedSerializer:
    # The worker signs every link of a campaign batch with the same date: one serializer each
    # (keyed by the keys too, so a rotation takes effect at once).
    return _DatedSerializer(
        list(keys), salt=salt, signer=_DatedSigner, signer_kwargs={"timestamp": timestamp}
    )


def lifetime(purpose: Purpose) -> timedelta:
    """How long a token of this purpose is good for (from config)."""
    return current_app.config[KINDS[purpose].ttl]


def issue(purpose: Purpose, public_id: str, nonce: str) -> str:
    """A signed token for this purpose carrying (public id, nonce)."""
    return _serializer(KINDS[purpose].salt).dumps([public_id, nonce])


def link(purpose: Purpose, public_id: str, nonce: str, *, issued_at: int | None = None) -> str:
    """The absolute link, always from the configured origin (PORTAL_BASE_URL, or
    PORTAL_STAFF_BASE_URL for staff), never from the request's Host.

    issued_at (seconds since the epoch): the time the token is dated, when not now (a queued
    message's link, made when it is sent, is dated when it was queued: its lifetime starts then).
    """
    kind = KINDS[purpose]
    token = _serializer(kind.salt, issued_at).dumps([public_id, nonce])
    return f"{current_app.config[kind.origin]}{kind.path}{token}"


def signed_by_us(purpose: Purpose, token: str) -> tuple[str, str] | None:
    """(public id, nonce) when we signed this token for this purpose, however old; else None.

    For "is this genuine?" only: an old link is still one we sent. It opens nothing; `load`
    is the only way in.
    """
    try:
        value = _serializer(KINDS[purpose].salt).loads(token)
    except BadSignature:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return None
    return value[0], value[1]


def load(purpose: Purpose, token: str) -> tuple[str, str]:
    """Return (public id, nonce) from a token of this purpose; raise InvalidToken or ExpiredToken.

    Checks signature, purpose and age only: whether the nonce is still the row's is the
    caller's question.
    """
    max_age = int(lifetime(purpose).total_seconds())
    try:
        value = _serializer(KINDS[purpose].salt).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise ExpiredToken() from exc
    except BadSignature as exc:
        raise InvalidToken() from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise InvalidToken()
    return value[0], value[1]
