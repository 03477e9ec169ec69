"""Per-request security: request ids, deny-by-default access, and the response headers."""

from __future__ import annotations

import copy
import functools
import logging
import re
import secrets
from collections.abc import Mapping
from numbers import Number

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask_babel import refresh
from flask_login import current_user

from portal.models.audit import staff_actor
from portal.web.access import (
    CUSTOMER,
    DEVELOPMENT,
    KEY_SETUP_ENDPOINTS,
    PUBLIC,
    STAFF,
    STAFF_PENDING,
    access_of,
)

log = logging.getLogger(__name__)


def csp_nonce() -> str:
    """The nonce for this response's scripts; fresh for every response."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(18)
    return g.csp_nonce


def _before_request():
    # g.request_id is set before any other hook (portal/web/logs.py), CSRF's refusals included.
    g.csp_nonce = secrets.token_urlsafe(18)  # set here, so never reused across requests
    # Flask-WTF caches the CSRF token on g; g lives as long as the app context, which a caller
    # (a test, a CLI shell) may hold across requests. The token must come from this session.
    g.pop("csrf_token", None)
    refresh()  # likewise Flask-Babel's cached locale: pick it again for this request
    if request.endpoint is None:
        return None  # routing will answer 404 or 405
    if request.endpoint == "static":
        return None
    level = access_of(current_app.view_functions.get(request.endpoint))
    if level == PUBLIC:
        return None
    if level == CUSTOMER:
        # current_user comes from the customer's own session id only (portal/web/identity.py).
        if current_user.kind != CUSTOMER:
            session.pop("sid", None)
            return redirect(url_for("customer.signed_out"))
        refresh()  # the customer's own language from here on
        return None
    if level in (STAFF, STAFF_PENDING):
        return _staff_gate(level)
    if level == DEVELOPMENT:
        if current_app.config["PORTAL_ENV"] == "development":
            return None
        abort(404)  # outside development the route does not exist
    # A view that does not say who may use it is a mistake; refuse rather than guess.
    log.error("refused %s: the view declares no access", request.endpoint)
    abort(403)


# Methods that change something; a browser marks a request another site's page made with
# `Sec-Fetch-Site: cross-site`.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The one route another origin's page may post to: browsers send CSP reports from wherever the
# page was framed or loaded, and the route changes nothing but a counter.
CSP_REPORT_ENDPOINT = "public.csp_report"


def refuse_cross_site():
    """Refuse a write another site's page made (Fetch Metadata), before anything reads it.

    A second wall behind CSRF tokens and SameSite cookies: a forged form or fetch from another
    site never reaches a view. `same-origin`, `same-site`, `none` (typed or bookmarked) and an
    absent header (browsers before 2020) pass, so nobody is locked out; only what the browser
    itself says came from another site is refused.
    """
    if request.method not in _WRITES:
        return None
    if request.headers.get("Sec-Fetch-Site", "").strip().lower() != "cross-site":
        return None
    if request.endpoint == CSP_REPORT_ENDPOINT:
        return None
    # The endpoint's name only: the path may hold a link's token.
    log.warning("refused a cross-site %s to %s", request.method, request.endpoint or "-")
    abort(403)


def _staff_gate(level: str):
    """Staff routes read only the staff cookie: a customer session never opens them."""
    from portal.services import audit

    if current_user.kind != STAFF:
        return redirect(url_for("staff.login"))
    if level == STAFF_PENDING:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("staff.code"))  # half signed in: the code page, nothing else
    from portal.services import staff as staff_service

    if request.endpoint not in KEY_SETUP_ENDPOINTS and staff_service.needs_security_key(
        current_user.staff
    ):
        # An admin who must use a security key signed in with the app: until they add a key,
        # the page to add one is all they reach (OTP-03: not TOTP only for admins).
        return redirect(url_for("staff.security_key_list"))
    if not _roles_open(current_app.view_functions[request.endpoint]):
        from portal.models import AuditEvent
        from portal.unit_of_work import write_is_the_point

        write_is_the_point(AuditEvent)  # a refusal is recorded, on a GET too; the edge commits it
        audit.record(
            "authorization.denied",
            actor=staff_actor(current_user.staff),
            subject_type="route",
            subject_id=request.endpoint or "",
            outcome="failure",
        )
        abort(403)
    return None


def _roles_open(view) -> bool:
    """Whether the signed-in member holds one of the roles `view` names."""
    roles = getattr(view, "roles", ())
    # Any one of the listed roles lets the member in; holding admin implies no other role.
    return any(current_user.staff.has_role(r) for r in roles)


def staff_may(endpoint: str) -> bool:
    """Whether the signed-in member's roles open `endpoint`: a page offers a link or a button
    only when it answers, never a "403 Forbidden" (the gate above still decides)."""
    view = current_app.view_functions.get(endpoint)
    if view is None or current_user.kind != STAFF or not current_user.is_authenticated:
        return False
    if access_of(view) != STAFF:
        return True
    return _roles_open(view)


def _after_request(response):
    headers = response.headers
    fixed = _fixed_headers(current_app._get_current_object(), _csp_report_url())
    # Only the names already set are looked up once: a view's own header wins (setdefault), and
    # werkzeug's one-by-one lookups cost more than the rest of this hook.
    present = {name.lower() for name, _value in headers.items()}
    if "content-security-policy" not in present:
        # The nonce is fresh for every response; the rest of the policy is the same for all.
        headers["Content-Security-Policy"] = fixed.csp_head + csp_nonce() + fixed.csp_tail
        if "reporting-endpoints" not in present:
            headers["Reporting-Endpoints"] = fixed.reporting
    headers.extend([(name, value) for name, value in fixed.always if name.lower() not in present])
    headers["X-Request-ID"] = g.get("request_id", "")
    if request.endpoint != "static":
        # Pages may carry personal data: no copy in any cache, shared or the browser's.
        if "cache-control" not in present:
            headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")
    return response


class _FixedHeaders:
    """The headers every response of one app and host gets, worked out once."""

    def __init__(self, app: Flask, report_url: str) -> None:
        self.csp_head = "default-src 'self'; script-src 'nonce-"
        self.csp_tail = (
            "' 'strict-dynamic'; "
            "style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'self'; "
            # Violations are reported to us (report-to for current browsers, report-uri for
            # the rest): an injection attempt or a broken page shows up in the counts.
            f"report-uri {report_url}; report-to csp"
        )
        self.reporting = f'csp="{report_url}"'
        always = [
            ("X-Content-Type-Options", "nosniff"),
            # Not no-referrer: Flask-WTF's strict referrer check on HTTPS needs our own origin.
            ("Referrer-Policy", "strict-origin-when-cross-origin"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
            ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
            ("X-Frame-Options", "DENY"),
        ]
        if app.config["BASE_URL"].startswith("https://"):
            always.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
        self.always = tuple(always)


def _fixed_headers(app: Flask, report_url: str) -> _FixedHeaders:
    """This app's fixed headers for the host whose report address is `report_url`."""
    kept = app.extensions.setdefault("portal.fixed_headers", {})
    fixed = kept.get(report_url)
    if fixed is None:
        fixed = kept[report_url] = _FixedHeaders(app, report_url)
    return fixed


def _csp_report_url() -> str:
    """Where browsers send CSP reports: built from BASE_URL (STAFF_BASE_URL on the staff host,
    whose pages may not reach the public one), never from the request's Host."""
    from portal.web.hosts import on_staff_host

    origin = current_app.config["STAFF_BASE_URL" if on_staff_host() else "BASE_URL"]
    return origin.rstrip("/") + "/csp-report"


def _token_paths() -> re.Pattern:
    """Every path a signed link opens (one per purpose in the token table), with its token."""
    from portal.services.tokens import KINDS

    # Also percent-encoded, as a path inside a query string (`?next=%2Fa%2F...`) arrives.
    prefixes = "|".join(
        re.escape(kind.path).replace("/", "(?:/|%2[Ff])") for kind in KINDS.values()
    )
    return re.compile(rf"({prefixes})[^\s\"'?#&;<>]+")


# What a log line must never keep. A link's token is a key to someone's notice, sign-in, set-up
# or conversation with support; the staff cookie is a live session and the customer's signed
# cookie holds a session id (wherever their values turn up: a header echoed in a message, say).
_TOKEN_PATH = _token_paths()
_OUR_COOKIES = re.compile(r"(?<![\w-])((?:__Host-)?portal(?:_staff|_remember)?=)[^;\s\"',]+")
# In a cookie header every value goes, ours or not; headers (and their environ names) whose
# whole value is a credential go entirely.
_ANY_COOKIE = re.compile(r"(^|;)(\s*[^=;\s]+=)[^;]*")
_CREDENTIAL_HEADERS = ("authorization", "csrf", "token", "secret", "api-key", "apikey")


def scrub(text: str) -> str:
    """The text with every link token and portal cookie value replaced by a marker."""
    text = _TOKEN_PATH.sub(r"\1[token]", text)
    return _OUR_COOKIES.sub(r"\1[cookie]", text)


def _scrub_atom(key: str, value):
    """One argument of a log record; `key` names it when the arguments are a mapping, as in
    gunicorn's access log, whose atoms include any request or response header and environ
    variable (`{cookie}i`, `{set-cookie}o`, `{http_cookie}e` ...)."""
    if value is None or isinstance(value, Number):
        return value  # numbers stay numbers: the format may say %d
    # Anything else is logged as its text (gunicorn's environ atoms include objects whose text
    # holds the URL), so it is scrubbed as text.
    text = scrub(value if isinstance(value, str) else str(value))
    header = key.lower().strip("{}").rsplit("}", 1)[0].replace("_", "-").removeprefix("http-")
    if "set-cookie" in header:
        return _ANY_COOKIE.sub(r"\1\2[cookie]", text, count=1)  # the rest are attributes
    if "cookie" in header:
        return _ANY_COOKIE.sub(r"\1\2[cookie]", text)  # every cookie, ours or not
    if any(word in header for word in _CREDENTIAL_HEADERS):
        return "[redacted]"
    return text


_FORMAT_NAME = re.compile(r"%\(([^)]*)\)")


@functools.lru_cache(maxsize=64)
def _format_names(msg: str) -> tuple[str, ...]:
    """The mapping keys a %-format names (`%(t)s`, `%({x-request-id}o)s` ...)."""
    return tuple(dict.fromkeys(_FORMAT_NAME.findall(msg.replace("%%", ""))))


class ScrubTokens(logging.Filter):
    """No log line keeps a secret: a link's token is a key to someone's notice, sign-in,
    set-up or conversation with support, and a cookie is a live session.

    Arguments keep their shape: a tuple stays a tuple, and a mapping stays the same mapping
    type (gunicorn's access logger passes its atoms as a dict whose missing keys read "-"),
    or the line would fail to format and Python would print the raw arguments instead.

    Of a mapping, only the atoms the line's format names are kept (scrubbed): gunicorn passes
    every request and response header and environ variable, some fifty atoms, for the five or
    six its access log prints, and scrubbing them all cost more CPU than the rest of a page's
    hooks. What the format does not name is dropped: nothing prints it, and a secret not kept
    cannot leak through a later handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        record.msg = scrub(msg)
        args = record.args
        if isinstance(args, Mapping):
            names = _format_names(msg)
            try:
                # The mapping's own lookup, so that gunicorn's "-" for an absent atom stays.
                values = {key: _scrub_atom(key, args[key]) for key in names}
            except KeyError:  # a plain dict without an atom the format names: scrub them all
                values = {key: _scrub_atom(str(key), value) for key, value in args.items()}
            try:
                scrubbed = copy.copy(args)
                scrubbed.clear()
                scrubbed.update(values)
            except (AttributeError, TypeError):  # a read-only mapping: a plain dict will do
                scrubbed = values
            record.args = scrubbed
        elif isinstance(args, tuple):
            record.args = tuple(_scrub_atom("", value) for value in args)
        return True


def _service_unavailable(_error):
    # The rate-limit store is down: refuse rather than run without limits (fail closed).
    log.error("rate-limit store unreachable (request %s)", g.get("request_id", ""))
    from portal.web.errors import render_error

    return render_error(503)


def register(app: Flask) -> None:
    import redis

    # The servers' own loggers: the development server's request lines, and gunicorn's access
    # log and error log (its debug lines name each request's path).
    for name in ("werkzeug", "gunicorn.access", "gunicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubTokens) for f in logger.filters):
            logger.addFilter(ScrubTokens())
    app.register_error_handler(redis.exceptions.ConnectionError, _service_unavailable)
    app.register_error_handler(redis.exceptions.TimeoutError, _service_unavailable)
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.jinja_env.globals["staff_may"] = staff_may
