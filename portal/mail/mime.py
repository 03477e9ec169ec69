"""The bytes of an email: one builder (the standard library's), and its fast twin for templates.

A notice campaign renders its message once per variant (language, which data types, which of
them carry a masked fragment) into a template with slots for what differs per person (the link,
the reference code, the fragments). The worker fills the slots when it sends. `build_email` is
the one definition of a message's bytes; `Skeleton` is the same bytes cut once per template at
the slots, so that filling costs string joins instead of the email package's header parsing and
quoted-printable encoding of the whole body (about 1.5 ms a message). A value the cut could not
reproduce exactly (an address the header would fold or quote) takes `build_email` itself.
"""

from __future__ import annotations

import hashlib
import re
import sys
from email import quoprimime
from email.message import EmailMessage
from email.policy import SMTP
from email.policy import default as default_policy

from markupsafe import escape

# A slot in a template's text: private-use characters, which no template, translation or
# escaping produces or changes.
_OPEN, _CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_OPEN}([a-z0-9]+){_CLOSE}")


def slot(name: str) -> str:
    """The placeholder for a per-person value named `name` (lowercase letters and digits)."""
    return f"{_OPEN}{name}{_CLOSE}"


def fill(template: str, values: dict[str, str], *, html: bool) -> str:
    """template with each slot replaced by its value (escaped in HTML, as Jinja would have)."""
    if html:
        return _SLOT.sub(lambda m: str(escape(values[m.group(1)])), template)
    return _SLOT.sub(lambda m: values[m.group(1)], template)


def build_email(
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    date: str,
    locale: str,
    text: str,
    html: str,
    boundary: str | None = None,
) -> bytes:
    """The message as handed to the server: text and HTML alternatives, quoted-printable."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient  # the header policy refuses CR/LF: no header injection
    email["Subject"] = subject
    email["Message-ID"] = message_id
    email["Date"] = date
    email["Content-Language"] = locale
    email["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the message 7-bit clean for any server.
    email.set_content(text, cte="quoted-printable")
    email.add_alternative(html, subtype="html", cte="quoted-printable")
    if boundary is not None:
        email.set_boundary(boundary)
    return email.as_bytes(policy=SMTP)


def boundary_for(message_id: str) -> str:
    """The MIME boundary of a templated message, in the standard library's own form.

    Derived from the Message-ID, so every try of a message is the very same bytes.
    """
    number = int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:8]) % sys.maxsize
    return "=" * 15 + f"{number:019d}" + "=="


# Stand-ins the standard library writes out unchanged, cut out of its output again.
_TO = "qqto@slot.invalid"
_MESSAGE_ID = "<qqmid@slot.invalid>"
_DATE = "Thu, 01 Jan 1970 00:00:00 +0000"
_BOUNDARY = "=" * 15 + "0" * 19 + "=="
_LINE = "qqslot{}qq"
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# What the fast path writes as is: a plain address, and the line it makes must not fold.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)
_PLAIN_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")  # printable ASCII, no < > or spaces


class Skeleton:
    """A template's message cut at its slots: assemble() is build_email() of the filled text.

    Quoted-printable encodes each line on its own, so the lines without a slot are encoded once
    here, by the standard library, and only the few lines with one are encoded per message.
    """

    def __init__(self, *, sender: str, subject: str, locale: str, text: str, html: str):
        self.sender, self.subject, self.locale = sender, subject, locale
        self.text, self.html = text, html
        self.lines: list[tuple[str, bool]] = []  # (line with slots, is html)
        marked_text = self._mark(text, html=False)
        marked_html = self._mark(html, html=True)
        raw = build_email(
            sender=sender,
            recipient=_TO,
            subject=subject,
            message_id=_MESSAGE_ID,
            date=_DATE,
            locale=locale,
            text=marked_text,
            html=marked_html,
            boundary=_BOUNDARY,
        )
        head, body = raw.split(b"\r\n\r\n", 1)
        self.pieces: list[bytes | str | int] = []
        stand_ins = {_TO: "to", _MESSAGE_ID: "message_id", _DATE: "date", _BOUNDARY: "boundary"}
        head_cut = re.compile("|".join(re.escape(s) for s in stand_ins).encode())
        body_cut = re.compile(re.escape(_BOUNDARY).encode() + rb"|qqslot(\d+)qq")
        self._cut(head, head_cut, lambda m: stand_ins[m.group(0).decode()])
        self.pieces.append(b"\r\n\r\n")
        self._cut(body, body_cut, lambda m: "boundary" if m.group(1) is None else int(m.group(1)))
        expected = {"to": 1, "message_id": 1, "date": 1}
        for name, count in expected.items():
            if self.pieces.count(name) != count:
                raise ValueError(f"the template's {name} header could not be cut out")
        if sorted(p for p in self.pieces if isinstance(p, int)) != list(range(len(self.lines))):
            raise ValueError("a line with a slot could not be cut out")

    def _mark(self, text: str, *, html: bool) -> str:
        # The same split as the standard library's (bytes.splitlines of the UTF-8 text).
        lines = text.encode().splitlines()
        out = []
        for line in lines:
            decoded = line.decode()
            if _OPEN in decoded:
                out.append(_LINE.format(len(self.lines)))
                self.lines.append((decoded, html))
            else:
                out.append(decoded)
        return "\n".join(out) + ("\n" if text.endswith(("\n", "\r")) else "")

    def _cut(self, data: bytes, pattern: re.Pattern, name_of) -> None:
        start = 0
        for match in pattern.finditer(data):
            if match.start() > start:
                self.pieces.append(data[start : match.start()])
            self.pieces.append(name_of(match))
            start = match.end()
        if start < len(data):
            self.pieces.append(data[start:])

    def assemble(
        self, *, recipient: str, message_id: str, date: str, values: dict[str, str]
    ) -> bytes:
        """The message for one person: byte for byte what build_email makes of it."""
        if not (
            _PLAIN_ADDRESS.fullmatch(recipient)
            and len(recipient) <= 74  # "To: " + it within 78: the header is not folded
            and _PLAIN_ID.fullmatch(message_id)
            and len(message_id) <= 66  # "Message-ID: " + it within 78
            and not _LINE_BREAK.search("".join(values.values()))
        ):
            return self.build(recipient=recipient, message_id=message_id, date=date, values=values)
        known = {
            "to": recipient.encode(),
            "message_id": message_id.encode(),
            "date": date.encode(),
            "boundary": boundary_for(message_id).encode(),
        }
        out = []
        for piece in self.pieces:
            if type(piece) is bytes:
                out.append(piece)
            elif type(piece) is str:
                out.append(known[piece])
            else:
                line, html = self.lines[piece]
                filled = fill(line, values, html=html).encode().decode("latin-1")
                encoded = quoprimime.body_encode(filled, default_policy.max_line_length)
                out.append(encoded.replace("\n", "\r\n").encode("ascii"))
        return b"".join(out)

    def build(self, *, recipient: str, message_id: str, date: str, values: dict[str, str]) -> bytes:
        """The same message by the standard library alone (the reference the fast path meets)."""
        return build_email(
            sender=self.sender,
            recipient=recipient,
            subject=self.subject,
            message_id=message_id,
            date=date,
            locale=self.locale,
            text=fill(self.text, values, html=False),
            html=fill(self.html, values, html=True),
            boundary=boundary_for(message_id),
        )
