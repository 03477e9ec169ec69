"""Admin: searching the audit log and checking its hash chain."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext

from portal.services import audit
from portal.web import input as request_input
from portal.web.access import staff
from portal.web.admin.blueprint import bp
from portal.web.admin.common import current_actor
from portal.web.staff.forms import ActionForm


def _day(value: str):
    """The start of the day in value (UTC), or None when empty; ValueError when it is no date
    the portal accepts (the day after 9999-12-31 would not exist: it was a 500)."""
    parsed = request_input.day(value)
    return datetime.combine(parsed, time.min, tzinfo=UTC) if parsed else None


@bp.get("/audit")
@staff("admin")
def audit_log():
    args = request.args
    try:
        page = int(args.get("page", "1"))
    except ValueError:
        page = 1  # a page link, not something a person types: the first page will do
    try:
        since, until = _day(args.get("since", "")), _day(args.get("until", ""))
    except ValueError:
        # A search on a date that is not one would show the wrong events: say so, search nothing.
        flash(request_input.DAY_EXPECTED, "error")
        return render_template(
            "admin/audit.html", result=audit.Page([], 1, 1), args=args, action=ActionForm()
        ), 400
    result = audit.search(
        actor=args.get("actor", "").strip(),
        action=args.get("action", "").strip(),
        subject=args.get("subject", "").strip(),
        since=since,
        until=until + timedelta(days=1) if until else None,
        page=page,
    )
    return render_template("admin/audit.html", result=result, args=args, action=ActionForm())


@bp.post("/audit/verify")
@staff("admin")
def audit_verify():
    # Against the newest checkpoint too: a deleted tail or a wiped table is a break.
    report = audit.verify_anchored()
    if report.broken_at is not None:
        flash(
            _(
                "The audit chain is broken at event %(id)d: %(reason)s",
                id=report.broken_at,
                reason=report.reason,
            ),
            "error",
        )
    elif report.missing:
        flash(
            ngettext(
                "The audit chain is broken: %(num)d event is missing since the checkpoint of "
                "%(time)s.",
                "The audit chain is broken: %(num)d events are missing since the checkpoint of "
                "%(time)s.",
                report.missing,
                time=report.checkpoint.when,
            ),
            "error",
        )
    elif report.anchor_error:
        flash(
            _("The newest audit checkpoint was changed or forged: it cannot be trusted."),
            "error",
        )
    else:
        flash(_("The audit chain is intact (%(count)d events).", count=report.checked), "info")
    audit.record(
        "audit.verified",
        actor=current_actor(),
        outcome="failure" if report.broken else "success",
    )
    return redirect(url_for("admin.audit_log"))
