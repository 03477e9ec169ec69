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

A commit that changes an incident or an update (an edited section, a newly announced incident, a
published update or correction) empties this process's cache at once, so whoever made the change
sees it on their next look. Other processes keep their copy until it is
PORTAL_PAGE_CACHE_SECONDS old (5 by default; 0 turns the cache off): that is how long a change
can take to reach every visitor (docs/deploy.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from flask import current_app, g, has_app_context, render_template, request, session
from flask_babel import get_locale
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal import clock
from portal.extensions import db
from portal.models import Incident, IncidentUpdate

# Only these may be in the session of a visitor who is served a shared page (see above).
_SHARED_SESSION_KEYS = frozenset({"csrf_token", "lang", "lang_default"})
# Beyond this many pages a process starts again (slugs are the only open-ended part of a key).
_MAX_PAGES = 512
_EXTENSION = "portal.page_cache"
_FRAGMENTS = "portal.fragments"
# Fragments come from the release's own files (the guidance's steps), so a process has a bounded
# number of them; a ceiling all the same.
_MAX_FRAGMENTS = 4096
_CHANGED = "portal.public_pages_changed"  # session.info: this transaction changed what they show
_SHOWN = (Incident, IncidentUpdate)


class PageCache:
    def __init__(self, seconds: float) -> None:
        self.lifetime = timedelta(seconds=seconds)
        # Markers no visitor or admin can guess, so none can be written into a page's text.
        self.nonce_mark = "nonce" + secrets.token_hex(12)
        self.token_mark = "token" + secrets.token_hex(12)
        self.pages: dict[tuple, tuple[datetime, str]] = {}

    def shared(self, key: tuple, render: Callable[[], str]) -> str:
        now = clock.now()
        kept = self.pages.get(key)
        if kept is None or kept[0] <= now:
            kept = (now + self.lifetime, self._render_shared(render))
            if len(self.pages) >= _MAX_PAGES:
                self.pages.clear()
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
    return cache.shared((template, str(get_locale()), request.host, request.path), render)


class Fragments:
    def __init__(self) -> None:
        self.token_mark = "token" + secrets.token_hex(12)  # as PageCache's: nobody can guess it
        self.parts: dict[tuple, str] = {}


def fragment(template: str, key: tuple, **context) -> Markup:
    """`template` rendered with `context`, once per language for each `key` in this process.

    For a part of a personal page that is the same for everyone shown it with the same key (a
    step of the guidance, done or not: its text comes from the release's files, never from the
    database), so that a plan of sixteen steps is not sixteen renderings. The part's CSRF token is
    this response's, filled in each time; nothing else of the request may be in it."""
    fragments: Fragments = current_app.extensions[_FRAGMENTS]
    full_key = (template, str(get_locale()), *key)
    html = fragments.parts.get(full_key)
    if html is None:
        token = g.pop("csrf_token", None)
        g.csrf_token = fragments.token_mark
        try:
            html = render_template(template, **context)
        finally:
            g.pop("csrf_token", None)
            if token is not None:
                g.csrf_token = token
        if len(fragments.parts) >= _MAX_FRAGMENTS:
            fragments.parts.clear()
        fragments.parts[full_key] = html
    # Markup: the HTML of our own template, escaped as it was rendered.
    return Markup(html.replace(fragments.token_mark, generate_csrf()))  # noqa: S704


def init_app(app) -> None:
    app.extensions[_FRAGMENTS] = Fragments()
    seconds = float(app.config.get("PAGE_CACHE_SECONDS", 0))
    if seconds > 0:
        app.extensions[_EXTENSION] = PageCache(seconds)


@event.listens_for(db.session, "after_flush")
def _note_change(session: Session, _context) -> None:
    if any(isinstance(o, _SHOWN) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


@event.listens_for(db.session, "do_orm_execute")
def _note_statement(state) -> None:
    if (state.is_update or state.is_delete or state.is_insert) and state.statement.table.name in (
        Incident.__tablename__,
        IncidentUpdate.__tablename__,
    ):
        state.session.info[_CHANGED] = True


@event.listens_for(db.session, "after_commit")
def _forget(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        cache = current_app.extensions.get(_EXTENSION)
        if cache is not None:
            cache.pages.clear()


@event.listens_for(db.session, "after_rollback")
def _keep(session: Session) -> None:
    session.info.pop(_CHANGED, None)  # nothing changed after all
