"""Pages anyone may open: the front page, the health checks, and where CSP reports go."""

from flask import Blueprint, abort, render_template, request

from portal.extensions import csrf, limiter
from portal.services import csp_reports, genuine, incidents, readiness, updates
from portal.web import limits
from portal.web.access import public
from portal.web.customer.forms import GenuineForm
from portal.web.page_cache import render_public

bp = Blueprint("public", __name__)


@bp.get("/")
@public
def index():
    return render_public(
        "public/index.html", lambda: {"announced": incidents.announced_incidents()}
    )


@bp.route("/genuine", methods=["GET", "POST"])
@public
@limiter.limit(
    limits.GENUINE_PER_TYPED_AND_NETWORK,
    key_func=limits.and_network(limits.genuine_typed),
    methods=["POST"],
)
@limiter.limit(limits.GENUINE_PER_TYPED, key_func=limits.genuine_typed, methods=["POST"])
@limiter.limit(limits.GENUINE_PER_NETWORK, key_func=limits.network, methods=["POST"])
def genuine_check():
    """Is this message, link, code or caller really ours? Anyone may ask."""
    form = GenuineForm()
    answer, status = None, 200
    if form.validate_on_submit():
        answer = genuine.check(form.what.data)
    elif request.method == "POST":
        status = 422
    return render_template("public/genuine.html", form=form, answer=answer), status


@bp.get("/healthz")
@public
def health():
    """Liveness: the process answers. It touches nothing else, so a database outage does not
    get every instance restarted by its supervisor."""
    return {"status": "ok"}


@bp.get("/readyz")
@public
def ready():
    """Readiness: the database and Redis answer (200), or which of them does not (503)."""
    parts = readiness.check()
    if all(state == readiness.OK for state in parts.values()):
        return {"status": "ready"}
    return {"status": "unavailable", **parts}, 503


@bp.get("/incidents/<slug>")
@public
def incident(slug: str):
    """General information about an incident, for anyone: nothing personal on this page."""

    def page() -> dict:
        try:
            item = incidents.get_announced(slug)  # not before its first notice
        except incidents.IncidentError:
            abort(404)
        return {"incident": item, "updates": updates.published(item)}

    return render_public("public/incident.html", page)


@bp.post("/csp-report")
@public
# Browsers post reports without a CSRF token (and from wherever the page was loaded); the route
# only counts and logs a scrubbed line, so there is nothing a forged report could change.
@csrf.exempt
@limiter.limit(limits.CSP_REPORT_PER_NETWORK, key_func=limits.network)
def csp_report():
    """A browser's report that the Content-Security-Policy blocked something: 204, counted."""
    # A report is a few hundred bytes: refuse more before reading it, not after.
    request.max_content_length = csp_reports.MAX_BYTES
    content_type = request.mimetype
    if content_type not in csp_reports.CONTENT_TYPES:
        abort(415)
    try:
        violations = csp_reports.read(content_type, request.get_data(cache=False))
    except csp_reports.ReportUnreadable:
        abort(400)
    csp_reports.record(violations)
    return "", 204
