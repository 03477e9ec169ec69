"""The herd's mail sink: an SMTP server that tells the herd what each message carries.

    python bench/herd_sink.py PORT ORIGIN

It runs in its own process (its own interpreter lock), so that receiving mail does not take
turns with the herd's people. For each message it writes one JSON line to stdout: when it
arrived, to whom, and the access link (a path under ORIGIN) or the one-time code it carries,
read from its text part as a person reads it. It keeps nothing else.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import sys
import time

# The portal's promises about its messages (DESIGN.md, "Messages"): a notice's access link is an
# absolute URL on a line of its own; a code message has the code as a standalone 6-digit number.
_CODE = re.compile(r"^\s*(\d{6})\s*$", re.M)


def what_it_carries(content: bytes, origin: str) -> tuple[str | None, str | None]:
    """(the access link's path, the one-time code) a message carries; None for what it lacks."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    part = message.get_body(preferencelist=("plain",))
    text = part.get_content() if part is not None else ""
    link = re.search(r"^" + re.escape(origin) + r"(/a/\S+)\s*$", text, re.M)
    if link:
        return link.group(1), None
    code = _CODE.search(text)
    return None, code.group(1) if code else None


class Sink:
    """aiosmtpd handler: accept every message, write a line about it to `out`."""

    def __init__(self, origin: str, out) -> None:
        self.origin = origin
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        link, code = what_it_carries(envelope.content, self.origin)
        self.out.write(
            "".join(
                json.dumps({"t": arrived, "to": to.lower(), "link": link, "code": code}) + "\n"
                for to in envelope.rcpt_tos
            )
        )
        self.out.flush()
        return "250 OK"


def main() -> None:
    from aiosmtpd.controller import Controller

    port, origin = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(origin, sys.stdout), hostname="127.0.0.1", port=port)
    controller.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the herd closes our stdin
    controller.stop()


if __name__ == "__main__":
    main()
