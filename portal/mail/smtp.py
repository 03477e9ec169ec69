"""The SMTP transport: one reused connection, failures sorted into temporary and permanent."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
import time
from urllib.parse import unquote, urlsplit

_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")
# An address smtplib.quoteaddr would give back as "<address>" unchanged: plain ASCII dot-atoms,
# no quotes, brackets, spaces or line breaks (anything else goes through smtplib itself).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_LEADING_DOT = re.compile(rb"(?m)^\.")  # smtplib's dot-stuffing of DATA (RFC 5321 4.5.2)
# A connection idle this long is checked with a NOOP before the next message: servers close idle
# connections, and finding out during a message would leave us unsure whether it was taken.
IDLE_CHECK_SECONDS = 5.0


class DeliveryError(Exception):
    """A message was not accepted. `permanent` says whether trying again can help."""

    def __init__(
        self, reason: str, *, permanent: bool, connection: bool = False, maybe_taken: bool = False
    ):
        # Server replies often quote the recipient: keep addresses out of what we store and log.
        super().__init__(_ADDRESS.sub("<address>", reason)[:500])
        self.permanent = permanent
        # No answer from the server for this message (unreachable, hung up, timed out).
        self.connection = connection
        # ... and it broke off after the message was begun: the server may have taken it.
        self.maybe_taken = maybe_taken


def _classify(code: int, text: bytes | str, what: str) -> DeliveryError:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return DeliveryError(f"{what}: {code} {text}", permanent=500 <= code < 600)


class _Watchdog:
    """Bounds a whole exchange with the server by a deadline, not each read: smtplib's timeout
    applies to every socket operation, so a server that drips its answers could hold one message
    for many timeouts (and outlive the worker's lease). At the deadline the socket is shut, and
    the exchange in progress fails with a connection error. One thread per transport, woken for
    each exchange (a timer thread per message cost a thread start each)."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._conn: smtplib.SMTP | None = None
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    @contextlib.contextmanager
    def armed(self, conn: smtplib.SMTP, seconds: float):
        with self._wake:
            self._conn, self._deadline = conn, time.monotonic() + seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, daemon=True)
                self._thread.start()
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._conn = self._deadline = None

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()

    def _watch(self) -> None:
        with self._wake:
            while not self._stopped:
                if self._deadline is None:
                    self._wake.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                conn, self._conn, self._deadline = self._conn, None, None
                with contextlib.suppress(OSError, AttributeError):
                    conn.sock.shutdown(socket.SHUT_RDWR)


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
        self._used_at = 0.0
        self._watchdog = _Watchdog()
        self._senders: dict[str, str | None] = {}  # MAIL_FROM -> its quoted form, once

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.scheme == "smtps":
            conn = smtplib.SMTP_SSL(timeout=self.timeout, context=context)
        else:
            conn = smtplib.SMTP(timeout=self.timeout)
        try:
            with self._watchdog.armed(conn, self.timeout):
                code, reply = conn.connect(self.host, self.port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, reply)
                if self.scheme == "smtp+starttls":
                    conn.starttls(context=context)
                if self.username:
                    conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            conn.close()
            # Wrong credentials will not fix themselves, but the messages are fine: keep them.
            raise DeliveryError(
                f"login refused: {exc.smtp_code}", permanent=False, connection=True
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise DeliveryError(
                f"cannot connect: {type(exc).__name__}", permanent=False, connection=True
            ) from exc
        return conn

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Hand one message (RFC 5322 bytes, CRLF lines) to the server; return once accepted.

        A message is handed over once per call. A connection that went stale while idle is
        found out by a NOOP before the message, and replaced then; one that breaks or goes quiet
        during the message raises a connection error instead of sending again at once on a new
        connection: the server may have taken it, so it waits for the worker's next pass.
        """
        conn = self._ready()
        try:
            with self._watchdog.armed(conn, self.timeout):
                refused = self._hand_over(conn, sender, recipient, message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, text, "recipient refused") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise _classify(exc.smtp_code, exc.smtp_error, "sender refused") from exc
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _classify(exc.smtp_code, exc.smtp_error, "refused") from exc
        except (OSError, smtplib.SMTPException) as exc:  # incl. disconnected and timed out
            self._drop()
            raise DeliveryError(
                f"connection failed: {type(exc).__name__}",
                permanent=False,
                connection=True,
                maybe_taken=True,
            ) from exc
        finally:
            self._used_at = time.monotonic()
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, text, "recipient refused")

    def _hand_over(self, conn: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> dict:
        """conn.sendmail(sender, [recipient], message), with MAIL, RCPT and DATA in one write
        when the server offers PIPELINING (RFC 2920; every major relay does).

        Why: smtplib waits for each command's reply, four round trips a message, and its
        address quoting parses both addresses with the email package every time; together
        they were about a third of a worker's CPU per message (cProfile, bench/outbox_bench.py).
        Pipelined, it is two writes and two waits; the replies are read one by one, so the
        outcome of each command, and the exceptions raised, are smtplib's own.
        """
        quoted_sender = self._senders.get(sender, "")
        if quoted_sender == "":
            quoted_sender = smtplib.quoteaddr(sender)
            # conn.send writes what it is given; smtplib's own commands refuse CR and LF, so a
            # sender that could hold one (a second command smuggled in) goes through smtplib.
            plain = quoted_sender.isascii() and not {"\r", "\n"} & set(quoted_sender)
            quoted_sender = quoted_sender if plain else None
            self._senders[sender] = quoted_sender
        if not _PLAIN_ADDRESS.fullmatch(recipient) or quoted_sender is None:
            return conn.sendmail(sender, [recipient], message)
        conn.ehlo_or_helo_if_needed()
        if not conn.has_extn("pipelining"):
            return conn.sendmail(sender, [recipient], message)
        size = f" size={len(message)}" if conn.does_esmtp and conn.has_extn("size") else ""
        conn.send(f"MAIL FROM:{quoted_sender}{size}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        mail, rcpt, data = conn.getreply(), conn.getreply(), conn.getreply()
        refusal = None
        if mail[0] != 250:
            refusal = smtplib.SMTPSenderRefused(mail[0], mail[1], sender)
        elif rcpt[0] not in (250, 251):
            refusal = smtplib.SMTPRecipientsRefused({recipient: rcpt})
        elif data[0] != 354:
            refusal = smtplib.SMTPDataError(data[0], data[1])
        if refusal is not None:
            if data[0] == 354 or 421 in (mail[0], rcpt[0], data[0]):
                # Closing down, or a server that would take a message with no valid sender or
                # recipient: hang up (no QUIT, no message), the next message opens a new one.
                self._drop()
            else:
                conn._rset()  # as smtplib does after a refusal
            raise refusal
        body = (
            _LEADING_DOT.sub(b"..", message)
            if b"\n." in message or message[:1] == b"."
            else message
        )
        if body[-2:] != b"\r\n":
            body += b"\r\n"
        conn.send(body + b".\r\n")
        code, text = conn.getreply()
        if code != 250:
            if code == 421:
                self._drop()
            else:
                conn._rset()
            raise smtplib.SMTPDataError(code, text)
        return {}

    def _ready(self) -> smtplib.SMTP:
        """The open connection, checked with a NOOP if it sat idle; a new one if it is gone."""
        if self._conn is not None and time.monotonic() - self._used_at > IDLE_CHECK_SECONDS:
            try:
                code, _text = self._conn.noop()
            except (OSError, smtplib.SMTPException):
                code = 0
            if code != 250:
                self._drop()
        if self._conn is None:
            self._conn = self._connect()
            self._used_at = time.monotonic()
        return self._conn

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self.close()

    def _drop(self) -> None:
        """Close the socket without a QUIT: a server that stopped answering would make us wait."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._conn.quit()
            self._conn = None
        self._watchdog.stop()  # its thread ends; a transport used again gets a new one
        self._watchdog = _Watchdog()
