"""Customer sessions, held on the server: a cookie is only a random key to a row here."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from portal import clock
from portal.extensions import db
from portal.mail.compose import compose_new_browser
from portal.models import Customer, KnownBrowser, LoginSession
from portal.models.audit import customer_actor
from portal.services import audit, outbox
from portal.unit_of_work import write_is_the_point

# Writing last_seen on every click would make every page a write; a minute of slack is harmless
# against a 15-minute idle limit.
_TOUCH_EVERY = timedelta(minutes=1)


def _digest(token: str) -> bytes:
    # Only the digest is stored: a read of the table cannot be replayed as a cookie.
    return hashlib.sha256(token.encode()).digest()


def open_session(customer: Customer, *, verified_at: datetime, user_agent: str = "") -> str:
    """Start a session for a customer who just proved themselves; return the cookie's token."""
    token = secrets.token_urlsafe(32)  # 256 bits
    now = clock.now()
    db.session.add(
        LoginSession(
            token_digest=_digest(token),
            customer_id=customer.id,
            created_at=now,
            last_seen_at=now,
            verified_at=verified_at,
            user_agent=user_agent[:200],
        )
    )
    audit.record(
        "session.started",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
    )
    db.session.flush()
    return token


# The customer comes in the same query: every signed-in page reads them next. Built once:
# making a statement costs more CPU than running it.
_BY_DIGEST = (
    select(LoginSession)
    .where(LoginSession.token_digest == bindparam("digest"))
    .options(joinedload(LoginSession.customer, innerjoin=True))
)


def load_session(token: str | None) -> LoginSession | None:
    """The live session for this token, or None when unknown, ended, idle or too old."""
    if not token:
        return None
    row = db.session.scalar(_BY_DIGEST, {"digest": _digest(token)})
    if row is None or row.revoked_at is not None:
        return None
    config = current_app.config
    now = clock.now()
    if now - row.last_seen_at > config["CUSTOMER_IDLE_TTL"]:
        return None
    if now - row.created_at > config["CUSTOMER_MAX_TTL"]:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        # Written on any page, GETs too: the point is the idle timeout, which counts from here.
        write_is_the_point(LoginSession.last_seen_at)
        row.last_seen_at = now
        db.session.flush()
    return row


def is_fresh(row: LoginSession, within: timedelta | None = None) -> bool:
    """Did this session prove itself with a code within the window (the step-up lifetime unless
    given), as sensitive acts need?"""
    return clock.now() - row.verified_at <= (within or current_app.config["STEP_UP_TTL"])


def end_session(token: str | None) -> None:
    """Log out: the row is revoked, so a copy of the cookie is worthless from now on."""
    row = load_session(token)
    if row is None:
        return
    row.revoked_at = clock.now()
    audit.record(
        "session.ended",
        actor=customer_actor(row.customer),
        subject_type="customer",
        subject_id=row.customer.public_id,
    )
    db.session.flush()


def end_all_sessions(customer_id: int) -> int:
    """End every session of a customer (after a password change, say); return how many."""
    result = db.session.execute(
        update(LoginSession)
        .where(LoginSession.customer_id == customer_id, LoginSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    return result.rowcount or 0


# A page of live sessions stays bounded whatever the customer's history (DESIGN "Scale"): a
# session lives 12 hours at most, and nobody has more browsers than this.
LIVE_SHOWN = 50


def _live(query):
    config = current_app.config
    now = clock.now()
    return query.where(
        LoginSession.revoked_at.is_(None),
        LoginSession.last_seen_at >= now - config["CUSTOMER_IDLE_TTL"],
        LoginSession.created_at >= now - config["CUSTOMER_MAX_TTL"],
    )


# Row ids are 32-bit integers: a larger number names no session, and must not reach PostgreSQL
# (where it would be an error, not "no such row").
_ROW_ID_MAX = 2**31 - 1


def is_row_id(value: int) -> bool:
    """Could this number be a row id (1 to 2**31 - 1)?"""
    return 0 < value <= _ROW_ID_MAX


def live_sessions(customer: Customer) -> list[LoginSession]:
    """The customer's sessions that would still open a page, the most recently used first."""
    return list(
        db.session.scalars(
            _live(select(LoginSession).where(LoginSession.customer_id == customer.id))
            .order_by(LoginSession.last_seen_at.desc(), LoginSession.id.desc())
            .limit(LIVE_SHOWN)
        )
    )


def end_one(customer: Customer, session_id: int, *, current: LoginSession) -> bool:
    """End one other session of this customer; False (nothing ended) when the id names no live
    session of theirs, or names the one in use (signing out is for that)."""
    ended = 0
    if is_row_id(session_id):
        ended = db.session.execute(
            _live(update(LoginSession))
            # Object-level check in the statement itself: another customer's id ends nothing.
            .where(
                LoginSession.id == session_id,
                LoginSession.customer_id == customer.id,
                LoginSession.id != current.id,
            )
            .values(revoked_at=clock.now())
            .execution_options(synchronize_session=False)
        ).rowcount
    audit.record(
        "session.ended_elsewhere",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
        # A miss is kept too: a stale page, or someone trying other people's ids.
        outcome="success" if ended else "failure",
        details={"session": session_id},
    )
    db.session.flush()
    return bool(ended)


def end_others(customer: Customer, *, current: LoginSession) -> int:
    """End every session of this customer but the one in use; return how many ended."""
    ended = db.session.execute(
        _live(update(LoginSession))
        .where(LoginSession.customer_id == customer.id, LoginSession.id != current.id)
        .values(revoked_at=clock.now())
        .execution_options(synchronize_session=False)
    ).rowcount
    audit.record(
        "session.others_ended",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"ended": ended},
    )
    db.session.flush()
    return ended or 0


def end_customer_sessions(customer: Customer, *, actor: str, reason: str) -> int:
    """Staff end every session of one customer (a stolen device, say); return how many."""
    now = clock.now()
    # Counted among the live ones (what the admin is told); every other row is already dead.
    ended = db.session.execute(
        _live(update(LoginSession))
        .where(LoginSession.customer_id == customer.id)
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    end_all_sessions(customer.id)
    audit.record(
        "session.ended_by_staff",
        actor=actor,
        subject_type="customer",
        subject_id=customer.public_id,
        details={"ended": ended, "reason": reason},
    )
    db.session.flush()
    return ended or 0


def end_every_customer_session() -> int:
    """Every customer session ends at once (the emergency stop); return how many were live.

    The caller records the act (staff.end_every_session, which ends staff sessions too)."""
    now = clock.now()
    ended = db.session.execute(
        _live(update(LoginSession))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.execute(
        update(LoginSession)
        .where(LoginSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.flush()
    return ended or 0


# A browser keeps its random id as long as browsers let a cookie live (400 days at most).
BROWSER_TTL = timedelta(days=400)
_BROWSER_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes


def recognise_browser(
    customer: Customer, browser_token: str | None, *, from_notice: bool, user_agent: str = ""
) -> str:
    """Remember this browser for the customer and tell them when it is new to them; return the
    random id the browser keeps (its own if it had a well-formed one, else a fresh one).

    "New" means this browser's random cookie was never seen with this customer (a browser
    that lost its cookies counts as new: a notice too many is better than one too few). No
    message for the very first sign-in from the notice (link or letter): the customer just got
    it, and the code they typed came to their own address or phone.
    """
    token = browser_token if browser_token and _BROWSER_TOKEN.fullmatch(browser_token) else None
    token = token or secrets.token_urlsafe(32)  # 256 bits, like a session's
    digest = _digest(token)  # random, so a plain digest suffices (and survives key rotation)
    now = clock.now()
    known = db.session.scalar(
        select(KnownBrowser).where(
            KnownBrowser.customer_id == customer.id, KnownBrowser.cookie_digest == digest
        )
    )
    if known is not None:
        known.last_seen_at = now
        db.session.flush()
        return token
    first_ever = not db.session.scalar(
        select(exists().where(KnownBrowser.customer_id == customer.id))
    )
    try:
        with db.session.begin_nested():  # two sign-ins racing from one browser: one row
            db.session.add(
                KnownBrowser(
                    customer_id=customer.id,
                    cookie_digest=digest,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
    except IntegrityError:
        return token
    if first_ever and from_notice:
        return token
    browser, system = describe_device(user_agent)
    audit.record(
        "session.new_browser",
        actor=customer_actor(customer),
        subject_type="customer",
        subject_id=customer.public_id,
        details={"device": f"{browser or '?'} / {system or '?'}"},
    )
    # To the address the notices go to; no IP address or place: an address is personal data
    # in clear in a mailbox, and a guessed city misleads more than it helps.
    outbox.queue_message(
        compose_new_browser,
        to=customer.email,
        locale=customer.locale,
        dedupe_key=f"new-browser:{customer.public_id}:{digest.hex()[:16]}",
        when=now,
        browser=browser,
        system=system,
    )
    db.session.flush()
    return token


# (name, pattern) in the order that decides: Edge and Opera also say "Chrome", Chrome also says
# "Safari", and every Android browser says "Linux".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iPhone", re.compile(r"\biPhone\b")),
    ("iPad", re.compile(r"\biPad\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def describe_device(user_agent: str) -> tuple[str | None, str | None]:
    """A rough (browser, system) from a User-Agent, such as ("Chrome", "Android"); None for
    what cannot be told. Names only, never versions: enough for a person to recognise it."""
    text = user_agent[:500]
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), None)
    return browser, system
