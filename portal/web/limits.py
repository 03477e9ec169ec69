"""Whom a rate limit counts, and how many: every limit's key and number, in one place.

Three kinds of key (the README's "Rate limits" table gives each number its reason):

- a signed-in person (the customer's or staff member's random public id): people who share
  an address never share an allowance;
- a subject (the notice behind a link, a reference code, the pending challenge, a typed email
  address as a keyed digest): one target cannot be hammered from however many addresses;
- a network (an IPv4 address, an IPv6 /64), with numbers high enough for a carrier-grade NAT
  or an office that hundreds of notified people share on notice day.

Keys never hold personal data in clear: typed addresses are keyed digests under a purpose of
their own, so a key in Redis cannot even be matched against the database's blind indexes.
These limits are a second layer: the services count codes, tries and failures in the database.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

from flask import request, session
from flask_login import current_user

from portal.extensions import limiter, vault
from portal.services import genuine, reference_codes, tokens
from portal.validation import normalise_email, normalise_phone

# --- the numbers (moving windows; a window's count is per key and per endpoint) --------------

# The notice link's button (sends a code). The service sends at most 5 codes an hour per
# customer; the link layer stops a flood before it reaches the database.
LINK_PER_NOTICE = "10 per hour"
LINK_PER_NETWORK = "600 per hour"
# The paper letter's reference code. A subject a stranger can type (a code, an email address,
# a contact) is counted twice: tightly per subject from one network, and loosely per subject
# from everywhere. The tight one stops guessing; the loose one is high enough that a stranger
# who knows a victim's address cannot lock the victim out from their own network, yet still
# ends a spread-out attack.
START_PER_REFERENCE_AND_NETWORK = "5 per 15 minutes"
START_PER_REFERENCE = "30 per hour"
START_PER_NETWORK = "300 per hour"
# Typing the one-time code (the service allows 5 wrong tries per code; unreadable input such
# as letters counts against no code, so this is what bounds it).
VERIFY_PER_CHALLENGE = "15 per hour"
VERIFY_PER_NETWORK = "1000 per hour"
RESEND_PER_CHALLENGE = "5 per hour"  # the service sends the same code 3 times at most
RESEND_PER_NETWORK = "300 per hour"
# "Send me a new link": the worker mails at most 3 links an hour to one address.
NEW_LINK_PER_EMAIL_AND_NETWORK = "10 per hour"
NEW_LINK_PER_EMAIL = "30 per hour"
NEW_LINK_PER_NETWORK = "100 per hour"
# Sign-in with an authenticator app (the service also counts wrong codes per customer).
SIGNIN_PER_EMAIL_AND_NETWORK = "5 per 15 minutes"
SIGNIN_PER_EMAIL = "30 per hour"
SIGNIN_PER_NETWORK = "100 per hour"
# Help for people who cannot get in: each request becomes a case a person reads.
HELP_PER_CONTACT_AND_NETWORK = "3 per hour"
HELP_PER_CONTACT = "20 per hour"
# Replies on a help request's conversation link (one person writing to an agent).
HELP_REPLY_PER_LINK = "30 per hour"
HELP_REPLY_PER_NETWORK = "60 per hour"
HELP_PER_NETWORK = "50 per hour"
# An agent's one-time sign-in link.
ASSISTED_PER_LINK = "5 per hour"
ASSISTED_PER_NETWORK = "60 per hour"
# A staff contact change's pages: the code has 5 tries in the service; these stop a sweep.
CONTACT_CHANGE_PER_LINK = "10 per hour"
CONTACT_CHANGE_PER_NETWORK = "60 per hour"

# CSP reports: a page with a broken resource can send a few per view; a flood is not reports.
CSP_REPORT_PER_NETWORK = "120 per hour"
# "Is this genuine?": a worried person checks a few messages. Per network as loose as the other
# pages every notice links to (hundreds of people share one address on notice day); per thing
# checked (a code however it is written, a link by its notice) tight from one network and loose
# from all of them, so that nobody can use up a code's allowance for everyone.
GENUINE_PER_NETWORK = "300 per hour"
GENUINE_PER_TYPED_AND_NETWORK = "10 per hour"
GENUINE_PER_TYPED = "50 per hour"

# Signed in: per customer only (they proved who they are; their neighbours are not them).
CONFIRM_PER_CUSTOMER = "10 per hour"  # each sends a code
PASSWORD_PER_CUSTOMER = "10 per hour"  # noqa: S105 (a rate, not a password)
AUTHENTICATOR_PER_CUSTOMER = "10 per 15 minutes"
ENROLL_PER_CUSTOMER = "20 per hour"
QUESTION_PER_CUSTOMER = "10 per hour"
REPLY_PER_CUSTOMER = "30 per hour"

# Staff: per account and per address (an office of agents starts a shift together).
STAFF_SETUP_PER_INVITATION = "10 per hour"
STAFF_SETUP_PER_NETWORK = "30 per hour"
STAFF_LOGIN_PER_ACCOUNT = "30 per 15 minutes"
STAFF_LOGIN_PER_NETWORK = "100 per 15 minutes"
STAFF_CODE_PER_ACCOUNT = "20 per 15 minutes"
STAFF_CODE_PER_NETWORK = "100 per 15 minutes"
# Password and code again, on /staff/reauth or on a kept act's own page: one allowance for both
# (a scope shared by every route that takes the proof), as tight as the code page at sign-in.
# Failures also count towards the account's lock, like failures at sign-in.
STAFF_REAUTH_PER_MEMBER = "20 per 15 minutes"
STAFF_REAUTH_PER_NETWORK = "100 per 15 minutes"
STAFF_REAUTH_SCOPE = "staff-reauth"
# Customer lookups: an agent answers a call in minutes; a stolen staff session must not page
# through the customer list.
STAFF_SEARCH_PER_MEMBER = "60 per 15 minutes"


# --- the keys --------------------------------------------------------------------------------


def network() -> str:
    """The client's network: its IPv4 address, or the /64 of an IPv6 address.

    One IPv6 subscriber (a home, a phone) holds a whole /64 and can pick any address in it, so
    counting single IPv6 addresses would count nothing. The address is the client's own only
    when PORTAL_PROXY_HOPS matches the proxies in front (ProxyFix, in create_app).
    """
    address = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "net:" + (address or "unknown")
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"net:{ip.ipv4_mapped}"
        return f"net:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"net:{ip}"


def customer() -> str:
    """The signed-in customer (the access gate lets no one else reach a customer view)."""
    return "customer:" + current_user.customer.public_id


def staff_member() -> str:
    """The staff member of this (possibly half-finished) staff session."""
    return "staff:" + current_user.staff.public_id


def _digest(value: str) -> str:
    # For high-entropy tokens only: a digest keeps the bearer secret itself out of Redis.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def notice() -> str:
    """The notice behind a link: every link ever sent for one notice shares one allowance."""
    token = (request.view_args or {}).get("token", "")
    try:
        public_id, _nonce = tokens.load(tokens.Purpose.NOTICE_LINK, token)
    except tokens.InvalidToken:
        # Not a link we signed (or a dead one): it opens nothing, and counts on its own.
        return "link:" + _digest(token)
    return "notice:" + public_id


def reference() -> str:
    """The reference code typed from a letter (case, spaces and dashes ignored), as a keyed
    digest: a code opens a person's notice, so it stays out of Redis and the logs."""
    code = reference_codes.normalise(request.form.get("reference", ""))[:16]
    if not code:
        return network()
    return "ref:" + vault.blind_index(code, "rate-limit-ref").hex()


def genuine_typed() -> str:
    """What "Is this genuine?" was asked about, however it was written (a code in any case or
    grouping, a link by the notice it opens), as a keyed digest: a code opens a notice."""
    typed = request.form.get("what", "")[:2000]
    if not typed.strip():
        return network()
    return "genuine:" + vault.blind_index(genuine.limit_key(typed), "rate-limit-genuine").hex()


def challenge() -> str:
    """The challenge this browser is answering (a random id kept in its session)."""
    from portal.web.customer.common import CHALLENGE_KEY  # the views own the session's keys

    public_id = session.get(CHALLENGE_KEY)
    return "challenge:" + public_id if public_id else network()


def _typed_address(field: str, purpose: str) -> str:
    raw = request.form.get(field, "")
    # One person's phone number in any spelling ("+1 415-555 0102", "0014155550102") is one
    # subject, as the service stores it; an email address is one subject in any case.
    typed = normalise_email(raw) if "@" in raw else normalise_phone(raw)
    if not typed:
        return network()  # nothing typed: no subject, so the address stands in for one
    return purpose + ":" + vault.blind_index(typed, "rate-limit-" + purpose).hex()


def email() -> str:
    """The email address typed into a sign-in or new-link form, as a keyed digest."""
    return _typed_address("email", "email")


def help_contact() -> str:
    """The contact address typed into the help form, as a keyed digest."""
    return _typed_address("contact", "help-contact")


def staff_email() -> str:
    """The staff account a sign-in names, as a keyed digest."""
    return _typed_address("email", "staff-email")


def and_network(subject):
    """The same subject, counted per network: `and_network(limits.email)`."""

    def key() -> str:
        return subject() + "|" + network()

    key.__name__ = subject.__name__ + "_and_network"
    return key


def link_token() -> str:
    """A one-time link's token (an agent's sign-in link, a staff invitation), as a digest."""
    return "token:" + _digest((request.view_args or {}).get("token", ""))


def reauthentication(*, exempt_when: Callable[[], bool] | None = None) -> Callable:
    """The limits on proving it again (per member and per network), shared by /staff/reauth
    and every route that finishes a kept act: a stolen staff session cannot guess the password
    and code faster on one route than on another. Without Redis they fail closed (a 503)."""

    def decorate(view: Callable) -> Callable:
        for amount, key in (
            (STAFF_REAUTH_PER_MEMBER, staff_member),
            (STAFF_REAUTH_PER_NETWORK, network),
        ):
            view = limiter.shared_limit(
                amount,
                scope=STAFF_REAUTH_SCOPE,
                key_func=key,
                methods=["POST"],
                exempt_when=exempt_when,
            )(view)
        return view

    return decorate
