"""Shapes of values the portal accepts, shared by imports and forms."""

from __future__ import annotations

import re

EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def is_email(value: str) -> bool:
    """A deliverable-looking address: RFC 5321 lengths, a dotted domain, no doubled dots."""
    return len(value) <= 254 and ".." not in value and EMAIL.match(value) is not None


def normalise_email(address: str) -> str:
    """The form used for the blind index: trimmed and case-folded."""
    return address.strip().casefold()
