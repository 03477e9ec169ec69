"""Who may use a route. Every view declares it; an undeclared view is refused (deny by default)."""

from __future__ import annotations

from collections.abc import Callable

PUBLIC = "public"
CUSTOMER = "customer"
STAFF = "staff"
STAFF_PENDING = "staff_pending"
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


# A staff member with both factors done, in one of these roles (others get 403).
def staff(*roles: str) -> Callable:
    def decorate(view: Callable) -> Callable:
        view.access = STAFF
        view.roles = roles
        return view

    return decorate


# What an admin who must use a security key (PORTAL_ADMIN_SECURITY_KEY_REQUIRED) and has none
# may reach after signing in with the app: the pages to add a key (and to prove it is them for
# that), nothing else.
KEY_SETUP_ENDPOINTS = frozenset(
    {"staff.security_key_list", "staff.security_key_new", "staff.reauth", "staff.logout"}
)

# A staff member half signed in (password done, second factor pending): only the code pages.
staff_pending = _declare(STAFF_PENDING)
# Only when PORTAL_ENV=development; a 404 everywhere else, as if the route did not exist.
development_only = _declare(DEVELOPMENT)


def access_of(view: Callable | None) -> str | None:
    """The declared access level of a view function, or None when it declares none."""
    return getattr(view, "access", None)
