"""What the admin areas share: who is acting, and the incident or job a URL names."""

from __future__ import annotations

from flask import abort
from flask_login import current_user

from portal.models.audit import staff_actor
from portal.services import background, incidents


def current_actor() -> str:
    """The signed-in admin, as audit events and jobs name them."""
    return staff_actor(current_user.staff)


def incident_or_404(slug: str):
    try:
        return incidents.get_by_slug(slug)
    except incidents.IncidentError:
        abort(404)


def job_or_404(public_id: str):
    job = background.get(public_id)
    if job is None:
        abort(404)
    return job
