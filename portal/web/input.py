"""What a request must be before any view reads it, and the bounds of the numbers and dates a
URL or a filter may carry.

One check at the edge rather than a check in each view: a control character or a repeated field
is refused the same way on every route, before a service or the database sees it.
"""

from __future__ import annotations

import re
from datetime import date

from flask import Flask, request
from flask_babel import lazy_gettext as _l
from werkzeug.exceptions import BadRequest
from werkzeug.routing import IntegerConverter

# No path segment, query value or header takes a control character. PostgreSQL cannot store a
# NUL at all (psycopg refuses it, which was a 500), and the others only ever arrive from
# scripts probing for a parser that treats them specially.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Form values are typed text: a tab and line breaks belong to a message or a notice in Markdown;
# the other controls do not (single-line fields have their own rules in their forms).
_FORM_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# RFC 9110 allows no control but HTAB in a field value; the User-Agent is stored with sessions.
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Fields a form or filter may send more than once. None does today: every field is single, and
# a repeated one is refused instead of reading the first (parameter pollution: a proxy, a WAF
# and the portal must never disagree about which value counts).
MULTI_VALUED: frozenset[str] = frozenset()

# The largest value of an INTEGER column (PostgreSQL's 32 bits, every id in the portal).
INTEGER_MAX = 2**31 - 1

# The dates a person may give. Python stops at 9999-12-31, so a date near the end of its range
# cannot take the day after (a search "until" a day) or a deadline; no breach, notice or
# search falls outside these years anyway.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)
DAY_EXPECTED = _l("Give a date like 2026-11-20, between the years 1900 and 2999.")


class BadInput(BadRequest):
    """A request no field of the portal accepts; the description says why, for a person."""


CONTROL_REFUSED = _l(
    "Something you sent contains an invisible control character that we cannot accept. "
    "Please type it again without it."
)
REPEAT_REFUSED = _l(
    "A field was sent more than once. Please go back, reload the page and send the form again."
)


def _has_control(text: str, pattern: re.Pattern = _CONTROL) -> bool:
    return pattern.search(text) is not None


def check_request() -> None:
    """Refuse, with a 400 that names the reason, a request carrying a control character in its
    path, query, form or headers, or a single-valued field more than once."""
    if _has_control(request.path):
        raise BadInput(CONTROL_REFUSED)
    fields = [(request.args, _CONTROL)]
    # Only a form body is read here. Any other body (a browser's CSP report, say) is left to its
    # view, unread: reading it now would fix its size limit before the view can lower it.
    if request.mimetype in _FORM_TYPES:
        fields.append((request.form, _FORM_CONTROL))
    for values, pattern in fields:
        for key, given in values.lists():
            if len(given) > 1 and key not in MULTI_VALUED:
                raise BadInput(REPEAT_REFUSED)
            if _has_control(key) or any(_has_control(value, pattern) for value in given):
                raise BadInput(CONTROL_REFUSED)
    if request.mimetype == "multipart/form-data":
        for key, given in request.files.lists():
            if len(given) > 1 and key not in MULTI_VALUED:
                raise BadInput(REPEAT_REFUSED)
    if any(_has_control(value, _HEADER_CONTROL) for _key, value in request.headers.items()):
        raise BadInput(CONTROL_REFUSED)


class BoundedInteger(IntegerConverter):
    """`<int:...>` as the database can hold it: a number past an INTEGER column does not name
    any row, so it is a 404, not a query PostgreSQL refuses with a 500."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", INTEGER_MAX)  # a rule may still ask for a smaller bound
        super().__init__(map, *args, **kwargs)


def whole_number(text: str | None, *, low: int, high: int) -> int | None:
    """The whole number in text within [low, high]; None when empty; ValueError otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    # Refused before int() reads it: a long run of digits costs time to convert (Python refuses
    # more than 4300 of them with a ValueError anyway).
    if len(text) > len(str(high)) + 1:
        raise ValueError(text)
    value = int(text)
    if not low <= value <= high:
        raise ValueError(text)
    return value


def day(text: str | None) -> date | None:
    """The date in text (YYYY-MM-DD) within the portal's years; None when empty; ValueError
    otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    value = date.fromisoformat(text)
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise ValueError(text)
    return value


def init_app(app: Flask) -> None:
    """Bounded integers in every URL; the edge check before anything reads the request."""
    # Replaces Werkzeug's own `int`, so no route (today's or a future one) can forget the bound.
    app.url_map.converters["int"] = BoundedInteger
    app.before_request(check_request)
