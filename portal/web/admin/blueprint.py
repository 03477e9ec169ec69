"""The one blueprint of the admin pages: every area's module registers its routes on it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")
