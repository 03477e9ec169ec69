"""Places of residence: ISO 3166 codes as the portal stores them ("US-CA", "DE"), and groups."""

from __future__ import annotations

import functools
import re

from babel import Locale

# A customer's region is an ISO 3166-2 subdivision ("US-CA") or an ISO 3166-1 country ("DE").
_REGION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")

# Where a reader with no region on file is taken to live. The organisations that run this portal
# notify under US law (the notice follows the California model), so a reader whose region the
# import left empty gets the US guidance rather than none; a reader known to live elsewhere never
# gets US-only steps.
HOME_COUNTRY = "US"

# EU and EEA countries: GDPR reaches residents of these.
EU_EEA = frozenset(
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
    }
)  # fmt: skip

# Named groups a library entry may use instead of listing countries.
GROUPS = {"EU": EU_EEA}

# The US states, the District of Columbia and the territories, as ISO 3166-2 subdivisions.
US_SUBDIVISIONS = frozenset(
    {
        "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA",
        "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ",
        "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT",
        "VA", "WA", "WV", "WI", "WY", "DC", "PR", "GU", "VI", "AS", "MP", "UM",
    }
)  # fmt: skip


# ISO 3166-1 countries as CLDR (through Babel, already a dependency) knows them; "ZZ" is CLDR's
# "unknown region", not a place.
COUNTRIES = frozenset(
    place for place in Locale("en").territories if len(place) == 2 and place.isalpha()
) - {"ZZ"}


def normalize(region: str | None) -> str:
    """The region as stored: upper case, no spaces; "" when unknown."""
    return (region or "").strip().upper()


def is_valid(region: str) -> bool:
    """A known country, or a well-formed subdivision of one (a US one must be a real one)."""
    if not _REGION.match(region):
        return False
    country, _, sub = region.partition("-")
    if country not in COUNTRIES:
        return False
    return not (country == "US" and sub and sub not in US_SUBDIVISIONS)


def country_of(region: str | None) -> str:
    """The country of a region; the home country when none is known."""
    region = normalize(region)
    return region.split("-")[0] if region else HOME_COUNTRY


def matches(region: str | None, wanted: str) -> bool:
    """Whether a reader living in `region` falls under `wanted` (a country, subdivision or group).

    A reader with no region is treated as living in the home country, but in none of its
    subdivisions: no state's statement is given to someone whose state is unknown.
    """
    region = normalize(region)
    country = country_of(region)
    if wanted in GROUPS:
        return country in GROUPS[wanted]
    if "-" in wanted:
        return region == wanted
    return country == wanted


def within(region: str | None, codes: list[str]) -> bool:
    """Whether a reader living in `region` is inside any of `codes` (no codes: everywhere)."""
    return not codes or any(matches(region, code) for code in codes)


def parse_list(text: str | None) -> list[str]:
    """A comma list of region codes as typed ("us, US-ca"), normalised and without repeats."""
    seen: list[str] = []
    for part in (text or "").split(","):
        code = normalize(part)
        if code and code not in seen:
            seen.append(code)
    return seen


# The clock a reader in each US state, the District and the territories mostly lives on: the
# state's largest zone (a few states span two; a time shown with its zone named, as every time a
# customer reads is, still tells the others which clock it is on).
_US_TIME_ZONES = {
    "America/New_York": (
        "CT", "DE", "DC", "FL", "GA", "IN", "KY", "ME", "MD", "MA", "MI", "NH", "NJ", "NY", "NC",
        "OH", "PA", "RI", "SC", "VT", "VA", "WV",
    ),
    "America/Chicago": (
        "AL", "AR", "IL", "IA", "KS", "LA", "MN", "MS", "MO", "NE", "ND", "OK", "SD", "TN", "TX",
        "WI",
    ),
    "America/Denver": ("CO", "ID", "MT", "NM", "UT", "WY"),
    "America/Phoenix": ("AZ",),
    "America/Los_Angeles": ("CA", "NV", "OR", "WA"),
    "America/Anchorage": ("AK",),
    "Pacific/Honolulu": ("HI",),
    "America/Puerto_Rico": ("PR", "VI"),
    "Pacific/Guam": ("GU", "MP"),
    "Pacific/Pago_Pago": ("AS",),
}  # fmt: skip
US_TIME_ZONE = {state: zone for zone, states in _US_TIME_ZONES.items() for state in states}


def time_zone(region: str | None) -> str:
    """The IANA time zone a reader living in `region` reads times in; "UTC" where that cannot be
    told (no region on file, a country whose clocks differ, the US minor islands)."""
    region = normalize(region)
    country, _, subdivision = region.partition("-")
    if country == "US":
        return US_TIME_ZONE.get(subdivision, "UTC")
    return _country_zone(country) if country else "UTC"


@functools.cache
def _country_zone(country: str) -> str:
    """A country's zone when all its clocks agree, winter and summer (Germany's two zones do;
    Spain's mainland and Canary Islands do not, nor do Brazil's): else UTC, named, rather than a
    wrong guess."""
    from datetime import datetime

    from pytz import country_timezones, timezone  # Flask-Babel's own time zone library

    zones = country_timezones.get(country, ())
    agree = all(
        len({timezone(zone).utcoffset(datetime(2026, month, 1)) for zone in zones}) == 1
        for month in (1, 7)
    )
    return zones[0] if zones and agree else "UTC"
