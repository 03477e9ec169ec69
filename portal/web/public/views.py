"""Pages anyone may open: the front page and the health check."""

from flask import Blueprint, abort, render_template

from portal.services import incidents, updates
from portal.web.access import public

bp = Blueprint("public", __name__)


@bp.get("/")
@public
def index():
    return render_template("public/index.html", announced=incidents.announced_incidents())


@bp.get("/healthz")
@public
def health():
    return {"status": "ok"}


@bp.get("/incidents/<slug>")
@public
def incident(slug: str):
    """General information about an incident, for anyone: nothing personal on this page."""
    try:
        item = incidents.get_by_slug(slug)
    except incidents.IncidentError:
        abort(404)
    return render_template("public/incident.html", incident=item, updates=updates.published(item))
