"""The one rule for each kind of value the portal accepts, shared by the import and every form.

An email address or a phone number is checked here and nowhere else: what the import takes, a
form takes too, in the same form, so a person found by one is found by the other.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata

import idna
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

EMAIL_EXPECTED = _l("Enter an email address like name@example.com.")
PHONE_EXPECTED = _l("Give the phone number with its country code, like +14155550123.")


class Invalid(ValueError):
    """Not a value the portal accepts; the message says what is expected, in words for a person."""


# Line breaks and other control characters (the C0 and C1 sets, and Unicode's own line and
# paragraph separators). A one-line value may end up in an email header (an incident's title is
# in its updates' subject), where a line break would end the header or add one.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SINGLE_LINE_EXPECTED = _l("Write this on one line, without line breaks or control characters.")


def is_single_line(text: str) -> bool:
    """No line break or other control character anywhere in text."""
    return _CONTROL_CHARACTERS.search(text) is None


# Characters that change how the text around them is shown without being seen themselves. By
# Unicode category: every format character (Cf: the bidirectional embeddings, overrides and
# isolates, the Arabic letter mark, zero-width spaces and joiners, direction marks, the soft
# hyphen, invisible operators, the tag characters used to smuggle text, a byte order mark inside
# the text), private-use (Co) and unassigned (Cn) code points, line and paragraph separators; and
# the letters that are drawn as nothing (the Hangul fillers, the blank Braille pattern). In a name
# or an id they make "Ann" look like someone else's name, two ids look alike, or an id read
# backwards ("Trojan Source"), on the very pages staff use to tell people apart; no real name
# needs them.
_INVISIBLE_CATEGORIES = frozenset(("Cf", "Co", "Cn", "Zl", "Zp"))
_DRAWN_AS_NOTHING = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _invisible(character: str) -> bool:
    return (
        unicodedata.category(character) in _INVISIBLE_CATEGORIES or character in _DRAWN_AS_NOTHING
    )


INVISIBLE_EXPECTED = _l(
    "This contained an invisible or direction-changing character. We have taken it out: check "
    "what is left and send it again."
)


def has_invisible(text: str) -> bool:
    """Whether text holds a character that is invisible or changes the direction of the text."""
    # Plain ASCII has none (its control characters are refused as such): the import's million
    # names and ids mostly take this path.
    return not text.isascii() and any(_invisible(c) for c in text)


def without_invisible(text: str) -> str:
    """text with its invisible and direction-changing characters taken out: what a form shows
    back after refusing them, so that the person, who cannot see them, can simply send again."""
    return text if text.isascii() else "".join(c for c in text if not _invisible(c))


def shown_plainly(text: str | None) -> str | None:
    """text with each invisible, direction-changing or control character shown as U+FFFD, for
    values kept before they were refused: the reader sees that something is there, and it can
    no longer reorder or hide what follows it."""
    if not isinstance(text, str):
        return text  # an erased name (None) is shown as before
    if not text.isascii():
        text = "".join("\ufffd" if _invisible(c) else c for c in text)
    return _CONTROL_CHARACTERS.sub("\ufffd", text)


# The local part as mail systems deliver it in practice: dot-separated runs of the characters
# RFC 5322 allows unquoted. Quoted local parts and non-ASCII ones (SMTPUTF8) are refused: the
# outbox speaks plain SMTP, and an address it cannot send to is no use to anyone.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
# Dot-separated labels of letters, digits and inner hyphens, ending in a top-level label of
# letters (or an internationalised one): "localhost" or "example.123" reaches nobody.
_DOMAIN = re.compile(r"(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})\Z")


def email_address(typed: str) -> str:
    """The address as the portal keeps and sends to it, or Invalid.

    Trimmed; the domain in lower case and, when it is written in another script, in its ASCII
    (IDNA 2008) form, so "ana@Bücher.de" is kept as "ana@xn--bcher-kva.de". The domain needs a
    dot and a real top-level label: an address at "localhost" reaches nobody.
    """
    address = (typed or "").strip()
    local, at, domain = address.rpartition("@")
    # RFC 5321: a longer address does not fit in a mail path (checked again once the domain
    # is in its ASCII form, which may be longer than what was typed).
    if not at or len(address) > 254 or len(local) > 64 or not _LOCAL.match(local):
        raise Invalid(EMAIL_EXPECTED)
    address = f"{local}@{_ascii_domain(domain)}"
    if len(address) > 254:
        raise Invalid(EMAIL_EXPECTED)
    return address


def _ascii_domain(domain: str) -> str:
    if not domain.isascii():
        try:
            # IDNA 2008 with the UTS 46 mapping (what browsers and mail clients do): "faß.de"
            # stays its own domain instead of becoming "fass.de" as Python's IDNA 2003 codec
            # would have it, which would send someone's mail to a stranger.
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except UnicodeError:  # idna.IDNAError and the codec's own errors
            raise Invalid(EMAIL_EXPECTED) from None
    domain = domain.lower()
    if len(domain) > 253 or not _DOMAIN.match(domain):
        raise Invalid(EMAIL_EXPECTED)
    return domain


def is_email(typed: str) -> bool:
    """Whether `typed` is an address email_address() accepts."""
    try:
        email_address(typed)
    except Invalid:
        return False
    return True


def normalise_email(address: str) -> str:
    """The form used for the blind index: the kept form, case-folded (a typed string that is no
    address is only trimmed and case-folded: it finds nobody, as before)."""
    if address.isascii():
        # The same result without the full check: the kept form of an ASCII address differs
        # from it only in the domain's case, which case-folding removes anyway.
        return address.strip().casefold()
    with contextlib.suppress(Invalid):
        address = email_address(address)
    return address.strip().casefold()


_E164 = re.compile(r"\+[1-9][0-9]{6,14}\Z")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")


def normalise_phone(typed: str) -> str:
    """What a person typed, in E.164 form when it can be: spaces, dots, dashes and brackets
    dropped, a leading 00 read as +."""
    if _E164.match(typed):  # already in its kept form (a million imported numbers are)
        return typed
    phone = _PHONE_SEPARATORS.sub("", typed.strip())
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    return phone


def phone_number(typed: str) -> str:
    """The number in E.164 form (+, the country code, the number) after normalise_phone(), or
    Invalid: "+1 (415) 555-0123" and "0014155550123" are both "+14155550123"."""
    phone = normalise_phone(typed or "")
    if not _E164.match(phone):
        raise Invalid(PHONE_EXPECTED)
    return phone


def is_phone(typed: str) -> bool:
    """Whether `typed` is a number phone_number() accepts."""
    try:
        phone_number(typed)
    except Invalid:
        return False
    return True


def normalise_name(name: str) -> str:
    """The form used for the name index: Unicode-normalised, case-folded, single spaces."""
    if not name.isascii():  # NFKC leaves ASCII as it is: a million imported names skip it
        name = unicodedata.normalize("NFKC", name)
    return " ".join(name.casefold().split())


# --- postal addresses ---

# A mail house's address line holds 40 characters (USPS Pub. 28's guidance for a line, and
# what common mail-house upload formats accept); a city, 28.
ADDRESS_LINE_MAX = 40
CITY_MAX = 28
_US_ZIP = re.compile(r"\d{5}(?:-?\d{4})?\Z")


def postal_address_problems(
    line1: str, line2: str, city: str, postal_code: str, region: str
) -> list[str]:
    """What is wrong with a postal address (empty when it is good, or when none is given)."""
    given = [v.strip() for v in (line1, line2, city, postal_code)]
    if not any(given):
        return []
    line1, line2, city, postal_code = given
    problems = []
    if not line1 or not city or not postal_code:
        problems.append(_("A postal address needs its first line, its city and its postal code."))
    for label, value, most in (
        (_("address line 1"), line1, ADDRESS_LINE_MAX),
        (_("address line 2"), line2, ADDRESS_LINE_MAX),
        (_("city"), city, CITY_MAX),
    ):
        if len(value) > most:
            problems.append(
                _("The %(field)s is longer than %(most)d characters.", field=label, most=most)
            )
        if value and (not is_single_line(value) or has_invisible(value)):
            problems.append(SINGLE_LINE_EXPECTED)
    if postal_code and region.upper().startswith("US") and not _US_ZIP.match(postal_code):
        problems.append(_("A US ZIP code has 5 or 9 digits, like 94110 or 94110-1234."))
    return problems


def normalise_postal_code(postal_code: str) -> str:
    """A postal code as printed: a 9-digit US ZIP gets its hyphen."""
    code = postal_code.strip().upper()
    if re.fullmatch(r"\d{9}", code):
        return f"{code[:5]}-{code[5:]}"
    return code
