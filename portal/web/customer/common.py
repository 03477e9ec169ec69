"""What the customer's journeys share: the keys of their session, htmx answers, the language."""

from __future__ import annotations

from flask import make_response, redirect, request
from flask_babel import get_locale

CHALLENGE_KEY = "challenge"  # the pending challenge this browser may answer
NEXT_KEY = "next"  # where to return after a step-up
SUPPORT_KEY = "notice"  # the notice whose incident's helpline a stuck person is shown
LANG_KEY = "lang"  # the language the person picked with the switch (a choice, kept at sign-in)
DEFAULT_LANG_KEY = "lang_default"  # the language of their notice or record (not a choice)


def is_htmx() -> bool:
    """An htmx request for a fragment (not a history restore, which wants the whole page)."""
    return "HX-Request" in request.headers and "HX-History-Restore-Request" not in request.headers


def hx_redirect(url: str):
    """Go to `url`: htmx follows the HX-Redirect header; a plain form post gets a redirect."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url)


def page_language() -> str:
    """The language this page is shown in."""
    return str(get_locale())
