"""gunicorn's settings for the portal: `gunicorn -c gunicorn.conf.py wsgi:app` (docs/deploy.md).

gunicorn reads this file from the working directory by itself, so a plain `gunicorn wsgi:app` in
the repository uses it too. Every number comes from a PORTAL_WEB_* variable with a default fit
for one machine behind a TLS proxy; each is checked here, so a typo stops the start instead of
running with a setting nobody chose.
"""

from __future__ import annotations

import os


def _number(name: str, default: int, least: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}") from None
    if value < least:
        raise SystemExit(f"{name} must be at least {least}, not {value}")
    return value


def _switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be 1 or 0, not {raw!r}")


# Where the proxy reaches the app. Loopback by default: only a proxy on the same machine may
# talk to it (the app trusts PORTAL_PROXY_HOPS of X-Forwarded-For; a client reaching gunicorn
# directly could forge its address past the rate limits). Give 0.0.0.0:8000 in a container.
bind = [part.strip() for part in os.environ.get("PORTAL_WEB_BIND", "127.0.0.1:8000").split(",")]

# A page costs a few milliseconds of Python and about as long waiting on PostgreSQL and Redis:
# two processes a core keep the cores busy through the waits (gunicorn's own advice, 2 x cores
# + 1). Each process holds its own database connections: instances x workers x threads must stay
# under PostgreSQL's max_connections (docs/deploy.md, "Connections").
workers = _number("PORTAL_WEB_WORKERS", 2 * (os.cpu_count() or 1) + 1, least=1)
# One thread a process by default (the sync worker): the work is Python under one lock (the
# GIL), so threads add little, and the TLS proxy in front buffers slow clients. Above 1,
# gunicorn runs its threaded worker (keep-alive with the proxy, fewer processes for the same
# concurrency); each thread may hold a database connection of its own.
threads = _number("PORTAL_WEB_THREADS", 1, least=1)

# A request is killed (and its worker restarted) after this long: a connection to PostgreSQL is
# given up after 2 s and a Redis call after 0.5 s (portal/config.py), and a page takes
# milliseconds, so 30 s is a stuck process or a runaway query, never a busy moment.
timeout = _number("PORTAL_WEB_TIMEOUT", 30, least=1)
# On SIGTERM (a deploy), requests in hand get this long to finish; a request's one commit
# either happened or did not, so a worker killed at the end of it loses nothing half-done.
graceful_timeout = _number("PORTAL_WEB_GRACEFUL_TIMEOUT", 30, least=1)
# Idle keep-alive connections from the proxy (threaded worker only; the sync worker closes each).
keepalive = _number("PORTAL_WEB_KEEPALIVE", 5, least=0)

# The app is made once, in the master, and forked into each worker: one start-up to fail fast
# on a wrong setting, less memory per worker, and workers that answer at once. Safe because
# nothing made at start is shared after the fork: post_fork below drops any database
# connection the master opened, redis-py opens fresh connections in a new process by itself,
# and the data vault's nonce pool is refilled in each child (portal/crypto.py). Off: each
# worker imports the app itself (PORTAL_WEB_PRELOAD=0), which HUP can then reload.
preload_app = _switch("PORTAL_WEB_PRELOAD", True)

# The scheme and the client's address are decided in one place, the app's ProxyFix with exactly
# PORTAL_PROXY_HOPS trusted hops: gunicorn trusts no forwarded header of its own (by default it
# would take X-Forwarded-Proto from any process on this machine).
forwarded_allow_ips = ""
secure_scheme_headers: dict[str, str] = {}

# Access log: when, what, the answer, how long, and the request id the app's own log lines and
# error pages carry. Never the query string, the Referer or the client's address: a query or a
# Referer can hold a link's token or an email address, and an address is personal data (the
# proxy's log is where an operator decides on those). The path can hold a link's token too:
# the portal scrubs it to `[token]` in this log (portal/web/security.py, ScrubTokens).
accesslog = os.environ.get("PORTAL_WEB_ACCESS_LOG", "-") or None
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'
errorlog = os.environ.get("PORTAL_WEB_ERROR_LOG", "-")
loglevel = "info"

# No control socket: nothing else on the machine should steer the web processes.
control_socket_disable = True
proc_name = "portal-web"


def post_fork(server, worker):
    """Each worker starts with a connection pool of its own: a connection the master opened
    while making the app must not be used by two processes at once (their queries and answers
    would interleave on one socket)."""
    if not server.cfg.preload_app:
        return
    from portal.extensions import db

    app = server.app.wsgi()
    if "sqlalchemy" not in getattr(app, "extensions", {}):
        return  # not the portal (bench/hello.py's floor, say): nothing of ours to drop
    with app.app_context():
        for engine in db.engines.values():
            # close=False: the parent's connections are left for the parent, not closed here.
            engine.dispose(close=False)
