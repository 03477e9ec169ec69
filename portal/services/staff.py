"""Staff accounts: invitation, set-up, two-factor sign-in, sessions, and their management."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import select, update

from portal import clock
from portal.extensions import db, limiter
from portal.mail.compose import compose_alert, compose_staff_setup
from portal.models import RecoveryCode, SecurityKey, StaffMember, StaffSession
from portal.models.audit import Actor, staff_actor
from portal.models.sealed import index_of, matches
from portal.models.staff import STAFF_ROLES
from portal.services import audit, outbox, passwords, security_keys, sessions, tokens, totp
from portal.unit_of_work import write_is_the_point
from portal.validation import Invalid, email_address

PENDING_TTL = timedelta(minutes=10)  # password done, code not yet: this long at most
IDLE_TTL = timedelta(minutes=15)
MAX_TTL = timedelta(hours=12)
REAUTH_TTL = timedelta(minutes=5)
LOCK_AFTER = 10
LOCK_BASE = timedelta(seconds=30)
LOCK_MAX = timedelta(hours=1)
RECOVERY_CODES = 10
# A browser the member signed in from (password and second factor) keeps a signed device cookie
# this long; it escapes the account-wide lock, so a stranger cannot lock the member out (AUTH-07).
DEVICE_TTL = timedelta(days=180)
_DEVICE_KEPT = int(timedelta(days=1).total_seconds())  # a device's failure count is kept this long
_RECOVERY_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31 symbols: 24 of them ~ 119 bits


class StaffError(Exception):
    """Something to tell the staff member, in words."""


class SignInFailed(StaffError):
    """Wrong email, password or code, or a locked account: one message for all of them."""


class KeyRequired(StaffError):
    """An admin who has a security key gave an app or recovery code instead (OTP-03)."""


@dataclass(frozen=True)
class Enrollment:
    secret: str
    qr_data_uri: str


def by_email(address: str) -> StaffMember | None:
    return db.session.scalar(select(StaffMember).where(matches(StaffMember.email_index, address)))


# --- invitation and set-up -------------------------------------------------------------------


def invite(address: str, role: str, *, actor: str, roles=None) -> str:
    """Create (or re-invite) a staff member in `role` (and any further `roles`); return the
    one-time set-up link (one hour)."""
    try:
        address = email_address(address)
    except Invalid:
        raise StaffError("Give a valid email address.") from None
    held = {role, *(roles or ())}
    if not held <= set(STAFF_ROLES):
        raise StaffError("The roles are: " + ", ".join(STAFF_ROLES) + ".")
    member = by_email(address)
    if member is not None and member.ready and member.disabled_at is None:
        raise StaffError("That staff member is already set up.")
    if member is None:
        member = StaffMember(public_id=secrets.token_hex(16), role=role)
        member.email = address.strip()  # sealed to this member, with its blind index
        db.session.add(member)
    member.roles = held
    member.invite_nonce = secrets.token_hex(16)  # any earlier invitation stops working
    member.disabled_at = None
    db.session.flush()
    audit.record(
        "staff.invited",
        actor=actor,
        subject_type="staff",
        subject_id=member.public_id,
        details={"role": role, "roles": list(member.roles)},
    )
    return tokens.link(tokens.Purpose.STAFF_INVITE, member.public_id, member.invite_nonce)


def invitation(token: str) -> StaffMember:
    """The staff member an unspent invitation is for; StaffError otherwise. Spends nothing."""
    try:
        public_id, nonce = tokens.load(tokens.Purpose.STAFF_INVITE, token)
    except tokens.ExpiredToken as exc:
        raise StaffError(
            _(
                "This invitation has expired: an invitation works for one hour. "
                "Ask an admin for a new invitation."
            )
        ) from exc
    except tokens.InvalidToken as exc:
        raise StaffError("This invitation link is not valid.") from exc
    member = db.session.scalar(select(StaffMember).where(StaffMember.public_id == public_id))
    if (
        member is None
        or member.invite_nonce is None
        or not hmac.compare_digest(member.invite_nonce.encode(), str(nonce).encode())
    ):
        raise StaffError("This invitation has already been used. Ask an admin for a new one.")
    return member


def _context(member: StaffMember) -> set[str]:
    words = passwords.base_context_words() | passwords.email_words(member.email)
    return {w for w in words if len(w) >= 4}


def accept_invitation(token: str, password: str, confirm: str, *, user_agent: str = "") -> str:
    """Set the password (spending the invitation); return a half-signed-in session token."""
    member = invitation(token)
    password = passwords.check_rules(password, confirm, _context(member))
    member.password_hash = passwords.hasher().hash(password)
    member.invite_nonce = None  # the link works once
    member.totp_sealed = None
    member.totp_enabled_at = None
    # Set-up starts from nothing: no factor of an earlier set-up survives it.
    db.session.execute(SecurityKey.__table__.delete().where(SecurityKey.staff_id == member.id))
    member.failed_logins = 0
    audit.record(
        "staff.password_set",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
    )
    return _open(member, mfa=False, user_agent=user_agent)


def authenticator_enrollment(member: StaffMember) -> Enrollment:
    """A fresh seed while the authenticator is not yet confirmed (sealed, never in the cookie)."""
    import segno

    if member.totp_sealed is None:
        # Kept on the GET that shows it: the point is that the code typed next is checked
        # against the seed this page showed.
        write_is_the_point(StaffMember.totp_sealed)
        member.totp_secret = totp.new_secret()
        db.session.flush()
    secret = member.totp_secret
    import pyotp

    uri = pyotp.TOTP(secret).provisioning_uri(
        name=member.email, issuer_name=f"{current_app.config['ORGANISATION_NAME']} staff"
    )
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return Enrollment(grouped, segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def confirm_authenticator(session_: StaffSession, typed: str) -> list[str]:
    """Confirm the app with a code: the session is now fully signed in. Returns the recovery
    codes, shown this once."""
    member = session_.staff
    step = totp.accept(
        member.totp_secret,
        typed,
        member.totp_last_step,
    )
    if step is None:
        raise StaffError("That code does not match. Type the 6 digits the app shows now.")
    now = clock.now()
    member.totp_last_step = step
    member.totp_enabled_at = now
    session_.mfa_at = session_.reauth_at = now
    codes = _new_recovery_codes(member)
    audit.record(
        "staff.authenticator_added",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
    )
    _tell(member, "An authenticator app was set up for your staff account.")
    db.session.flush()
    return codes


def rotate(session_: StaffSession) -> str:
    """A new session id once both factors are done (the half-signed-in id is retired)."""
    session_.revoked_at = clock.now()
    return _open(session_.staff, mfa=True, user_agent=session_.user_agent)


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.replace("-", "").replace(" ", "").upper().encode()).digest()


def _new_recovery_codes(member: StaffMember) -> list[str]:
    """Ten fresh codes; every earlier code stops working."""
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.staff_id == member.id))
    codes = []
    for _n in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(24))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 24, 4)))
        db.session.add(RecoveryCode(staff_id=member.id, code_digest=_digest(raw)))
    return codes


# --- signing in ---


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _open(member: StaffMember, *, mfa: bool, user_agent: str = "") -> str:
    token = secrets.token_urlsafe(32)
    now = clock.now()
    db.session.add(
        StaffSession(
            token_digest=_token_digest(token),
            staff_id=member.id,
            created_at=now,
            last_seen_at=now,
            mfa_at=now if mfa else None,
            reauth_at=now if mfa else None,
            user_agent=user_agent[:200],
        )
    )
    db.session.flush()
    return token


def _dummy_hash() -> str:
    if not hasattr(_dummy_hash, "value"):
        _dummy_hash.value = passwords.hasher().hash(secrets.token_urlsafe(16))
    return _dummy_hash.value


def _locked(member: StaffMember) -> bool:
    return member.locked_until is not None and member.locked_until > clock.now()


def _lock_wait(failures: int) -> timedelta:
    # 30 s, doubling with every further failure, up to an hour: guessing stays hopeless,
    # and the real person is never locked out for long.
    return min(LOCK_MAX, LOCK_BASE * 2 ** (failures - LOCK_AFTER))


# --- known devices (OWASP's "device cookie": lockout must not be a denial of service) ---


def _device_mac(member: StaffMember, nonce: str, key: str | bytes) -> str:
    key = key.encode() if isinstance(key, str) else key
    message = f"staff-device|{member.public_id}|{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def device_token(member: StaffMember) -> str:
    """A new device cookie's value for a browser that just signed in fully (random nonce, MAC)."""
    nonce = secrets.token_urlsafe(24)
    return f"{nonce}.{_device_mac(member, nonce, current_app.secret_key)}"


def known_device(member: StaffMember | None, token: str | None) -> str | None:
    """The device nonce, when token is a device cookie issued to this member; else None."""
    if member is None or not token or token.count(".") != 1:
        return None
    nonce, mac = token.split(".")
    keys = [current_app.secret_key, *current_app.config.get("SECRET_KEY_FALLBACKS", [])]
    # Constant time, and every key tried: a forged or another member's cookie earns nothing.
    found = False
    for key in keys:
        if key:
            found |= hmac.compare_digest(_device_mac(member, nonce, key), mac)
    return nonce if found else None


def _device_key(nonce: str) -> str:
    # The nonce's digest, not the nonce: the cookie's value stays out of Redis.
    return "staff-device:" + hashlib.sha256(nonce.encode()).hexdigest()[:32]


def _device_locked(nonce: str) -> bool:
    # Read from the shared rate-limit store; a store that is down raises and the edge answers
    # 503 (fail closed): a known device is never let guess unlimited.
    until = int(limiter.storage.get(_device_key(nonce) + ":until") or 0)
    return until > clock.now().timestamp()


def _device_fail(member: StaffMember, nonce: str, factor: str) -> None:
    """A failure from a known device counts on that device alone, with the account's policy:
    a stolen laptop cannot guess freely, and a stranger's failures never reach it."""
    key = _device_key(nonce)
    failures = limiter.storage.incr(key + ":failures", _DEVICE_KEPT)
    if failures >= LOCK_AFTER:
        wait = _lock_wait(failures)
        limiter.storage.clear(key + ":until")
        limiter.storage.incr(
            key + ":until", _DEVICE_KEPT, amount=int((clock.now() + wait).timestamp()) + 1
        )
        _record_refusal(member, "staff.device_locked", seconds=int(wait.total_seconds()))
    _record_refusal(member, "staff.sign_in_failed", factor=factor, device="known")


def _device_clear(nonce: str) -> None:
    key = _device_key(nonce)
    limiter.storage.clear(key + ":failures")
    limiter.storage.clear(key + ":until")


def _refused(member: StaffMember, nonce: str | None) -> bool:
    """Locked for this request: a known device answers to its own count, any other browser to
    the account's."""
    return _device_locked(nonce) if nonce else _locked(member)


def _fail(member: StaffMember, factor: str) -> None:
    member.failed_logins += 1
    if member.failed_logins >= LOCK_AFTER:
        wait = _lock_wait(member.failed_logins)
        member.locked_until = clock.now() + wait
        if member.failed_logins == LOCK_AFTER and factor == "password":
            # Once per lock (the count restarts only at a sign-in), nothing secret in it; a
            # wrong code is already told on its own, each time.
            _tell(
                member,
                "Someone tried many wrong passwords on your staff account from a browser you "
                "have not used to sign in, so signing in from new browsers is paused for a "
                "while. Your own browsers are not affected. If it was not you, tell an admin.",
            )
        _record_refusal(member, "staff.locked", seconds=int(wait.total_seconds()))
    _record_refusal(member, "staff.sign_in_failed", factor=factor)


def _record_refusal(member: StaffMember, action: str, **details) -> None:
    """A failed or locked sign-in, in the trail under the member it was aimed at."""
    audit.record(
        action,
        actor=Actor.STAFF,
        subject_type="staff",
        subject_id=member.public_id,
        outcome="failure",
        details=details,
    )


def sign_in(address: str, password: str, *, user_agent: str = "", device: str | None = None) -> str:
    """Check email and password; return a half-signed-in session token (the code comes next).

    device is the browser's device cookie: one this member got at a full sign-in is held to its
    own failure count instead of the account's lock (AUTH-07)."""
    # Looked up whatever was typed: an address that is not one costs the same query.
    member = by_email(address)
    nonce = known_device(member, device)
    if (
        member is None
        or not member.password_hash
        or member.disabled_at is not None
        or _refused(member, nonce)
    ):
        _spend_like_verify(password)
        _fail_unchecked(address, member)
        raise SignInFailed()
    try:
        passwords.hasher().verify(member.password_hash, passwords.normalise(password))
    except Exception:  # argon2 raises its own mismatch errors; all mean "no"
        if nonce:
            _device_fail(member, nonce, "password")
        else:
            _fail(member, "password")
        # The failure counts towards the lock although an error follows: the view answers it
        # on purpose, and the edge commits a request it answered.
        db.session.flush()
        raise SignInFailed() from None
    if not member.ready:
        raise SignInFailed()  # set-up unfinished: only the invitation continues it
    return _open(member, mfa=False, user_agent=user_agent)


def _fail_unchecked(address: str, member: StaffMember | None) -> None:
    """A refusal without a password check (an unknown address, a disabled or locked account)
    does the work a wrong password does: one UPDATE of staff_member and one audit event, then a
    commit. Otherwise the answer for a real address took longer (a row and an event written), and
    timing told which addresses are staff.

    The UPDATE changes nothing (the count stays; a lock is not lengthened by attempts made while
    it holds), and the event names an unknown address only by a keyed digest, never in clear:
    a burst of such failures is still visible in the audit trail.
    """
    db.session.execute(
        update(StaffMember)
        .where(matches(StaffMember.email_index, address))
        .values(failed_logins=StaffMember.failed_logins)
    )
    if member is None:
        subject_type = "staff_address"
        subject_id = index_of(StaffMember.email_index, address).hex()
    else:
        subject_type, subject_id = "staff", member.public_id
    audit.record(
        "staff.sign_in_failed",
        actor=Actor.STAFF,
        subject_type=subject_type,
        subject_id=subject_id,
        outcome="failure",
        details={"factor": "password", "checked": False},
    )
    # Kept although an error follows: the edge commits a request it answered.
    db.session.flush()


def _spend_like_verify(password: str) -> None:
    """An unknown or locked account costs what a real check costs: timing tells nothing."""
    try:
        passwords.hasher().verify(_dummy_hash(), password)
    except Exception:  # the dummy never matches; only the time spent matters
        return


def second_factor(
    session_: StaffSession, typed: str, *, user_agent: str = "", device: str | None = None
) -> str:
    """Finish signing in with an authenticator or recovery code; return the new session token."""
    member = session_.staff
    nonce = known_device(member, device)
    if _refused(member, nonce):
        raise SignInFailed()
    _refuse_codes_if_key_required(member, "sign-in")
    step = totp.accept(
        member.totp_secret,
        typed,
        member.totp_last_step,
    )
    factor = "authenticator"
    if step is not None:
        member.totp_last_step = step
    elif not _use_recovery_code(member, typed):
        if nonce:
            _device_fail(member, nonce, "second factor")
        else:
            _fail(member, "second factor")
        _tell_if_replayed(member, typed)
        # The password was right, the code was not: the real owner should hear of it.
        _tell(
            member,
            "Someone signed in to your staff account with the right password but "
            "a wrong code. If it was not you, tell an admin at once: they "
            "can end your sessions and reset your sign-in.",
        )
        # Kept although an error follows (the failure, the warning): the edge commits it.
        db.session.flush()
        raise SignInFailed()
    else:
        factor = "recovery code"
        _tell(member, "A recovery code was used to sign in to your staff account.")
    return _signed_in(session_, factor, user_agent, nonce=nonce)


def _signed_in(
    session_: StaffSession,
    factor: str,
    user_agent: str,
    key: SecurityKey | None = None,
    nonce: str | None = None,
) -> str:
    member = session_.staff
    if nonce:
        # A known device clears its own count only: the member signing in from their laptop
        # must not hand a stranger a fresh set of guesses against the account.
        _device_clear(nonce)
    else:
        member.failed_logins = 0
        member.locked_until = None
    session_.revoked_at = clock.now()  # the half session ends; a new id for the full one
    audit.record(
        "staff.signed_in",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        details={"factor": factor} | ({"key": key.public_id} if key else {}),
    )
    return _open(member, mfa=True, user_agent=user_agent)


# --- security keys (WebAuthn) ---


def key_required(member: StaffMember) -> bool:
    """Must this member use a security key? Admins, when the policy is on (OTP-03)."""
    return member.has_role("admin") and current_app.config["ADMIN_SECURITY_KEY_REQUIRED"]


def codes_refused(member: StaffMember) -> bool:
    """An admin under the policy who has a key: app and recovery codes no longer sign them in
    (both can be phished; the key cannot)."""
    return key_required(member) and security_keys.count(member) > 0


def needs_security_key(member: StaffMember) -> bool:
    """An admin under the policy without a key: signed in with the app, they may only add one."""
    return key_required(member) and security_keys.count(member) == 0


def _refuse_codes_if_key_required(member: StaffMember, where: str) -> None:
    if codes_refused(member):
        # Recorded, not counted towards the lock: no code was checked, so nothing was learnt.
        audit.record(
            "staff.code_refused",
            actor=Actor.STAFF,
            subject_type="staff",
            subject_id=member.public_id,
            outcome="failure",
            details={"where": where, "reason": "security key required"},
        )
        db.session.flush()  # kept with the refusal: the edge commits a request it answered
        raise KeyRequired(
            _(
                "Admins use their security key here: an authenticator app or recovery code is "
                "not accepted for this account. Lost your key? Ask another admin to reset your "
                "sign-in."
            )
        )


def _key_refused(
    member: StaffMember, exc: security_keys.KeyRefused, where: str, nonce: str | None = None
) -> None:
    """A key's answer was refused after a right password: counted, recorded, and the owner
    told; a copied key (its counter went backwards) is recorded as such."""
    if nonce:
        _device_fail(member, nonce, "security key")
    else:
        _fail(member, "security key")
    if isinstance(exc, security_keys.KeyCloned):
        audit.record(
            "staff.security_key_cloned",
            actor=Actor.STAFF,
            subject_type="staff",
            subject_id=member.public_id,
            outcome="failure",
            details={"key": exc.key.public_id, "where": where},
        )
        _tell(
            member,
            f'Your security key "{exc.key.name}" answered with a counter lower than before: '
            "it may have been copied, and it was refused. Tell your security team.",
        )
    else:
        _tell(
            member,
            "Someone gave the right password for your staff account, then a security key "
            "answer that was refused. If it was not you, tell an admin at once: they "
            "can end your sessions and reset your sign-in.",
        )
    db.session.flush()  # kept with the refusal: the edge commits a request it answered


def second_factor_key(
    session_: StaffSession, answer: str, *, user_agent: str = "", device: str | None = None
) -> str:
    """Finish signing in with a security key; return the new session token."""
    member = session_.staff
    nonce = known_device(member, device)
    if _refused(member, nonce):
        session_.sign_challenge = session_.sign_challenge_at = None
        raise SignInFailed()
    try:
        key = security_keys.verify_sign_in(session_, answer)
    except security_keys.KeyRefused as exc:
        _key_refused(member, exc, "sign-in", nonce)
        raise SignInFailed() from None
    return _signed_in(session_, "security key", user_agent, key, nonce)


def _clean_key_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or len(name) > 60 or not name.isprintable():
        raise StaffError(_("Give the key a name of up to 60 characters, such as “blue key”."))
    return name


def add_security_key(session_: StaffSession, name: str, answer: str) -> SecurityKey:
    """Register a security key for the signed-in member (its answer checked against the challenge
    this session was given); the member is told by email."""
    member = session_.staff
    name = _clean_key_name(name)
    if security_keys.count(member) >= security_keys.MAX_KEYS:
        raise StaffError(
            _("You have %(count)d security keys: remove one first.", count=security_keys.MAX_KEYS)
        )
    try:
        new = security_keys.verify_registration(session_, answer)
    except security_keys.KeyRefused:
        audit.record(
            "staff.security_key_refused",
            actor=staff_actor(member),
            subject_type="staff",
            subject_id=member.public_id,
            outcome="failure",
        )
        db.session.flush()  # kept with the refusal: the edge commits a request it answered
        raise StaffError(
            _("The security key's answer could not be checked. Please try again.")
        ) from None
    taken = db.session.scalar(
        select(SecurityKey.id).where(SecurityKey.credential_id == new.credential_id)
    )
    if taken is not None:
        raise StaffError(_("This security key is already registered."))
    key = SecurityKey(
        public_id=secrets.token_hex(16),
        staff_id=member.id,
        credential_id=new.credential_id,
        public_key=new.public_key,
        sign_count=new.sign_count,
        name=name,
    )
    db.session.add(key)
    db.session.flush()
    audit.record(
        "staff.security_key_added",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        details={"key": key.public_id},
    )
    _tell(member, f'A security key named "{name}" was added to your staff account.')
    return key


def remove_security_key(member: StaffMember, key_public_id: str) -> SecurityKey:
    """Remove one of the member's own keys; never an admin's last one under the policy (it is
    the only factor that still signs them in)."""
    keys = security_keys.of(member)
    key = next(
        (k for k in keys if hmac.compare_digest(k.public_id.encode(), key_public_id.encode())),
        None,
    )
    if key is None:
        raise StaffError(_("That security key is not one of yours."))
    if key_required(member) and len(keys) == 1:
        raise StaffError(
            _(
                "This is your only security key, and admins sign in with one: add another key "
                "before removing this one."
            )
        )
    db.session.delete(key)
    audit.record(
        "staff.security_key_removed",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        details={"key": key.public_id},
    )
    _tell(member, f'The security key named "{key.name}" was removed from your staff account.')
    db.session.flush()
    return key


def _use_recovery_code(member: StaffMember, typed: str) -> bool:
    cleaned = typed.replace("-", "").replace(" ", "").upper()
    if len(cleaned) != 24:
        return False
    used = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.staff_id == member.id,
            RecoveryCode.code_digest == _digest(cleaned),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=clock.now())
    )
    return used.rowcount == 1


def reauthenticate(
    session_: StaffSession, password: str, typed: str = "", *, key_answer: str = ""
) -> None:
    """Password and code (or security key) again, for sensitive acts in the next five minutes.
    Failures count towards the same lock as sign-in, and a locked account is refused before any
    check."""
    member = session_.staff
    if _locked(member):
        # Checked first, with the same answer as a wrong pair: while the lock holds, a stolen
        # session learns nothing from trying (not even the right pair), as at sign-in.
        _spend_like_verify(password)
        raise SignInFailed()
    if not key_answer:
        _refuse_codes_if_key_required(member, "re-authentication")
    try:
        passwords.hasher().verify(member.password_hash, passwords.normalise(password))
        ok = True
    except Exception:  # a mismatch, in argon2's words
        ok = False
    if key_answer:
        _reauthenticate_with_key(session_, ok, key_answer)
        return
    step = (
        totp.accept(
            member.totp_secret,
            typed,
            member.totp_last_step,
        )
        if ok
        else None
    )
    if step is None:
        _fail(member, "re-authentication")
        if ok:
            _tell_if_replayed(member, typed)
        if ok:
            # The password was right, the code was not: the real owner should hear of it.
            _tell(
                member,
                "Someone confirming it was you on a signed-in staff session gave the right "
                "password but a wrong code. If it was not you, tell an admin at once: they "
                "can end your sessions and reset your sign-in.",
            )
        db.session.flush()  # counts towards the lock: the edge commits it with the refusal
        raise SignInFailed()
    member.totp_last_step = step
    _reauthenticated(session_, "authenticator")


def _reauthenticate_with_key(session_: StaffSession, password_ok: bool, answer: str) -> None:
    member = session_.staff
    try:
        # Checked even after a wrong password, so the challenge is spent either way.
        key = security_keys.verify_sign_in(session_, answer)
    except security_keys.KeyRefused as exc:
        if password_ok:
            _key_refused(member, exc, "re-authentication")
        else:
            _fail(member, "re-authentication")
            db.session.flush()
        raise SignInFailed() from None
    if not password_ok:
        _fail(member, "re-authentication")
        db.session.flush()
        raise SignInFailed()
    _reauthenticated(session_, "security key", key)


def _reauthenticated(session_: StaffSession, factor: str, key: SecurityKey | None = None) -> None:
    member = session_.staff
    # Both factors right, as at sign-in: earlier failures are forgiven.
    member.failed_logins = 0
    member.locked_until = None
    session_.reauth_at = clock.now()
    audit.record(
        "staff.reauthenticated",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        details={"factor": factor} | ({"key": key.public_id} if key else {}),
    )
    db.session.flush()


def load_session(token: str | None) -> StaffSession | None:
    """The session for this cookie, or None when unknown, ended, idle, too old or disabled.

    A half-signed-in session is returned too (mfa_at is None); callers let it reach only the
    code page, and it lasts ten minutes.
    """
    if not token:
        return None
    row = db.session.scalar(
        select(StaffSession).where(StaffSession.token_digest == _token_digest(token))
    )
    if row is None or row.revoked_at is not None or row.staff.disabled_at is not None:
        return None
    now = clock.now()
    if row.mfa_at is None and now - row.created_at > PENDING_TTL:
        return None
    if now - row.last_seen_at > IDLE_TTL or now - row.created_at > MAX_TTL:
        return None
    if now - row.last_seen_at > timedelta(minutes=1):
        # Written on any page, GETs too: the point is the idle timeout, which counts from here.
        write_is_the_point(StaffSession.last_seen_at)
        row.last_seen_at = now
        db.session.flush()
    return row


def is_fresh(session_: StaffSession, within: timedelta | None = None) -> bool:
    """Password and code given again within the window (REAUTH_TTL unless given)?"""
    window = within or REAUTH_TTL
    return session_.reauth_at is not None and clock.now() - session_.reauth_at <= window


def sign_out(session_: StaffSession) -> None:
    session_.revoked_at = clock.now()
    audit.record(
        "staff.signed_out",
        actor=staff_actor(session_.staff),
        subject_type="staff",
        subject_id=session_.staff.public_id,
    )
    db.session.flush()


# --- admin ---


def members() -> list[StaffMember]:
    return list(db.session.scalars(select(StaffMember).order_by(StaffMember.id)))


def live_sessions(member: StaffMember) -> list[StaffSession]:
    now = clock.now()
    return [
        s
        for s in db.session.scalars(
            select(StaffSession)
            .where(
                StaffSession.staff_id == member.id,
                StaffSession.revoked_at.is_(None),
                StaffSession.mfa_at.is_not(None),
            )
            .order_by(StaffSession.created_at.desc())
        )
        if now - s.last_seen_at <= IDLE_TTL and now - s.created_at <= MAX_TTL
    ]


def end_sessions(member: StaffMember, *, actor: str, session_id: int | None = None) -> None:
    query = update(StaffSession).where(
        StaffSession.staff_id == member.id, StaffSession.revoked_at.is_(None)
    )
    if session_id is not None:
        query = query.where(StaffSession.id == session_id)
    db.session.execute(query.values(revoked_at=clock.now()))
    audit.record(
        "staff.sessions_ended",
        actor=actor,
        subject_type="staff",
        subject_id=member.public_id,
        details={"session": session_id},
    )
    db.session.flush()


def end_other_sessions(session_: StaffSession, *, session_id: int | None = None) -> int:
    """A member ends their own other sessions (one, or all but this one); return how many.

    The member's own id is part of the statement: another member's session id ends nothing.
    """
    member = session_.staff
    query = _live_rows(update(StaffSession)).where(
        StaffSession.staff_id == member.id, StaffSession.id != session_.id
    )
    if session_id is not None:
        query = query.where(StaffSession.id == session_id)
    if session_id is not None and not sessions.is_row_id(session_id):
        ended = 0  # no such row; never sent to the database (see sessions.is_row_id)
    else:
        ended = (
            db.session.execute(
                query.values(revoked_at=clock.now()).execution_options(synchronize_session=False)
            ).rowcount
            or 0
        )
    audit.record(
        "staff.own_sessions_ended",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        outcome="success" if ended or session_id is None else "failure",
        details={"session": session_id, "ended": ended},
    )
    db.session.flush()
    return ended


def _live_rows(query):
    """Rows that could still open a page (a half-signed-in one too, while it lasts)."""
    now = clock.now()
    return query.where(
        StaffSession.revoked_at.is_(None),
        StaffSession.last_seen_at >= now - IDLE_TTL,
        StaffSession.created_at >= now - MAX_TTL,
    )


EMERGENCY_PHRASE = "END EVERY SESSION"


def end_every_session(keep: StaffSession) -> tuple[int, int]:
    """The emergency stop (a stolen database, a bad deploy): every customer session and every
    staff session but the admin's own one in use ends now; return (customers', staff's) counts.
    """
    member = keep.staff
    now = clock.now()
    customers_ended = sessions.end_every_customer_session()
    staff_ended = (
        db.session.execute(
            _live_rows(update(StaffSession))
            .where(StaffSession.id != keep.id)
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        or 0
    )
    # The admin's own other sessions end too: in an emergency one of them may be the intruder's.
    db.session.execute(
        update(StaffSession)
        .where(StaffSession.revoked_at.is_(None), StaffSession.id != keep.id)
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        "session.all_ended",
        actor=staff_actor(member),
        subject_type="portal",
        subject_id="all",
        details={"customer_sessions": customers_ended, "staff_sessions": staff_ended},
    )
    db.session.flush()
    return customers_ended, staff_ended


def disable(member: StaffMember, *, actor: str) -> None:
    """Leaving staff: the account stops working and every session ends at once."""
    member.disabled_at = clock.now()
    end_sessions(member, actor=actor)
    audit.record("staff.disabled", actor=actor, subject_type="staff", subject_id=member.public_id)


def reset_mfa(member: StaffMember, *, actor: str) -> None:
    """Drop the authenticator and recovery codes; the member must set up again, with a new link
    sent to their own address only."""
    member.totp_sealed = None
    member.totp_enabled_at = None
    member.totp_last_step = None
    db.session.execute(RecoveryCode.__table__.delete().where(RecoveryCode.staff_id == member.id))
    # Security keys too: the member sets up every factor again from the link sent to them.
    db.session.execute(SecurityKey.__table__.delete().where(SecurityKey.staff_id == member.id))
    end_sessions(member, actor=actor)
    member.password_hash = None
    link = invite(member.email, member.role, actor=actor, roles=member.roles)
    ttl = current_app.config["STAFF_INVITE_TTL"]
    # The link goes only to the member's own address, never to the admin's screen: an admin who
    # saw it could set up the account with their own authenticator and act as that member.
    outbox.queue_message(
        compose_staff_setup,
        to=member.email,
        locale="en",  # staff pages and alerts are in English
        dedupe_key=f"staff-setup:{member.public_id}:{secrets.token_hex(8)}",
        # Not worth delivering once the link inside has expired.
        expires_at=clock.now() + ttl,
        link=link,
        minutes=int(ttl.total_seconds() // 60),
    )
    audit.record(
        "staff.mfa_reset",
        actor=actor,
        subject_type="staff",
        subject_id=member.public_id,
        details={"setup_link": "sent to the member"},
    )


def _tell_if_replayed(member: StaffMember, typed: str) -> None:
    """A code that was already accepted, typed again: recorded and told to the member (OTP-04)."""
    if not totp.replayed(member.totp_secret, typed, member.totp_last_step):
        return
    audit.record(
        "staff.code_replayed",
        actor=staff_actor(member),
        subject_type="staff",
        subject_id=member.public_id,
        outcome="failure",
    )
    _tell(
        member,
        "A code from your authenticator app that had already been used was typed again on your "
        "staff account. It was refused. If it was not you, someone may be reading your codes.",
    )


def _tell(member: StaffMember, what: str) -> None:
    """A security notice to the staff member's own address (never a secret in it)."""
    outbox.queue_message(
        compose_alert,
        to=member.email,
        locale="en",  # staff pages and alerts are in English
        dedupe_key=f"staff-notice:{member.public_id}:{secrets.token_hex(8)}",
        subject="Your staff account",
        text=what,
    )
