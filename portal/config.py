"""Settings read once from PORTAL_* environment variables and validated at start."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ENVIRONMENTS = ("production", "development", "testing")
WEB_SCHEMES = ("http", "https")


class ConfigError(RuntimeError):
    """The environment does not describe a portal that may start."""


def _read_or_create(path: Path, make) -> str:
    """Return the secret kept at path, creating it (owner-only) the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Owner-only from the first byte: a development key is still a key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def new_data_key() -> str:
    """A fresh 256-bit data key, base64url encoded as PORTAL_DATA_KEYS expects."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def legacy_audit_key(secret_key: str) -> str:
    """The audit chain key that earlier versions derived from the signing key, as base64url.

    Only the development and test default, and the key that verifies events written before the
    chain had keys of its own: production must set PORTAL_AUDIT_KEYS.
    """
    raw = hmac.new(secret_key.encode(), b"portal audit chain v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(raw).decode()


def _is_key(text: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32


_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


# A hung Redis or database (a stopped process, a dropped network path) must not hold a request:
# without a timeout a client waits for the operating system, tens of seconds or for ever, and
# every worker queues behind it. Redis answers in about a millisecond, so half a second without
# an answer means it is not answering: the request gets the calm 503 (rate limits fail closed)
# within about a second.
REDIS_TIMEOUT_SECONDS = 0.5
# Opening a PostgreSQL connection takes milliseconds on a working network; past 2 s the request
# gets a 503 rather than a hang (libpq's connect_timeout; whole seconds, at least 2).
DATABASE_CONNECT_TIMEOUT_SECONDS = 2


def redis_options() -> dict[str, float]:
    """The options every Redis client of the portal is made with (the rate-limit store, /readyz)."""
    return {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
    }


def _engine_options(database_url: str) -> dict:
    """SQLAlchemy engine options: a dead pooled connection is replaced before use (pre-ping)."""
    options: dict = {"pool_pre_ping": True}
    if database_url.startswith("postgresql"):
        options["connect_args"] = {
            "connect_timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
            # A pooled connection to a server that vanished from the network (a failover that
            # moved its address, a cut link) is found dead in about 10 s, not TCP's 15 minutes:
            # keepalive probes while idle, and a cap on data left unacknowledged. (A server that
            # is up but stopped still acknowledges: gunicorn's worker timeout is the bound there.)
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        }
    return options


# How long finished things are kept before `portal retention run` deletes them (README
# "Retention"): PORTAL_<NAME>_DAYS overrides each.
RETENTION_DAYS = {
    # A sent, failed or expired message (its body is emptied as it leaves the queue; the row
    # still names the recipient). A month answers "did my notice go out?".
    "SENT_MESSAGE_RETENTION": 30,
    # A used or expired one-time code challenge (only a digest of its code). Never less than
    # the verification lock window, which counts failures from recent challenges.
    "CHALLENGE_RETENTION": 30,
    # A signed-out, revoked or idle-expired customer or staff session (user agent and times).
    "ENDED_SESSION_RETENTION": 30,
}


def _whole(env: dict[str, str], name: str, default: int, least: int = 1) -> int:
    value = env.get(f"PORTAL_{name}", str(default))
    if not value.isdigit() or int(value) < least:
        raise ConfigError(f"PORTAL_{name} must be a whole number, at least {least}.")
    return int(value)


def _outbox(env: dict[str, str]) -> dict:
    """How the outbox worker paces itself (docs/operations.md: "When mail cannot go").

    A message the server answers with a temporary refusal (4xx) is tried again 30 s, 1, 2, 4 ...
    minutes later, doubling to at most 2 hours, each wait shortened by up to half at random so
    that a recovered server is not hit by every message at once; the 20th refusal fails it for
    good: about 18 hours of tries on average, never under 12. A pass that reaches no server at
    all counts no try (an outage of any length fails nothing): the worker pauses instead, 1 s
    doubling to OUTBOX_BACKOFF_MAX, and the alert fires once the oldest queued message has
    waited OUTBOX_ALERT_AFTER.
    """
    smtp_timeout = _whole(env, "SMTP_TIMEOUT_SECONDS", 30)
    lease = _whole(env, "OUTBOX_LEASE_SECONDS", 120)
    if lease < 2 * smtp_timeout + 10:
        # A message is begun only with its transport's timeout (and 5 s) left on the lease; a
        # shorter lease would leave a worker too little time to send anything.
        raise ConfigError(
            "PORTAL_OUTBOX_LEASE_SECONDS must be at least twice PORTAL_SMTP_TIMEOUT_SECONDS, "
            "plus 10."
        )
    return {
        "SMTP_TIMEOUT": float(smtp_timeout),
        # Messages a pass takes before it records its summary; each message is still claimed,
        # sent and recorded in a transaction of its own (a killed worker re-sends at most one).
        "OUTBOX_BATCH_SIZE": _whole(env, "OUTBOX_BATCH_SIZE", 100),
        # A worker takes this many due messages at a time, and holds them for the lease: a
        # worker killed mid-pass leaves the rest of its claim to wait out the lease (never sent
        # twice); one taking longer hands back what it did not reach before the lease ends.
        "OUTBOX_CLAIM_SIZE": _whole(env, "OUTBOX_CLAIM_SIZE", 20),
        "OUTBOX_LEASE_TTL": timedelta(seconds=lease),
        "OUTBOX_MAX_ATTEMPTS": _whole(env, "OUTBOX_MAX_ATTEMPTS", 20),
        "OUTBOX_RETRY_BASE_TTL": timedelta(seconds=_whole(env, "OUTBOX_RETRY_BASE_SECONDS", 30)),
        "OUTBOX_RETRY_MAX_TTL": timedelta(seconds=_whole(env, "OUTBOX_RETRY_MAX_SECONDS", 7200)),
        "OUTBOX_BACKOFF_MAX_TTL": timedelta(seconds=_whole(env, "OUTBOX_BACKOFF_MAX_SECONDS", 60)),
        "OUTBOX_ALERT_AFTER": timedelta(minutes=_whole(env, "OUTBOX_ALERT_MINUTES", 15)),
    }


def _retention(env: dict[str, str]) -> dict[str, timedelta]:
    """The `*_RETENTION_TTL` settings, each a whole number of days (at least one)."""
    periods = {}
    for name, default in RETENTION_DAYS.items():
        value = env.get(f"PORTAL_{name}_DAYS", str(default))
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"PORTAL_{name}_DAYS must be a whole number of days, at least 1.")
        periods[f"{name}_TTL"] = timedelta(days=int(value))
    return periods


def _staff_origin(env: dict[str, str], base_url: str, production: bool) -> tuple[str, str | None]:
    """(the origin staff links use, the staff host or None) from PORTAL_STAFF_BASE_URL."""
    value = (env.get("PORTAL_STAFF_BASE_URL") or "").rstrip("/")
    same_host = env.get("PORTAL_STAFF_SAME_HOST", "") in ("1", "true", "yes")
    if not value:
        if production and not same_host:
            # The staff and admin pages hold every affected person's data: on their own host they
            # can be closed to the internet at the proxy (VPN, office networks, mTLS) and keep
            # their own Strict cookies. Sharing the public host must be a choice someone made.
            raise ConfigError(
                "The portal will not start in production without PORTAL_STAFF_BASE_URL (the "
                "staff and admin host, e.g. https://staff.example.org), unless "
                "PORTAL_STAFF_SAME_HOST=1 says staff share the public host on purpose "
                "(see docs/deploy.md)."
            )
        return base_url, None
    if same_host:
        raise ConfigError("Set PORTAL_STAFF_BASE_URL or PORTAL_STAFF_SAME_HOST=1, not both.")
    parts = urlsplit(value)
    if parts.scheme not in WEB_SCHEMES or not parts.netloc or parts.path:
        raise ConfigError(
            "PORTAL_STAFF_BASE_URL must be an origin such as https://staff.example.org"
        )
    if production and parts.scheme != "https":
        raise ConfigError("PORTAL_STAFF_BASE_URL must use https in production.")
    # Browsers share cookies between ports of one host name: a staff host on another port of
    # the public name would separate nothing.
    if parts.hostname == urlsplit(base_url).hostname:
        raise ConfigError(
            "PORTAL_STAFF_BASE_URL must name another host than PORTAL_BASE_URL "
            "(cookies do not keep ports apart)."
        )
    return value, parts.hostname


def load(env: dict[str, str] | None = None, instance_path: str | Path = "instance") -> dict:
    """Build the Flask config mapping from the environment; raise ConfigError when unusable."""
    env = dict(os.environ if env is None else env)
    instance = Path(instance_path)
    portal_env = env.get("PORTAL_ENV", "production")
    if portal_env not in ENVIRONMENTS:
        raise ConfigError(
            f"PORTAL_ENV must be one of {', '.join(ENVIRONMENTS)}, not {portal_env!r}"
        )
    production = portal_env == "production"

    missing = [
        name
        for name in (
            "PORTAL_SECRET_KEY",
            "PORTAL_BASE_URL",
            "PORTAL_DATA_KEYS",
            "PORTAL_AUDIT_KEYS",
        )
        if production and not env.get(name)
    ]
    if missing:
        raise ConfigError(
            "The portal will not start in production without "
            + ", ".join(missing)
            + " (see the README's configuration table)."
        )

    secret_key = env.get("PORTAL_SECRET_KEY") or _read_or_create(
        instance / "secret_key", lambda: secrets.token_urlsafe(48)
    )
    # A short signing key is guessable offline from any signed link.
    if len(secret_key) < 32:
        raise ConfigError("PORTAL_SECRET_KEY must be at least 32 characters of random data.")

    data_keys = _split(env.get("PORTAL_DATA_KEYS")) or [
        _read_or_create(instance / "data_keys", new_data_key)
    ]

    audit_keys = _split(env.get("PORTAL_AUDIT_KEYS")) or [legacy_audit_key(secret_key)]
    for key in audit_keys:
        # A short or malformed audit key would let anyone holding the database forge the chain.
        if not _is_key(key):
            raise ConfigError(
                "PORTAL_AUDIT_KEYS must be a comma list of audit keys, each 32 random bytes in "
                "base64url (make one with `portal audit new-key`)."
            )

    base_url = (env.get("PORTAL_BASE_URL") or "http://127.0.0.1:5000").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise ConfigError("PORTAL_BASE_URL must be an origin such as https://help.example.com")
    if production and parts.scheme != "https":
        raise ConfigError("PORTAL_BASE_URL must use https in production.")

    staff_base_url, staff_host = _staff_origin(env, base_url, production)

    redis_url = env.get("PORTAL_REDIS_URL") or None
    if production and not redis_url:
        # Rate limits must hold across every instance and fail closed: no per-process memory.
        raise ConfigError(
            "The portal will not start in production without PORTAL_REDIS_URL "
            "(the shared store for rate limits)."
        )

    if env.get("PORTAL_WEBHOOK_URL") and len(env.get("PORTAL_WEBHOOK_SECRET", "")) < 32:
        raise ConfigError(
            "PORTAL_WEBHOOK_SECRET must be at least 32 characters when "
            "PORTAL_WEBHOOK_URL is set (it signs every event)."
        )
    if env.get("PORTAL_PWNED_UNREACHABLE_POLICY", "accept") not in ("accept", "reject"):
        raise ConfigError("PORTAL_PWNED_UNREACHABLE_POLICY must be accept or reject.")

    # Outgoing HTTP services are fetched with urllib, which would also open file:// and ftp://:
    # only web URLs may be configured, so a typo or a planted value cannot read local files.
    for name in ("PORTAL_SMS_URL", "PORTAL_WEBHOOK_URL", "PORTAL_PWNED_PASSWORDS_URL"):
        if env.get(name) and urlsplit(env[name]).scheme not in WEB_SCHEMES:
            raise ConfigError(f"{name} must start with https:// (or http://)")

    # Admins must sign in with a security key (checklist OTP-03: phishing-resistant for
    # admins, TOTP only an interim option). On by default in production. Off by default in
    # development and testing: `make demo` serves on http://127.0.0.1, an IP address that
    # browsers refuse as a WebAuthn relying party, so the demo admin could never register a key
    # and would be held on the "add a security key" page; tests turn it on where they test it.
    key_required = env.get("PORTAL_ADMIN_SECURITY_KEY_REQUIRED", "1" if production else "0")
    if key_required.strip().lower() not in _YES + _NO:
        raise ConfigError("PORTAL_ADMIN_SECURITY_KEY_REQUIRED must be 1 or 0 (yes or no).")

    smtp_url = env.get("PORTAL_SMTP_URL") or None
    if smtp_url and urlsplit(smtp_url).scheme not in ("smtp", "smtps", "smtp+starttls"):
        raise ConfigError("PORTAL_SMTP_URL must start with smtp://, smtps:// or smtp+starttls://")

    database_url = env.get("PORTAL_DATABASE_URL") or f"sqlite:///{instance.resolve() / 'portal.db'}"
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; the bare scheme would ask for psycopg2.
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")

    return {
        "PORTAL_ENV": portal_env,
        "TESTING": portal_env == "testing",
        "DEBUG": False,  # never the Werkzeug debugger: it is a remote shell
        "SECRET_KEY": secret_key,
        "SECRET_KEY_FALLBACKS": _split(env.get("PORTAL_SECRET_KEY_FALLBACKS")),
        "BASE_URL": base_url,
        "PREFERRED_URL_SCHEME": parts.scheme,
        # Staff links (set-up, sign-in) are built from STAFF_BASE_URL: the staff host when there
        # is one (STAFF_HOST; portal/web/hosts.py keeps each side to its host), else BASE_URL.
        "STAFF_BASE_URL": staff_base_url,
        "STAFF_HOST": staff_host,
        # Links are built from BASE_URL (and STAFF_BASE_URL), and requests for any other host
        # are refused.
        "TRUSTED_HOSTS": [parts.hostname, *([staff_host] if staff_host else [])]
        if production
        else None,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url),
        "DATA_KEYS": data_keys,
        # The audit chain's own keys, newest first: the first signs, the others only verify.
        "AUDIT_KEYS": audit_keys,
        # Where `portal audit checkpoint` anchors the chain's head, outside the database: a
        # file of append-only lines, and/or a message to ALERT_EMAIL (operator's choice).
        "AUDIT_ANCHOR_FILE": env.get("PORTAL_AUDIT_ANCHOR_FILE") or None,
        "AUDIT_ANCHOR_EMAIL": env.get("PORTAL_AUDIT_ANCHOR_EMAIL", "") in ("1", "true", "yes"),
        "SMTP_URL": smtp_url,
        "SMS_URL": env.get("PORTAL_SMS_URL") or None,
        "SMS_TOKEN": env.get("PORTAL_SMS_TOKEN") or "",
        "REDIS_URL": redis_url,
        "RATELIMIT_STORAGE_URI": redis_url or "memory://",
        # Passed to redis.from_url by Flask-Limiter's storage: short timeouts (see redis_options).
        # Its errors reach our handler unwrapped (RATELIMIT_SWALLOW_ERRORS stays off): a 503.
        "RATELIMIT_STORAGE_OPTIONS": redis_options() if redis_url else {},
        "RATELIMIT_HEADERS_ENABLED": False,
        # Said outright: Flask-Limiter's one limiter object otherwise keeps the last app's choice
        # (`config.setdefault(..., self.enabled)`), so an app made without limits would switch
        # them off for every app made after it in the same process.
        "RATELIMIT_ENABLED": True,
        "SESSION_COOKIE_NAME": "__Host-portal" if production else "portal",
        "CUSTOMER_IDLE_TTL": timedelta(minutes=15),
        "CUSTOMER_MAX_TTL": timedelta(hours=12),
        # A customer's step-up (a fresh code) lasts 5 minutes: it guards the password and the
        # authenticator, and the checklist (SES-05, AUTH-04) asks for a proof at most 5 minutes
        # old before either changes. The code itself still lives CODE_TTL (time to read mail).
        "STEP_UP_TTL": timedelta(minutes=5),
        "CODE_TTL": timedelta(minutes=10),
        "CODE_MAX_TRIES": 5,
        "CODE_MAX_RESENDS": 3,
        "CHALLENGES_PER_HOUR": 5,
        "VERIFY_LOCK_FAILURES": 10,
        "VERIFY_LOCK_WINDOW_TTL": timedelta(hours=24),
        "NEW_LINKS_PER_HOUR": 3,
        "SUPPORT_PHONE": env.get("PORTAL_SUPPORT_PHONE") or "",
        "WEBHOOK_URL": env.get("PORTAL_WEBHOOK_URL") or None,
        "WEBHOOK_SECRET": env.get("PORTAL_WEBHOOK_SECRET") or "",
        "PWNED_PASSWORDS_URL": env.get("PORTAL_PWNED_PASSWORDS_URL") or None,
        "PWNED_TIMEOUT": 2.0,
        # When the Pwned Passwords service cannot answer: "accept" (the shipped list still
        # applies) or "reject" (no password is accepted until it answers again).
        "PWNED_UNREACHABLE_POLICY": env.get("PORTAL_PWNED_UNREACHABLE_POLICY") or "accept",
        # argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane): safe, and fast
        # enough for a notice-day crowd resetting passwords. Raise them freely; old hashes are
        # rehashed when next verified.
        "ARGON2_TIME_COST": int(env.get("PORTAL_ARGON2_TIME_COST", "2")),
        "ARGON2_MEMORY_KIB": int(env.get("PORTAL_ARGON2_MEMORY_KIB", "19456")),
        "ARGON2_PARALLELISM": int(env.get("PORTAL_ARGON2_PARALLELISM", "1")),
        # How many proxies in front of the app add X-Forwarded-For: trust exactly that many.
        "PROXY_HOPS": int(env.get("PORTAL_PROXY_HOPS", "0")),
        "MAIL_FROM": env.get("PORTAL_MAIL_FROM") or f"notices@{parts.hostname}",
        # Where operational alerts go (a code pool ran dry, say); default: the sender address.
        # The organisation is regulated by NYDFS (23 NYCRR 500): its 72-hour duty applies.
        "NYDFS_COVERED": env.get("PORTAL_NYDFS_COVERED", "") in ("1", "true", "yes"),
        # The organisation is a financial institution under the FTC Safeguards Rule (16 CFR 314):
        # its duty to notify the FTC of 500 or more consumers' data applies.
        "FTC_SAFEGUARDS_COVERED": env.get("PORTAL_FTC_SAFEGUARDS_COVERED", "")
        in ("1", "true", "yes"),
        "ALERT_EMAIL": env.get("PORTAL_ALERT_EMAIL")
        or env.get("PORTAL_MAIL_FROM")
        or f"notices@{parts.hostname}",
        "ORGANISATION_NAME": env.get("PORTAL_ORGANISATION_NAME") or "Example Corp",
        # Printed in the corner of every letter: lines separated by "|".
        "RETURN_ADDRESS": [
            line.strip()
            for line in (
                env.get("PORTAL_RETURN_ADDRESS")
                or "Example Corp|Privacy Office|100 Main Street|Springfield, IL 62701"
            ).split("|")
            if line.strip()
        ],
        # How long the front page and the public incident pages may be served from a process's
        # cache to visitors who are not signed in (portal/web/page_cache.py): how long a change
        # can take to show there. 0 turns the cache off.
        "PAGE_CACHE_SECONDS": _whole(env, "PAGE_CACHE_SECONDS", 5, least=0),
        # Where people report a message that pretends to come from us ("Is this genuine?").
        "ABUSE_EMAIL": env.get("PORTAL_ABUSE_EMAIL") or "",
        "NOTICE_LINK_TTL": timedelta(days=int(env.get("PORTAL_NOTICE_LINK_DAYS", "90"))),
        # The link that lets someone who is not signed in read the answer to their request.
        "HELP_CASE_LINK_TTL": timedelta(days=14),
        # An hour: a set-up link that leaks (a forwarded email, a screen share) is soon worthless,
        # and a new invitation costs an admin one command.
        "STAFF_INVITE_TTL": timedelta(hours=1),
        "ADMIN_SECURITY_KEY_REQUIRED": key_required.strip().lower() in _YES,
        # An agent's one-time sign-in link for a caller whose identity they checked by phone.
        "ASSISTED_LINK_TTL": timedelta(hours=1),
        **_retention(env),
        # A contact change staff asked for waits this long unless a second staff member approves
        # it, and an address changed by staff within it gets no link or code without that approval.
        "CONTACT_CHANGE_HOLD_TTL": timedelta(hours=24),
        # The "this was not me" link in the notice to the old address.
        "CONTACT_CHANGE_CANCEL_TTL": timedelta(days=14),
        **_outbox(env),
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        # Only the console's CSV upload may be larger (a million rows is about 120 MB).
        "IMPORT_MAX_BYTES": int(env.get("PORTAL_IMPORT_MAX_MB", "256")) * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 64 * 1024,
        "MAX_FORM_PARTS": 100,
        "SESSION_COOKIE_SECURE": production,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": 3600,
        "BABEL_DEFAULT_LOCALE": "en",
        "LANGUAGES": ("en", "es"),
        "DEV_MAIL": portal_env == "development",
    }
