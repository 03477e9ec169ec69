"""The SMTP transport: one reused connection, failures sorted into temporary and permanent."""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from urllib.parse import unquote, urlsplit

_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


class DeliveryError(Exception):
    """A message was not accepted. `permanent` says whether trying again can help."""

    def __init__(self, reason: str, *, permanent: bool, connection: bool = False):
        # Server replies often quote the recipient: keep addresses out of what we store and log.
        super().__init__(_ADDRESS.sub("<address>", reason)[:500])
        self.permanent = permanent
        self.connection = connection


def _classify(code: int, text: bytes | str, what: str) -> DeliveryError:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return DeliveryError(f"{what}: {code} {text}", permanent=500 <= code < 600)


class SMTPTransport:
    """Deliver EmailMessages to PORTAL_SMTP_URL (smtp://, smtps://, smtp+starttls://)."""

    def __init__(self, url: str, timeout: float = 30.0):
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "localhost"
        self.port = parts.port or {"smtps": 465, "smtp+starttls": 587}.get(parts.scheme, 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        try:
            if self.scheme == "smtps":
                conn = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.scheme == "smtp+starttls":
                    conn.starttls(context=context)
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            # Wrong credentials will not fix themselves, but the messages are fine: keep them.
            raise DeliveryError(
                f"login refused: {exc.smtp_code}", permanent=False, connection=True
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"cannot connect: {type(exc).__name__}", permanent=False, connection=True
            ) from exc
        return conn

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Hand one message (RFC 5322 bytes, CRLF lines) to the server; return once accepted."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                refused = self._conn.sendmail(sender, [recipient], message)
            except smtplib.SMTPServerDisconnected as exc:
                self._conn = None
                if attempt == 2:
                    raise DeliveryError(
                        "server disconnected", permanent=False, connection=True
                    ) from exc
                continue  # a reused connection went stale: open a new one once
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                raise _classify(code, text, "recipient refused") from exc
            except smtplib.SMTPSenderRefused as exc:
                raise _classify(exc.smtp_code, exc.smtp_error, "sender refused") from exc
            except smtplib.SMTPResponseException as exc:
                self._reset()
                raise _classify(exc.smtp_code, exc.smtp_error, "refused") from exc
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                raise DeliveryError(
                    f"connection failed: {type(exc).__name__}", permanent=False, connection=True
                ) from exc
            if refused:
                code, text = next(iter(refused.values()))
                raise _classify(code, text, "recipient refused")
            return

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
            self._conn = None
