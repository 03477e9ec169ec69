"""The breach portal: create_app() is a short list of register_* steps."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flask import Flask, has_request_context, request, session
from flask_babel import get_locale
from flask_login import current_user
from sqlalchemy import event

from portal import config as portal_config
from portal import regions

ROOT = Path(__file__).resolve().parent.parent


def instance_path() -> str:
    """Where development secrets and the default SQLite database live."""
    return os.environ.get("PORTAL_INSTANCE_PATH") or str(ROOT / "instance")


def create_app(env: dict[str, str] | None = None, **overrides) -> Flask:
    """Build the app from PORTAL_* variables (or the given mapping), failing fast when unusable."""
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=instance_path(),
    )
    app.config.update(portal_config.load(env, app.instance_path))
    app.config.update(overrides)
    register_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_jobs(app)
    register_errorhandlers(app)
    register_cli(app)
    register_security_headers(app)
    register_static_files(app)
    register_proxy(app)
    return app


def register_logging(app: Flask) -> None:
    """Timestamps, levels and the request id on every line; JSON lines in production."""
    from portal.web.logs import register

    register(app)


def register_proxy(app: Flask) -> None:
    """Behind a TLS proxy, take the client's address and scheme from exactly the trusted hops
    (more would let a client forge its address past the rate limits; fewer would see one)."""
    hops = app.config["PROXY_HOPS"]
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)


def register_extensions(app: Flask) -> None:
    from portal.extensions import babel, csrf, db, limiter, migrate, vault
    from portal.i18n import (
        datetime_with_zone,
        day_and_month,
        install_template_gettext,
        language_for,
        localized,
        staff_datetime,
    )
    from portal.web import identity
    from portal.web.access import CUSTOMER

    db.init_app(app)
    from portal import unit_of_work

    unit_of_work.init_app(app)  # first: each request commits once, after every other hook
    identity.init_app(app)  # before CSRFProtect: see identity._forget_previous_user

    @app.before_request
    def _upload_limit():
        # Registered before CSRFProtect reads the form, so the larger limit applies to the one
        # route that takes a customer file; every other request keeps the small limit.
        # (and the mail house's manifest of mailed letters: some 12 MB for 100,000 letters)
        if request.endpoint in ("admin.upload_import", "admin.letters_mailed"):
            request.max_content_length = app.config["IMPORT_MAX_BYTES"]

    # After the upload limit (it reads the form) and before CSRF, sign-in and the views: a
    # control character or a repeated field is refused before anything acts on it.
    from portal.web import input as request_input

    request_input.init_app(app)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)
            line = _SQLiteWriters()
            event.listen(db.engine, "begin", line.begin)
            # The turn ends with the transaction; a connection going back to the pool without
            # either (invalidated under an error) ends it too, so one failure never stalls the
            # writers behind it.
            event.listen(db.engine, "commit", line.end)
            event.listen(db.engine, "rollback", line.end)
            event.listen(db.engine, "checkin", line.checked_in)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True)
    from portal.web import hosts

    # Before CSRFProtect too: on the wrong host a staff or customer route is a 404, whatever the
    # request carries (portal/web/hosts.py).
    hosts.init_app(app)
    from portal.web.security import refuse_cross_site

    # Before CSRFProtect: a write another site's page made is refused with 403 whatever it
    # carries, before any form is read (Fetch Metadata; the reason is in refuse_cross_site).
    app.before_request(refuse_cross_site)
    csrf.init_app(app)
    from portal.web import page_cache

    page_cache.init_app(app)  # the public pages' shared HTML (nonce and token filled per response)
    vault.init_app(app)
    limiter.init_app(app)
    from portal.services import guidance, obligations, playbook, statements

    guidance.init_app(app)  # refuses to start on a wrong guidance file
    statements.init_app(app)  # likewise for the statements by place of residence
    obligations.init_app(app)  # and on a wrong obligations catalogue
    playbook.init_app(app)  # and on a wrong playbook

    def select_locale():
        if not has_request_context():
            return None  # commands and workers pass the recipient's locale explicitly
        if current_user.kind == CUSTOMER:  # a signed-in customer reads their own language
            return language_for(current_user.customer.locale)
        # What the person picked on a page, else the language of the notice they came from.
        for key in ("lang", "lang_default"):
            if session.get(key) in app.config["LANGUAGES"]:
                return session[key]
        return request.accept_languages.best_match(app.config["LANGUAGES"]) or "en"

    def select_timezone():
        # A signed-in customer reads times on the clock of where they live (named with it);
        # staff, commands and everyone else on UTC, the clock the audit trail keeps.
        if has_request_context() and current_user.kind == CUSTOMER:
            return regions.time_zone(current_user.customer.region)
        return None

    babel.init_app(
        app,
        locale_selector=select_locale,
        timezone_selector=select_timezone,
        default_translation_directories=str(ROOT / "portal" / "translations"),
    )
    install_template_gettext(app)
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["localized"] = localized
    from portal.models.case import CaseStatus, MessageKind

    # Templates compare with the same names the code uses, never a spelled-out value.
    app.jinja_env.globals.update(CaseStatus=CaseStatus, MessageKind=MessageKind)
    app.jinja_env.filters["when"] = datetime_with_zone  # customers' pages
    app.jinja_env.filters["staff_time"] = staff_datetime  # staff pages
    app.jinja_env.filters["day_and_month"] = day_and_month
    from portal.validation import shown_plainly

    # Names and ids kept before invisible and direction-changing characters were refused: shown
    # with those characters made visible, so they cannot disguise one person as another.
    app.jinja_env.filters["plain"] = shown_plainly
    from portal.markdown import plain as markdown_as_text
    from portal.markdown import render as render_markdown

    app.jinja_env.filters["markdown"] = render_markdown
    # A message's text part: the same Markdown as words, with no `**` or `[..](..)` left in it.
    app.jinja_env.filters["markdown_text"] = markdown_as_text
    from portal.i18n import breach_dates

    # The breach's date or range, as the notice says it, on every page that shows the incident.
    app.jinja_env.globals["breach_dates"] = breach_dates


# How long a SQLite writer waits for the one write lock before "database is locked". SQLite
# serves one writer at a time: under a crowd, writers queue here (production uses PostgreSQL).
SQLITE_BUSY_TIMEOUT_MS = 15000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """SQLite as a real database: enforce foreign keys; WAL lets readers work beside a writer."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA cache_size = -65536")  # 64 MiB: index inserts stay in memory
    cursor.close()


class _SQLiteWriters:
    """A request that may write (POST and the like) takes SQLite's one write lock when its
    transaction starts, waiting its turn instead of failing; the requests of one process wait
    in line for that turn here, so that at most one of them at a time asks SQLite.

    pysqlite otherwise opens a deferred transaction only before the first INSERT or UPDATE:
    what the request read before it (a count of codes sent, say) is not part of the unit it
    then writes, and a transaction a savepoint opened, which read first and then writes after
    another writer committed, cannot wait (waiting could deadlock): SQLite answers "database
    is locked" at once. Page views, commands and workers keep pysqlite's way: their reads take
    no lock, so a long read (a worker talking to the mail server) never stops the site's
    writers.

    Why a line in the process: SQLite's own wait (busy_timeout) is not a queue. Each waiter
    sleeps, up to 100 ms at a time, and tries again; whoever tries just after a commit wins,
    so with a crowd of threads waiting some lose turn after turn while the lock lies idle
    between tries, and a writer can be refused after 15 s while the writes ahead of it took far
    less. (A gunicorn worker with 50 threads under a crowd of 200 sign-ins: half the writes got
    the lock within 10 ms, some waited over 11 s, with 10 s of writing in all; on a loaded
    machine some passed 15 s.) Waiting here instead wakes the next writer as soon as the one
    before commits, and leaves SQLite one waiter per process. The whole wait, here and in
    SQLite, stays within SQLITE_BUSY_TIMEOUT_MS.
    """

    _TURN = "portal.sqlite_writer_turn"

    def __init__(self) -> None:
        self._turn = threading.Lock()

    def begin(self, connection) -> None:
        from portal.unit_of_work import SAFE_METHODS

        if not has_request_context() or request.method in SAFE_METHODS:
            return
        started = time.monotonic()
        if self._turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            connection.info[self._TURN] = True
        # Past the deadline without a turn: SQLite is asked once more without waiting, and
        # answers "database is locked" (the calm 503) unless the lock is free just then.
        waited_ms = int((time.monotonic() - started) * 1000)
        left_ms = max(0, SQLITE_BUSY_TIMEOUT_MS - waited_ms)
        try:
            # Emitted on the driver's connection: pysqlite sees the transaction and opens none
            # of its own, and ends this one when SQLAlchemy ends the unit of work.
            if left_ms != SQLITE_BUSY_TIMEOUT_MS:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {left_ms}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                if left_ms != SQLITE_BUSY_TIMEOUT_MS:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        except BaseException:
            self.end(connection)
            raise

    def end(self, connection) -> None:
        """The transaction ends (commit or rollback): the next writer's turn."""
        self._release(connection.info)

    def checked_in(self, _dbapi_connection, connection_record) -> None:
        self._release(connection_record.info)

    def _release(self, info: dict) -> None:
        if info.pop(self._TURN, False):
            self._turn.release()


def register_blueprints(app: Flask) -> None:
    from portal.web.admin import bp as admin_bp
    from portal.web.customer import bp as customer_bp
    from portal.web.dev.views import bp as dev_bp
    from portal.web.public.views import bp as public_bp
    from portal.web.staff.views import bp as staff_bp

    app.register_blueprint(public_bp)
    app.register_blueprint(customer_bp)
    app.register_blueprint(staff_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(dev_bp)


def register_jobs(app: Flask) -> None:
    """Import the modules that own background work: each registers its jobs by name."""
    from portal.services import (  # noqa: F401
        imports,
        letters,
        notices,
        retention,
        updates,
        verification,
    )


def register_errorhandlers(app: Flask) -> None:
    from portal.web.errors import register

    register(app)


def register_cli(app: Flask) -> None:
    from portal.cli import register

    register(app)


def register_static_files(app: Flask) -> None:
    """Static files under content-hashed names, cached for a year (portal/web/static_files.py)."""
    from portal.web.static_files import register

    register(app)


def register_security_headers(app: Flask) -> None:
    from portal.web.security import register

    register(app)
