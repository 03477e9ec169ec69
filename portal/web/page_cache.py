"""The public pages, rendered once per language for a few seconds rather than once per request.

On notice day most requests are for the front page and the incident's public page, and they are
the same for every visitor who is not signed in: only the CSP nonce and the CSRF token differ
from one response to the next. Each process keeps such a page's HTML with markers where those two
go, and fills them in for every response, so the nonce is never reused and every visitor gets
their own token (portal/web/security.py, Flask-WTF).

A page is taken from the cache only when it cannot hold anything of this visitor's: nobody is
signed in, no message is flashed to them, and their session holds no more than the token and a
language (a session that names the notice they came from shows that incident's helpline, so it
is rendered for them). The address has no query string (the language switch returns to it), so
the cache holds at most a page per language, host and public address.

A commit that changes an incident or an update (an edited section, a published update or
correction, a withdrawn incident) empties this process's cache at once, so whoever made the
change sees it on their next look. Other processes keep their copy until it is
PORTAL_PAGE_CACHE_SECONDS old (5 by default; 0 turns the cache off): that is how long a change
can take to reach every visitor (docs/deploy.md). A newly announced incident (its first notices
queued, by a job in another process) reaches the front page within those seconds too.
Ages are measured on the monotonic clock: a wall clock stepped back must not keep a withdrawn
incident's page alive.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from flask import current_app, g, has_app_context, render_template, request, session
from flask_babel import get_timezone
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.i18n import page_locale
from portal.models import Approval, Incident, IncidentUpdate, RemediationAction
from portal.web.hosts import on_staff_host
from portal.web.security import csp_nonce

# Only these may be in the session of a visitor who is served a shared page (see above).
_SHARED_SESSION_KEYS = frozenset({"csrf_token", "lang", "lang_default"})
# Beyond this many pages the oldest is dropped (slugs are the only open-ended part of a key).
_MAX_PAGES = 512
_PORT = re.compile(r":\d+$")
# The clock a page's age is read on (a test moves it).
monotonic = time.monotonic
_EXTENSION = "portal.page_cache"
_FRAGMENTS = "portal.fragments"
# Fragments come from the release's own files (the guidance's steps), so a process has a bounded
# number of them; a ceiling all the same.
_MAX_FRAGMENTS = 4096
_CHANGED = "portal.public_pages_changed"  # session.info: this transaction changed what they show
_PARTS = "portal.shared_parts"
_GENERATION_AT_START = "portal.parts_generation"  # in request.environ: one request's own
# What the cached pages and parts show of the database: an incident, its published updates, its
# remediation actions and their approvals (an approval is what makes an action public).
_SHOWN = (Incident, IncidentUpdate, RemediationAction, Approval)
_SHOWN_TABLES = frozenset(model.__tablename__ for model in _SHOWN)


class PageCache:
    def __init__(self, seconds: float) -> None:
        self.lifetime = seconds
        # Markers no visitor or admin can guess, so none can be written into a page's text.
        self.nonce_mark = "nonce" + secrets.token_hex(12)
        self.token_mark = "token" + secrets.token_hex(12)
        self.pages: dict[tuple, tuple[float, str]] = {}
        # Counts the clearings: a page whose rendering began before one (another thread's request
        # while a change was committed) is served, but not kept.
        self.generation = 0

    def clear(self) -> None:
        self.generation += 1
        self.pages.clear()

    def shared(self, key: tuple, render: Callable[[], str]) -> str:
        now = monotonic()
        kept = self.pages.get(key)
        if kept is None or kept[0] <= now:
            generation = self.generation
            kept = (now + self.lifetime, self._render_shared(render))
            if generation == self.generation:
                self.pages.pop(key, None)
                if len(self.pages) >= _MAX_PAGES:
                    self.pages.pop(next(iter(self.pages)), None)  # the oldest
                self.pages[key] = kept
        return (
            kept[1].replace(self.nonce_mark, g.csp_nonce).replace(self.token_mark, generate_csrf())
        )

    def _render_shared(self, render: Callable[[], str]) -> str:
        """Render with the markers in place of this response's nonce and token."""
        nonce = g.csp_nonce
        g.csp_nonce, g.csrf_token = self.nonce_mark, self.token_mark
        try:
            return render()
        finally:
            g.csp_nonce = nonce
            g.pop("csrf_token", None)


def _cacheable() -> bool:
    return (
        request.method in ("GET", "HEAD")
        and not request.query_string
        and not current_user.is_authenticated
        and session.keys() <= _SHARED_SESSION_KEYS
    )


def render_public(template: str, values: Callable[[], dict]) -> str:
    """`render_template(template, **values())`, from the cache when the visitor allows it.

    `values` is called only when the page is rendered, so a page served from the cache does not
    read the database (and a 404 it raises is never kept)."""

    def render() -> str:
        return render_template(template, **values())

    cache: PageCache | None = current_app.extensions.get(_EXTENSION)
    if cache is None or not _cacheable():
        return render()
    # The host without its port: the same page whatever port a request names (no key per port).
    host = _PORT.sub("", request.host)
    return cache.shared((template, page_locale(), host, request.path), render)


class Fragments:
    def __init__(self) -> None:
        # As PageCache's: nobody can guess them, so none can be written into a page's text.
        self.token_mark = "token" + secrets.token_hex(12)
        self.nonce_mark = "nonce" + secrets.token_hex(12)
        self.fill_mark = "fill" + secrets.token_hex(12)
        self.parts: dict[tuple, str] = {}


def _kept_fragment(template: str, full_key: tuple, context: dict, fill: dict[str, str]) -> str:
    """The fragment kept for `full_key`, rendered now if it is not kept yet, with this
    response's CSRF token, CSP nonce and `fill` values (escaped, as Jinja would) in place of
    their markers. Nothing else of the request may be in a fragment."""
    fragments: Fragments = current_app.extensions[_FRAGMENTS]
    html = fragments.parts.get(full_key)
    if html is None:
        token = g.pop("csrf_token", None)
        nonce = csp_nonce()
        g.csrf_token, g.csp_nonce = fragments.token_mark, fragments.nonce_mark
        try:
            html = render_template(
                template, **context, **{name: fragments.fill_mark + name for name in fill}
            )
        finally:
            g.pop("csrf_token", None)
            g.csp_nonce = nonce
            if token is not None:
                g.csrf_token = token
        if len(fragments.parts) >= _MAX_FRAGMENTS:
            fragments.parts.clear()
        fragments.parts[full_key] = html
    if fragments.token_mark in html:
        # This response's token: Flask-WTF keeps it on g once made (generate_csrf makes it).
        html = html.replace(fragments.token_mark, g.get("csrf_token") or generate_csrf())
    if fragments.nonce_mark in html:
        html = html.replace(fragments.nonce_mark, g.get("csp_nonce") or csp_nonce())
    for name, value in fill.items():
        html = html.replace(fragments.fill_mark + name, str(escape(value)))
    return html


def fragment(template: str, key: tuple, **context) -> Markup:
    """`template` rendered with `context`, once per language for each `key` in this process.

    For a part of a personal page that is the same for everyone shown it with the same key (a
    step of the guidance, done or not: its text comes from the release's files, never from the
    database), so that a plan of sixteen steps is not sixteen renderings. The part's CSRF token is
    this response's, filled in each time; nothing else of the request may be in it."""
    html = _kept_fragment(template, (template, page_locale(), *key), context, {})
    return Markup(html)  # noqa: S704  # nosec B704: our template's own escaped output, and a token


def fragments_of(template: str, keyed: list[tuple[tuple, dict]]) -> Markup:
    """`fragment(template, key, **context)` for each (key, context), one after the other: a
    plan's steps in one call, its language and token looked up once."""
    language = page_locale()
    html = "".join(
        _kept_fragment(template, (template, language, *key), context, {}) for key, context in keyed
    )
    return Markup(html)  # noqa: S704  # nosec B704: our template's own escaped output, and a token


def frame(template: str, **fill: str) -> Markup:
    """A piece of every page's frame (templates/_frame_*.html: the head's links and scripts,
    the header, the sign-out button, the footer's language switch), rendered once per language
    and host in this process.

    A frame piece shows only the release's own text and the organisation's settings: nothing of
    the reader's, nothing from the database. What differs between responses is filled in each
    time: the CSP nonce, the CSRF token and the `fill` values (such as the address the language
    switch returns to), which are never part of the key, so no path or token is kept. The key
    holds everything else a piece can differ by: the language, whether this is the staff host
    (where the name in the header links) and the application's root (every link's start)."""
    full_key = ("frame", template, page_locale(), on_staff_host(), request.script_root)
    html = _kept_fragment(template, full_key, {}, fill)
    return Markup(html)  # noqa: S704  # nosec B704: our template's own escaped output, and fill-ins escaped


class SharedParts:
    """Parts of personal pages that are the same for every reader with the same key: an
    incident's own sections on the dashboard (what happened, what we are doing, its updates)."""

    def __init__(self, seconds: float) -> None:
        self.lifetime = seconds
        self.nonce_mark = "nonce" + secrets.token_hex(12)  # as PageCache's: nobody can guess them
        self.token_mark = "token" + secrets.token_hex(12)
        self.parts: dict[tuple, tuple[float, str]] = {}
        self.generation = 0  # as PageCache's: a part rendered across a clearing is not kept

    def clear(self) -> None:
        self.generation += 1
        self.parts.clear()


def shared_part(template: str, key: tuple, values: Callable[[], dict]) -> Markup:
    """`template` rendered with `values()`, kept for PORTAL_PAGE_CACHE_SECONDS per `key` and
    language in this process.

    Only for a part of a personal page that holds nothing of the person: `key` must name
    everything else the part shows that can differ between readers (the incident and its
    content, anything that depends on where the reader lives). What the key does not hold (an
    incident's updates and remediation actions) is kept as long as the public pages are: a
    commit that changes it empties this process's parts at once, other processes' within
    PORTAL_PAGE_CACHE_SECONDS. `values` is called only when the part is rendered, so a part
    taken from the cache costs no query. The response's own CSP nonce and CSRF token are
    filled in each time, as on the public pages.

    On the dashboard this saves the rendering of an incident's Markdown sections and updates
    and two of its five queries (updates, remediation actions): 4.36 -> 2.84 ms CPU a request in
    process, measured over 300 requests of the test client on PostgreSQL."""
    parts: SharedParts | None = current_app.extensions.get(_PARTS)
    if parts is None:  # PORTAL_PAGE_CACHE_SECONDS=0: no cache at all
        return Markup(render_template(template, **values()))  # noqa: S704  # nosec B704: our template's escaped output
    # The reader's clock too: a part may show a time (an update's), named in their zone.
    full_key = (template, page_locale(), str(get_timezone()), *key)
    now = monotonic()
    kept = parts.parts.get(full_key)
    if kept is None or kept[0] <= now:
        # The generation as the request began, not as this part began: the updates and actions
        # a page's parts show are read once for all its incidents (and on SQLite as of the
        # request's first read), so a part rendered after a clearing may show what was read
        # before it, such as a text legal has just withdrawn, and must not be kept.
        generation = request.environ.get(_GENERATION_AT_START, parts.generation)
        nonce = g.csp_nonce
        token = g.pop("csrf_token", None)
        g.csp_nonce, g.csrf_token = parts.nonce_mark, parts.token_mark
        try:
            html = render_template(template, **values())
        finally:
            g.csp_nonce = nonce
            g.pop("csrf_token", None)
            if token is not None:
                g.csrf_token = token
        kept = (now + parts.lifetime, html)
        if generation == parts.generation:
            if len(parts.parts) >= _MAX_FRAGMENTS:
                parts.parts.clear()
            parts.parts[full_key] = kept
    html = kept[1]
    if parts.nonce_mark in html:
        html = html.replace(parts.nonce_mark, g.csp_nonce)
    if parts.token_mark in html:
        html = html.replace(parts.token_mark, g.get("csrf_token") or generate_csrf())
    return Markup(html)  # noqa: S704  # nosec B704: our template's own escaped output, and a token


def init_app(app) -> None:
    app.extensions[_FRAGMENTS] = Fragments()
    app.jinja_env.globals["frame"] = frame
    seconds = float(app.config.get("PAGE_CACHE_SECONDS", 0))
    if seconds > 0:
        app.extensions[_EXTENSION] = PageCache(seconds)
        app.extensions[_PARTS] = SharedParts(seconds)
        # First of all the request's hooks: before the session's query reads anything.
        app.before_request_funcs.setdefault(None, []).insert(0, _note_generation)


def _note_generation() -> None:
    request.environ[_GENERATION_AT_START] = current_app.extensions[_PARTS].generation


@event.listens_for(db.session, "after_flush")
def _note_change(session: Session, _context) -> None:
    if any(isinstance(o, _SHOWN) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


@event.listens_for(db.session, "do_orm_execute")
def _note_statement(state) -> None:
    if (
        state.is_update or state.is_delete or state.is_insert
    ) and state.statement.table.name in _SHOWN_TABLES:
        state.session.info[_CHANGED] = True


@event.listens_for(db.session, "after_commit")
def _forget(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        for name in (_EXTENSION, _PARTS):
            cache = current_app.extensions.get(name)
            if cache is not None:
                cache.clear()
    # A flag left by a change that was rolled back costs one needless clearing at the next commit:
    # cheaper to bear than to follow savepoints to tell which rollback undid it.
