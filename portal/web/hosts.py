"""Two hosts, when PORTAL_STAFF_BASE_URL names one: staff and admin pages answer only there, the
customer's pages only on the public host.

The staff host can then be closed to the internet at the proxy (docs/deploy.md), and its cookies
are its own: a browser never sends them to the public host, nor the customer's to the staff one.
Without a staff host (development, or PORTAL_STAFF_SAME_HOST=1) every route answers everywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, abort, current_app, redirect, request, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.exceptions import SecurityError

# The blueprints of the staff side: every /staff and /admin route.
STAFF_BLUEPRINTS = frozenset({"staff", "admin"})
# What both hosts serve: the shared stylesheet, scripts and icons; the health and readiness
# checks (each host's proxy probes its own); CSP reports, which browsers post from staff pages
# too; and the language switch, which is in every page's footer, staff pages included.
SHARED_ENDPOINTS = frozenset(
    {"static", "public.health", "public.ready", "public.csp_report", "customer.language"}
)


def staff_host() -> str | None:
    """The staff host's name when staff have their own host, else None."""
    return current_app.config.get("STAFF_HOST")


def on_staff_host() -> bool:
    """This request came to the staff host (always False when there is none)."""
    host = staff_host()
    if host is None:
        return False
    try:
        name = request.host
    except SecurityError:
        return False  # an untrusted Host is refused with 400; its error page is no staff page
    # request.host may carry a port, and IPv6 literals come in brackets: compare the name alone.
    return urlsplit(f"//{name}").hostname == host


def is_staff_side(endpoint: str | None) -> bool:
    """A route of the staff side (/staff, /admin)."""
    return bool(endpoint) and endpoint.split(".", 1)[0] in STAFF_BLUEPRINTS


def keep_to_its_host():
    """Answer 404 for a staff route on any other host and a customer route on the staff host.

    Runs before the CSRF check and before anyone's sign-in is looked up, so a request to the
    wrong host learns nothing (not even that the route exists) and touches nothing.
    """
    if staff_host() is None or request.endpoint is None:
        return None  # one host for everything; or routing answers 404/405 anyway
    if request.endpoint in SHARED_ENDPOINTS:
        return None
    staff_here = on_staff_host()
    if is_staff_side(request.endpoint) == staff_here:
        return None
    if staff_here and request.endpoint == "public.index" and request.method in ("GET", "HEAD"):
        # Someone typed the staff host's bare name: bring them to the staff pages' door.
        return redirect(url_for("staff.queue"))
    abort(404)


def customer_url(endpoint: str, **values) -> str:
    """A link to a customer page (a public incident page, say) from anywhere: on the staff host
    it must name the public origin, since the staff host does not serve it."""
    path = url_for(endpoint, **values)
    if staff_host() is None:
        return path
    return current_app.config["BASE_URL"] + path


def home_url() -> str:
    """Where the header's name links: the staff pages on the staff host, else the front page."""
    return url_for("staff.queue") if on_staff_host() else url_for("public.index")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, SameSite=Strict on the staff host.

    The staff host's session holds its CSRF token and language only, and staff never need to
    arrive from another site already carrying it; customers do (a notice's link opens from a mail
    client), so the public host keeps the configured Lax.
    """

    def get_cookie_samesite(self, app: Flask) -> str | None:
        if on_staff_host():
            return "Strict"
        return super().get_cookie_samesite(app)


def init_app(app: Flask) -> None:
    """Keep each side to its host, and give templates the links that cross between them."""
    app.session_interface = SessionInterface()
    app.before_request(keep_to_its_host)
    app.jinja_env.globals.update(customer_url=customer_url, home_url=home_url)
