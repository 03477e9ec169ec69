"""The password of the customer's account: NIST SP 800-63B rules, argon2id, and the change."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
import urllib.error
import urllib.request
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_security_notice
from portal.models import Customer, Incident, Notice
from portal.models.audit import customer_actor
from portal.services import audit, outbox, sessions

MIN_LENGTH = 15  # the only factor here is knowledge: NIST asks for 15 at least
MAX_LENGTH = 256  # long passphrases welcome; the cap only bounds the hashing work
COMMON_PASSWORDS = Path(__file__).resolve().parent.parent / "data" / "common-passwords.txt"


class PasswordRejected(Exception):
    """The new password is not safe; the message says why, for the person."""


def normalise(password: str) -> str:
    """NFC only: never truncated, never case-folded, spaces and emoji kept as typed."""
    return unicodedata.normalize("NFC", password)


def _fold(text: str) -> str:
    """The comparison form for lists and context words (never what is hashed)."""
    return unicodedata.normalize("NFKC", text).casefold()


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list, folded, loaded once; membership is a hash lookup."""
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(_fold(line) for line in lines if line)


def hasher() -> PasswordHasher:
    config = current_app.config
    return PasswordHasher(
        time_cost=config["ARGON2_TIME_COST"],
        memory_cost=config["ARGON2_MEMORY_KIB"],
        parallelism=config["ARGON2_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    return hasher().hash(normalise(password))


def verify(customer: Customer, password: str) -> bool:
    """Check a password against the stored hash, rehashing it if the parameters changed."""
    if not customer.password_hash:
        return False
    ph = hasher()
    try:
        ph.verify(customer.password_hash, normalise(password))
    except (VerificationError, InvalidHashError):
        return False
    if ph.check_needs_rehash(customer.password_hash):
        customer.password_hash = ph.hash(normalise(password))
    return True


_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_WORDS = re.compile(r"[^\W\d_]{3,}")


def context_words(customer: Customer) -> set[str]:
    """Words an attacker would try first for this person: ours, the breach's and their own."""
    words = base_context_words()
    incidents = db.session.scalars(
        select(Incident)
        .join(Notice, Notice.incident_id == Incident.id)
        .where(Notice.customer_id == customer.id)
    )
    for incident in incidents:
        words.update(_WORDS.findall(_fold(incident.title)))
        words.update(_WORDS.findall(_fold(incident.slug)))
    words.update(_WORDS.findall(_fold(customer.name or "")))
    words.update(email_words(customer.email or ""))
    return {w for w in words if len(w) >= 4}


def _is_padding(rest: str) -> bool:
    """What is left once the guessable word is removed: nothing a guesser would not try."""
    return not re.search(r"[^\W\d_]", rest) or len(set(rest)) <= 2


def check(customer: Customer, password: str, confirm: str) -> str:
    """Return the normalised new password for this customer, or raise PasswordRejected."""
    password = check_rules(password, confirm, context_words(customer))
    if verify(customer, password):
        raise PasswordRejected(_("That is your current password. Choose a new one."))
    return password


def check_rules(password: str, confirm: str, context: set[str]) -> str:
    """The rules every new password meets (customers' and staff's); raise PasswordRejected."""
    password, confirm = normalise(password), normalise(confirm)
    # In constant time, as every secret is compared (OPS-02); bytes, since a password may hold
    # any character and compare_digest takes only ASCII text.
    if not hmac.compare_digest(password.encode(), confirm.encode()):
        raise PasswordRejected(_("The two passwords are not the same."))
    if len(password) < MIN_LENGTH:
        raise PasswordRejected(
            _(
                "Use at least %(count)d characters. Several unrelated words "
                "are easy to remember and hard to guess.",
                count=MIN_LENGTH,
            )
        )
    if len(password) > MAX_LENGTH:
        raise PasswordRejected(_("Use at most %(count)d characters.", count=MAX_LENGTH))
    folded = _fold(password)
    if len(set(folded)) < 5:
        raise PasswordRejected(_("That password repeats too few characters to be safe."))
    common = common_passwords()
    core = _EDGES.sub("", folded)
    if folded in common or (len(core) >= 4 and core in common):
        raise PasswordRejected(
            _(
                "That password is on lists of common passwords that "
                "criminals try first, even with numbers or symbols added."
            )
        )
    squeezed = re.sub(r"[\W_]", "", folded)
    # Every guessable word is taken out, not one at a time: "Example Corp breach" is three such
    # words together, and a guesser tries their combinations as readily as each one alone.
    rest = squeezed
    for word in sorted(context, key=len, reverse=True):
        rest = rest.replace(word, "")
    if rest != squeezed and _is_padding(rest):
        raise PasswordRejected(
            _(
                "That password is built from a word someone could guess "
                "about you or this breach (such as our name or your "
                "email). Choose words that have nothing to do with "
                "either."
            )
        )
    if current_app.config["PWNED_PASSWORDS_URL"] and is_pwned(password):
        raise PasswordRejected(
            _(
                "That password has appeared in a data breach elsewhere. "
                "Choose one you have never used."
            )
        )
    return password


def base_context_words() -> set[str]:
    """Words about us that nobody's password should be built from."""
    words = {"breach", "password", "portal", "security", "incident"}
    organisation = _fold(current_app.config["ORGANISATION_NAME"])
    words.update(_WORDS.findall(organisation))
    words.add(re.sub(r"\W", "", organisation))
    return words


def email_words(address: str) -> set[str]:
    local, _at, domain = _fold(address).partition("@")
    return {re.sub(r"\W", "", local), *_WORDS.findall(local), *_WORDS.findall(domain.split(".")[0])}


def is_pwned(password: str) -> bool:
    """Pwned Passwords range check: only 5 hex digits of the SHA-1 leave this server.

    Padding lines (count 0) are ignored. If the service cannot answer within its timeout, the
    configured policy decides: "reject" refuses the password, "accept" lets the other checks
    stand alone.
    """
    config = current_app.config
    # urllib also opens file:// and ftp://: the range API is only ever asked over the web.
    if urlsplit(config["PWNED_PASSWORDS_URL"]).scheme not in ("http", "https"):
        return config["PWNED_UNREACHABLE_POLICY"] == "reject"
    digest = hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()
    prefix, suffix = digest[:5], digest[5:]
    request = urllib.request.Request(  # noqa: S310 (the configured https service)
        f"{config['PWNED_PASSWORDS_URL'].rstrip('/')}/{prefix}",
        headers={"Add-Padding": "true", "User-Agent": "breach-portal"},
    )
    try:
        opened = urllib.request.urlopen(  # noqa: S310  # nosec B310: scheme checked above
            request, timeout=config["PWNED_TIMEOUT"]
        )
        with opened as response:
            body = response.read().decode("ascii", "replace")
    except (OSError, ValueError):
        return config["PWNED_UNREACHABLE_POLICY"] == "reject"
    for line in body.splitlines():
        candidate, _sep, count = line.strip().partition(":")
        if candidate.upper() == suffix and count.strip().isdigit() and int(count) > 0:
            return True
    return False


def change_password(customer: Customer, password: str, confirm: str, *, keep_token: str) -> str:
    """Set a new password; end every other session; notify the customer and the organisation.

    Returns the token of the customer's new session (the current one is rotated).
    """
    password = check(customer, password, confirm)
    now = clock.now()
    customer.password_hash = hash_password(password)
    customer.password_changed_at = now
    current = sessions.load_session(keep_token)
    verified_at = current.verified_at if current is not None else now
    sessions.end_all_sessions(customer.id)
    audit.record(
        "customer.password_changed",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    outbox.queue_message(
        compose_security_notice,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"password-changed:{customer.public_id}:{now.timestamp()}",
        what=_l("The password of your account was changed."),
    )
    outbox.enqueue_webhook(
        event="customer.password_changed",
        data={"customer": customer.external_id, "occurred_at": now.isoformat()},
    )
    # One transaction with the new session: a failure anywhere keeps the old password, the
    # other sessions and the messages as they were.
    # The browser that changed it stays the same browser: keep its description for the list of
    # places the customer is signed in.
    user_agent = current.user_agent if current is not None else ""
    return sessions.open_session(customer, verified_at=verified_at, user_agent=user_agent)
