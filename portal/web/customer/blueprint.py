"""The one blueprint of the customer's pages: every journey module registers its routes on it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("customer", __name__)
