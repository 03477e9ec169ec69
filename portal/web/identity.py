"""Who is signed in: Flask-Login's `current_user`, resolved from the server-side session rows.

Customers and staff stay apart. A route's access declaration says which kind of person it is
for, and only that kind's own cookie is read: the customer's session id (in the Flask session)
on customer routes, the staff cookie on staff routes, neither anywhere else. So a staff cookie
never makes anyone a customer, nor the reverse.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Request, current_app, g, session
from flask_login import AnonymousUserMixin, UserMixin

from portal.models import Customer, LoginSession, StaffMember, StaffSession
from portal.services import sessions
from portal.services import staff as staff_service
from portal.web.access import CUSTOMER, STAFF, STAFF_PENDING, access_of


class SignedInCustomer(UserMixin):
    """A customer with a live session; `session` is its `LoginSession` row."""

    kind = CUSTOMER

    def __init__(self, row: LoginSession) -> None:
        self.session = row

    @property
    def customer(self) -> Customer:
        return self.session.customer

    def get_id(self) -> str:
        return f"customer:{self.customer.public_id}"

    def is_fresh(self, within: timedelta | None = None) -> bool:
        """Proved with a code within the window (the step-up lifetime unless given)."""
        return sessions.is_fresh(self.session, within)


class SignedInStaff(UserMixin):
    """A staff member's session; `session` is its `StaffSession` row.

    Half signed in (password done, second factor not yet) is not authenticated: the gate lets
    such a session reach only the second-factor pages, and `login_required` would refuse it too.
    """

    kind = STAFF

    def __init__(self, row: StaffSession) -> None:
        self.session = row

    @property
    def is_authenticated(self) -> bool:
        return self.session.mfa_at is not None

    @property
    def staff(self) -> StaffMember:
        return self.session.staff

    @property
    def role(self) -> str:
        return self.staff.role

    def has_role(self, name: str) -> bool:
        return self.staff.has_role(name)

    def get_id(self) -> str:
        return f"staff:{self.staff.public_id}"

    def is_fresh(self, within: timedelta | None = None) -> bool:
        """Password and code given again within the window (five minutes unless given)."""
        return self.is_authenticated and staff_service.is_fresh(self.session, within)


class Nobody(AnonymousUserMixin):
    """No one signed in, or a route that reads no session cookie (public pages)."""

    kind = None
    session = None

    def is_fresh(self, within: timedelta | None = None) -> bool:
        return False


def staff_cookie_name() -> str:
    return (
        "__Host-portal_staff"
        if current_app.config["PORTAL_ENV"] == "production"
        else ("portal_staff")
    )


def staff_device_cookie_name() -> str:
    """The browser's staff device cookie (a known device escapes the account lock, AUTH-07)."""
    return (
        "__Host-portal_staff_device"
        if current_app.config["PORTAL_ENV"] == "production"
        else ("portal_staff_device")
    )


def staff_cookie_attributes() -> dict:
    """How the staff cookie is set, and so how it must be deleted: a browser ignores a deletion
    of a `__Host-` cookie that lacks `Secure` (and one with another path), so sign-out would
    leave the cookie in place."""
    production = current_app.config["PORTAL_ENV"] == "production"
    # Strict: staff never arrive from another site's link already signed in.
    return {"httponly": True, "secure": production, "samesite": "Strict", "path": "/"}


def load_principal(request: Request) -> SignedInCustomer | SignedInStaff | None:
    """Flask-Login's request loader: the live session row named by this route's kind of cookie.

    An unknown, revoked, idle or too old row (and a disabled staff member's) signs nobody in;
    the services that own the rows decide that.
    """
    level = access_of(current_app.view_functions.get(request.endpoint or ""))
    if level == CUSTOMER:
        row = sessions.load_session(session.get("sid"))
        return SignedInCustomer(row) if row is not None else None
    if level in (STAFF, STAFF_PENDING):
        member_row = staff_service.load_session(request.cookies.get(staff_cookie_name()))
        return SignedInStaff(member_row) if member_row is not None else None
    return None


def _forget_previous_user() -> None:
    # Flask-Login keeps current_user on g, and g lives as long as the app context, which a
    # caller (a test, a CLI shell) may hold across requests: resolve it from this request only.
    # Registered before CSRFProtect, whose refusals render pages that read current_user.
    g.pop("_login_user", None)


def init_app(app: Flask) -> None:
    """Bind the LoginManager: our request loader, no remember-me, no session-stored identity."""
    from portal.extensions import login_manager

    login_manager.init_app(app)
    login_manager.request_loader(load_principal)
    login_manager.anonymous_user = Nobody
    # No user_loader: nothing about who is signed in is kept in the Flask session (whose cookie
    # the browser holds), and Flask-Login's remember-me cookie is never set. Its session
    # protection guards that session-stored identity, which we do not use; our rows are rotated
    # on sign-in and password change, and end on timeouts and sign-out.
    login_manager.session_protection = None
    # Flask-Login still reads a remember-me cookie, before our loader, when one arrives: a planted
    # one would sign people out. In production its name is a __Host- one, which no other site
    # (a sibling subdomain, say) can set.
    app.config["REMEMBER_COOKIE_NAME"] = (
        "__Host-portal_remember" if app.config["PORTAL_ENV"] == "production" else "portal_remember"
    )
    app.before_request(_forget_previous_user)
