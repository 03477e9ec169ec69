"""Which of the portal's languages a locale reads."""

from __future__ import annotations

from flask import current_app


def language_for(locale: str | None) -> str:
    """The portal language for a locale like "es-MX": its language if we have it, else English."""
    language = (locale or "").split("-")[0].split("_")[0].lower()
    return language if language in current_app.config["LANGUAGES"] else "en"
