"""Signed tokens, one serializer per purpose (distinct salt, lifetime from config)."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

NOTICE_LINK_SALT = "notice-link-v1"
HELP_CASE_SALT = "help-case-v1"


class InvalidToken(Exception):
    """The token is tampered, for another purpose, or signed with a retired key."""


class ExpiredToken(InvalidToken):
    """The token was genuine but is older than its lifetime."""


def _serializer(salt: str) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous wants the keys oldest to newest: it signs with the last, accepts them all.
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=salt)


def notice_link(public_id: str, nonce: str) -> str:
    """The absolute access link for a notice, always from PORTAL_BASE_URL, never the request."""
    token = _serializer(NOTICE_LINK_SALT).dumps([public_id, nonce])
    return f"{current_app.config['BASE_URL']}/a/{token}"


def load_notice_token(token: str) -> tuple[str, str]:
    """Return (notice public id, nonce) from a link token; raise InvalidToken or ExpiredToken."""
    return _load_pair(NOTICE_LINK_SALT, token, "NOTICE_LINK_TTL")


def help_case_link(public_id: str, nonce: str) -> str:
    """The link to one help request's conversation, for its writer who cannot sign in."""
    token = _serializer(HELP_CASE_SALT).dumps([public_id, nonce])
    return f"{current_app.config['BASE_URL']}/help/case/{token}"


def load_help_case_token(token: str) -> tuple[str, str]:
    """Return (case public id, nonce) from a help-case link; raise InvalidToken or ExpiredToken."""
    return _load_pair(HELP_CASE_SALT, token, "HELP_CASE_LINK_TTL")


def _load_pair(salt: str, token: str, ttl_setting: str) -> tuple[str, str]:
    max_age = int(current_app.config[ttl_setting].total_seconds())
    try:
        value = _serializer(salt).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise ExpiredToken() from exc
    except BadSignature as exc:
        raise InvalidToken() from exc
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise InvalidToken()
    return value[0], value[1]
