"""Prove it again: one rule for the staff acts that need a recent password and code.

`@fresh_within(minutes=5)` lets a view run only on a proof from the last five minutes, like
flask-security's `auth_required(within=...)`. Without one, the person is asked for their password
and code first, and nothing they did is lost:

- a GET (an export, a form page) comes back to the same address after the proof;
- a POST is kept (its fields and files, sealed in the database under a random id, tied to this
  staff session, for 15 minutes: never in a URL nor on disk, and on every app instance), and the
  proof is sent to the same address, which then does what was asked with what was kept.
  Nobody enters or chooses anything twice.
"""

from __future__ import annotations

import base64
import hmac
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import delete, select
from werkzeug.datastructures import FileStorage, ImmutableMultiDict, MultiDict

from portal import clock
from portal.extensions import db
from portal.models import KeptAct as KeptActRow
from portal.models.staff import KEPT_ACT_TTL
from portal.services import staff as staff_service
from portal.unit_of_work import write_is_the_point
from portal.web import limits
from portal.web.navigation import safe_next

# The form field that carries a kept act's id back with the password and code.
RESUME_FIELD = "resume"
# The act the next "Confirm it is you" page finishes (its id, in the Flask session).
_OFFERED = "kept_act"
# A staff session idle for 15 minutes has ended, and with it any act it kept.
KEPT_TTL = KEPT_ACT_TTL


def fresh_within(*, minutes: int) -> Callable:
    """Run the view only on a password and code given within `minutes`; else ask for them first,
    then finish the request as it was made."""
    window = timedelta(minutes=minutes)

    def decorate(view: Callable) -> Callable:
        # A kept act's page takes the password and code too: the same allowance as
        # /staff/reauth, or a stolen session could guess here without limit.
        @limits.reauthentication(exempt_when=_not_resuming)
        @wraps(view)
        def fresh_view(*args, **kwargs):
            if request.method == "POST" and RESUME_FIELD in request.form:
                return _resume(view, args, kwargs)
            if current_user.is_fresh(window):
                return view(*args, **kwargs)
            flash(
                _("Confirm it is you first: this action needs your password and code again."),
                "info",
            )
            if request.method in ("GET", "HEAD"):
                # Nothing was entered: after the proof, the same address again. An act kept
                # earlier is dropped, not finished by this proof (the person has moved on).
                # Dropping it is the point of this GET: it must not be finished later.
                write_is_the_point(KeptActRow)
                forget()
                here = request.full_path if request.query_string else request.path
                return redirect(url_for("staff.reauth", next=here))
            session[_OFFERED] = _keep()
            return redirect(url_for("staff.reauth", next=_came_from()))

        return fresh_view

    return decorate


def _not_resuming() -> bool:
    return not (request.method == "POST" and RESUME_FIELD in request.form)


def prove(form) -> bool:
    """Check a "Confirm it is you" form (password, and a code or a security key's answer);
    on a refusal, put the reason on the form."""
    try:
        staff_service.reauthenticate(
            current_user.session,
            form.password.data,
            (form.code.data or "").strip(),
            key_answer=form.key_answer.data or "",
        )
    except staff_service.KeyRequired as exc:
        form.code.errors.append(str(exc))
        return False
    except staff_service.SignInFailed:
        if form.key_answer.data:
            form.code.errors.append(_("That password and security key do not match."))
        else:
            form.code.errors.append(_("That password and code do not match."))
        return False
    return True


def ask(form, target: str, status: int = 200, kept_id: str | None = None):
    """The "Confirm it is you" page; on success it finishes the kept act, when there is one."""
    from portal.services import security_keys

    act = _load(session.get(_OFFERED, "") if kept_id is None else kept_id)
    session_ = current_user.session
    return render_template(
        "staff/reauth.html",
        form=form,
        target=target,
        act=act,
        key_options=security_keys.sign_options(session_),
        codes_allowed=not staff_service.codes_refused(session_.staff),
    ), status


def forget() -> None:
    """Drop the act offered to this browser, files and all (signing out, or moving on)."""
    act = _load(session.pop(_OFFERED, ""))
    if act is not None:
        act.discard()


def _resume(view: Callable, args, kwargs):
    from portal.web.staff.forms import ReauthForm

    form = ReauthForm()
    target = safe_next(request.form.get("next")) or url_for("staff.queue")
    if form.validate_on_submit() and prove(form):
        act = _load(request.form[RESUME_FIELD])
        if session.get(_OFFERED) == request.form[RESUME_FIELD]:
            session.pop(_OFFERED)
        if act is None or (act.endpoint, act.path) != (request.endpoint, request.path):
            flash(
                _("Confirmed, but what you started is no longer kept: please do it again."),
                "error",
            )
            return redirect(target)
        try:
            act.install()
            return view(*args, **kwargs)
        finally:
            act.discard()
    return ask(form, target, 422, kept_id=request.form[RESUME_FIELD])


@dataclass
class KeptAct:
    """A POST kept while its sender proves who they are: what it asked for, and with what."""

    id: str
    endpoint: str
    path: str
    form: list[tuple[str, str]]
    files: list[tuple[str, str, str, bytes]]  # field, file name as sent, content type, content

    def install(self) -> None:
        """This request now carries the kept fields and files, with its own CSRF token (checked
        already) so the view's form validates as it would have the first time."""
        form = MultiDict(self.form)
        form["csrf_token"] = request.form.get("csrf_token", "")
        files = MultiDict()
        for field, filename, content_type, content in self.files:
            files.add(field, FileStorage(io.BytesIO(content), filename, field, content_type))
        request.form = ImmutableMultiDict(form)
        request.files = ImmutableMultiDict(files)
        request.__dict__.pop("values", None)  # computed from the old form, if it was read

    def discard(self) -> None:
        """Delete the kept row (in this request's unit of work): an act is finished once."""
        db.session.execute(delete(KeptActRow).where(KeptActRow.public_id == self.id))
        db.session.flush()


def _keep() -> str:
    """Keep this POST (form fields and files) for this staff session; return its id."""
    _purge()
    files = [
        (field, upload.filename or "", upload.content_type or "", upload.read())
        for field, upload in request.files.items(multi=True)
    ]
    row = KeptActRow(
        public_id=secrets.token_urlsafe(18),
        session_id=current_user.session.id,
        endpoint=request.endpoint,
        path=request.path,
        created_at=clock.now(),
    )
    # Sealed in the database, never a file: the form holds personal data (a new address, a
    # reason, a customer file), and any app instance must be able to finish it after the proof.
    row.payload = {
        "form": [[k, v] for k, v in request.form.items(multi=True) if k != "csrf_token"],
        "files": [[f, n, t, base64.b64encode(c).decode("ascii")] for f, n, t, c in files],
    }
    db.session.add(row)
    db.session.flush()
    return row.public_id


def _load(kept_id: str) -> KeptAct | None:
    """The act kept under this id, if it is this staff session's and not too old."""
    if not kept_id or len(kept_id) > 32:
        return None
    row = db.session.scalars(select(KeptActRow).where(KeptActRow.public_id == kept_id)).first()
    if row is None or clock.now() - row.created_at > KEPT_TTL:
        return None
    # The id is random, yet compared in constant time with the owner's session like a secret.
    owner = str(getattr(current_user.session, "id", ""))
    if not hmac.compare_digest(str(row.session_id), owner):
        return None  # another session's: as if it did not exist
    payload = row.payload
    return KeptAct(
        id=row.public_id,
        endpoint=row.endpoint,
        path=row.path,
        form=[tuple(pair) for pair in payload["form"]],
        files=[(f, n, t, base64.b64decode(c)) for f, n, t, c in payload["files"]],
    )


def purge_expired() -> int:
    """Delete the acts nobody came back for within KEPT_TTL; return how many."""
    result = db.session.execute(
        delete(KeptActRow).where(KeptActRow.created_at < clock.now() - KEPT_TTL)
    )
    db.session.flush()
    return result.rowcount or 0


_purge = purge_expired


def _came_from() -> str:
    """The page the form was on (for when the act can no longer be finished)."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        return safe_next(referrer.path) or url_for("staff.queue")
    return url_for("staff.queue")
