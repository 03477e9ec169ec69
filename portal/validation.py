"""Shapes of values the portal accepts, shared by imports and forms."""

from __future__ import annotations

import re
import unicodedata

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


E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def is_e164(value: str) -> bool:
    """A phone number in E.164 form: +, the country code, the number; nothing else."""
    return E164.match(value) is not None


def normalise_phone(typed: str) -> str:
    """What a person typed, in E.164 form when it can be: spaces, dots, dashes and brackets
    dropped, a leading 00 read as +."""
    phone = _PHONE_SEPARATORS.sub("", typed.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone


def normalise_name(name: str) -> str:
    """The form used for the name index: Unicode-normalised, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())
