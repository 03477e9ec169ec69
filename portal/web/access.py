"""Who may use a route. Every view declares it; an undeclared view is refused (deny by default)."""

from __future__ import annotations

from collections.abc import Callable

PUBLIC = "public"
CUSTOMER = "customer"
DEVELOPMENT = "development"


def _declare(level: str) -> Callable:
    def decorate(view: Callable) -> Callable:
        view.access = level
        return view

    return decorate


# Anyone, signed in or not.
public = _declare(PUBLIC)
# A customer with a live session (verified with a one-time code); others are sent to sign in.
customer = _declare(CUSTOMER)
# Only when PORTAL_ENV=development; a 404 everywhere else, as if the route did not exist.
development_only = _declare(DEVELOPMENT)


def access_of(view: Callable | None) -> str | None:
    """The declared access level of a view function, or None when it declares none."""
    return getattr(view, "access", None)
