"""TOTP checks shared by customers and staff: RFC 6238, 30 s, 6 digits, no replay."""

from __future__ import annotations

import hmac

import pyotp

from portal import clock

STEP_SECONDS = 30


def accept(secret: str, typed: str, last_step: int | None) -> int | None:
    """The time step a code belongs to (current or previous), or None.

    A step at or before `last_step` is refused: a code that was accepted once (or an older one)
    cannot be replayed. The caller stores the returned step as the new `last_step`.
    """
    from portal.services.verification import normalise_code

    code = normalise_code(typed)
    if code is None:
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(clock.now().timestamp()) // STEP_SECONDS
    for step in (now_step, now_step - 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None


def replayed(secret: str, typed: str, last_step: int | None) -> bool:
    """Whether a refused code is the one already accepted (or an older right one) being used
    again: someone may be reading the person's codes over their shoulder or from a proxy, so the
    caller records it and tells the owner (OTP-04), which a merely wrong code does not deserve."""
    from portal.services.verification import normalise_code

    code = normalise_code(typed)
    if code is None or last_step is None:
        return False
    totp = pyotp.TOTP(secret)
    now_step = int(clock.now().timestamp()) // STEP_SECONDS
    return any(
        step <= last_step and hmac.compare_digest(totp.generate_otp(step), code)
        for step in (now_step, now_step - 1)
    )


def new_secret() -> str:
    """160 bits from the system's CSPRNG, base32 as authenticator apps expect."""
    return pyotp.random_base32(32)
