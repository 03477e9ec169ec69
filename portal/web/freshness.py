"""Prove it again: one rule for the staff acts that need a recent password and code.

`@fresh_within(minutes=5)` lets a view run only on a proof from the last five minutes, like
flask-security's `auth_required(within=...)`. Without one, the person is asked for their password
and code first, and nothing they did is lost:

- a GET (an export, a form page) comes back to the same address after the proof;
- a POST is kept (its fields, and any file in the instance folder under a random name, tied to
  this staff session: never in a URL), and the proof is sent to the same address, which then does
  what was asked with what was kept. Nobody enters or chooses anything twice.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.datastructures import FileStorage, ImmutableMultiDict, MultiDict

from portal.services import staff as staff_service
from portal.web import limits
from portal.web.navigation import safe_next

# The form field that carries a kept act's id back with the password and code.
RESUME_FIELD = "resume"
# The act the next "Confirm it is you" page finishes (its id, in the Flask session).
_OFFERED = "kept_act"
# A staff session idle for 15 minutes has ended, and with it any act it kept.
KEPT_TTL = timedelta(minutes=15)


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
    session_id: int
    endpoint: str
    path: str
    form: list[tuple[str, str]]
    files: list[tuple[str, str, str, str]]  # field, file name as sent, content type, stored as
    _handles: tuple = ()

    def install(self) -> None:
        """This request now carries the kept fields and files, with its own CSRF token (checked
        already) so the view's form validates as it would have the first time."""
        form = MultiDict(self.form)
        form["csrf_token"] = request.form.get("csrf_token", "")
        files = MultiDict()
        handles = []
        for field, filename, content_type, stored in self.files:
            handle = (_folder() / stored).open("rb")
            handles.append(handle)
            files.add(field, FileStorage(handle, filename, field, content_type))
        self._handles = tuple(handles)
        request.form = ImmutableMultiDict(form)
        request.files = ImmutableMultiDict(files)
        request.__dict__.pop("values", None)  # computed from the old form, if it was read

    def discard(self) -> None:
        for handle in self._handles:
            handle.close()
        for _field, _filename, _type, stored in self.files:
            (_folder() / stored).unlink(missing_ok=True)
        (_folder() / f"{self.id}.json").unlink(missing_ok=True)


def _folder() -> Path:
    folder = Path(current_app.instance_path) / "kept"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _private(path: Path) -> None:
    path.chmod(0o600)  # personal data (a reason, a contact, a customer file): the owner only


def _keep() -> str:
    """Keep this POST (form fields and files) for this staff session; return its id."""
    _purge()
    kept_id = secrets.token_urlsafe(18)
    folder = _folder()
    files = []
    for number, (field, upload) in enumerate(request.files.items(multi=True)):
        stored = f"{kept_id}.{number}"
        upload.save(folder / stored)
        _private(folder / stored)
        files.append((field, upload.filename or "", upload.content_type or "", stored))
    record = {
        "session_id": current_user.session.id,
        "endpoint": request.endpoint,
        "path": request.path,
        "form": [(k, v) for k, v in request.form.items(multi=True) if k != "csrf_token"],
        "files": files,
    }
    path = folder / f"{kept_id}.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    _private(path)
    return kept_id


def _load(kept_id: str) -> KeptAct | None:
    """The act kept under this id, if it is this staff session's and not too old."""
    if not kept_id or not kept_id.replace("-", "").replace("_", "").isalnum():
        return None
    path = _folder() / f"{kept_id}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if time.time() - path.stat().st_mtime > KEPT_TTL.total_seconds():
            return None
    except (OSError, ValueError):
        return None
    if record["session_id"] != getattr(current_user.session, "id", None):
        return None  # another session's: as if it did not exist
    return KeptAct(
        id=kept_id,
        session_id=record["session_id"],
        endpoint=record["endpoint"],
        path=record["path"],
        form=[tuple(pair) for pair in record["form"]],
        files=[tuple(entry) for entry in record["files"]],
    )


def _purge() -> None:
    """Acts nobody came back for (housekeeping by the files' age, not the app's clock)."""
    horizon = time.time() - KEPT_TTL.total_seconds()
    for path in _folder().iterdir():
        with contextlib.suppress(FileNotFoundError):  # another request took it first
            if path.stat().st_mtime < horizon:
                path.unlink()


def _came_from() -> str:
    """The page the form was on (for when the act can no longer be finished)."""
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc == request.host:
        return safe_next(referrer.path) or url_for("staff.queue")
    return url_for("staff.queue")
