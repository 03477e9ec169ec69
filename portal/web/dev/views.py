"""The development mailbox: read what the outbox holds. Only when PORTAL_ENV=development."""

import re

from flask import Blueprint, abort, current_app, render_template

from portal.services import devmail
from portal.web.access import development_only

bp = Blueprint("dev", __name__, url_prefix="/dev")


@bp.app_template_filter("portal_links")
def portal_links(text: str) -> list[str]:
    """Links to this portal found in a message, to click in the development mailbox."""
    base = re.escape(current_app.config["BASE_URL"])
    return re.findall(base + r"/\S+", text)


@bp.get("/mail")
@development_only
def mailbox():
    return render_template("dev/mailbox.html", messages=devmail.recent())


@bp.get("/mail/<int:message_id>")
@development_only
def message(message_id: int):
    opened = devmail.get(message_id) or abort(404)
    return render_template("dev/message.html", message=opened)


@bp.get("/mail/<int:message_id>/html")
@development_only
def message_html(message_id: int):
    opened = devmail.get(message_id) or abort(404)
    # The message's own HTML, framed by our page only, sandboxed: no script may run in it.
    headers = {
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:; sandbox; frame-ancestors 'self'",
        "X-Frame-Options": "SAMEORIGIN",
    }
    return opened.html, 200, headers
