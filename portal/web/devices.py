"""How a session's browser is named to the person it belongs to ("Chrome on Android")."""

from __future__ import annotations

from flask_babel import gettext as _

from portal.services.sessions import describe_device


def device_label(user_agent: str) -> str:
    """A rough, recognisable name for the browser a session was opened in (names only)."""
    browser, system = describe_device(user_agent or "")
    if browser and system:
        return _("%(browser)s on %(system)s", browser=browser, system=system)
    if browser:
        return browser
    if system:
        return _("A browser on %(system)s", system=system)
    return _("A browser we could not recognise")
