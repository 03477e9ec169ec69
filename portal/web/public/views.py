"""Pages anyone may open: the front page and the health check."""

from flask import Blueprint, render_template

from portal.web.access import public

bp = Blueprint("public", __name__)


@bp.get("/")
@public
def index():
    return render_template("public/index.html")


@bp.get("/healthz")
@public
def health():
    return {"status": "ok"}
