"""Static files under names that carry their content's hash, cached by browsers for a year.

`url_for('static', filename='css/portal.css')` gives `/static/css/portal.<hash>.css`, where the
hash is the first 12 hex digits of the file's SHA-256. A changed file gets a new name, so a name
can be cached as `immutable` for a year: on notice day each browser and proxy fetches the
stylesheet and scripts once, not once per page. Every name is worked out once, when the app is
made (a deploy restarts the app with the new files), never per request.

An old page must not break after a deploy (a tab left open, a page from the back button): the
plain name, and a hashed name whose hash is no longer today's, still answer with today's file,
cached only briefly, so an old name never pins new content for a year.

The files themselves keep their names on disk: static/vendor/SHA256SUMS still holds, and the
Content-Security-Policy is unchanged (same origin, scripts by nonce).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from flask import Flask, abort, current_app, send_from_directory

HASH_LENGTH = 12
YEAR_SECONDS = 365 * 24 * 3600
LONG_CACHE = f"public, max-age={YEAR_SECONDS}, immutable"
# Five minutes: an old page's name may meet a file that changes again at the next deploy.
SHORT_SECONDS = 300
SHORT_CACHE = f"public, max-age={SHORT_SECONDS}"
# `name.<hash>.ext`, or `name.<hash>` for a file without an extension.
_HASHED = re.compile(rf"^(?P<head>.*[^/])\.[0-9a-f]{{{HASH_LENGTH}}}(?P<suffix>\.[^./]+)?$")
EXTENSION_KEY = "portal.static_files"


def hashed_name(name: str, content: bytes) -> str:
    """`css/portal.css` -> `css/portal.<first 12 hex digits of SHA-256>.css`."""
    digest = hashlib.sha256(content).hexdigest()[:HASH_LENGTH]
    folder, slash, base = name.rpartition("/")
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem:  # no extension (SHA256SUMS) or a dot file
        return f"{name}.{digest}"
    return f"{folder}{slash}{stem}.{digest}.{extension}"


def hashed_names(folder: str | Path) -> dict[str, str]:
    """Every file under folder (its path with '/'), and the name it is served under."""
    root = Path(folder)
    names = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            relative = path.relative_to(root).as_posix()
            names[relative] = hashed_name(relative, path.read_bytes())
    return names


class StaticFiles:
    """The names worked out at start: plain -> hashed, and back."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.hashed = hashed_names(folder)
        self.plain = {hashed: plain for plain, hashed in self.hashed.items()}


def _url_defaults(endpoint: str, values: dict) -> None:
    """url_for('static', filename=...) names the file with its hash (a dictionary look-up)."""
    if endpoint == "static":
        hashed = current_app.extensions[EXTENSION_KEY].hashed.get(values.get("filename"))
        if hashed is not None:
            values["filename"] = hashed


def serve(filename: str):
    """Today's file: for a year under its hashed name, briefly under any other name it had."""
    files: StaticFiles = current_app.extensions[EXTENSION_KEY]
    plain = files.plain.get(filename)
    if plain is not None:
        response = send_from_directory(files.folder, plain, max_age=YEAR_SECONDS)
        response.headers["Cache-Control"] = LONG_CACHE
        return response
    if filename not in files.hashed:
        stale = _HASHED.match(filename)
        # Only files that were there at start are served: the list is fixed with the names.
        if stale is None or stale["head"] + (stale["suffix"] or "") not in files.hashed:
            abort(404)
        filename = stale["head"] + (stale["suffix"] or "")  # an old page's name
    response = send_from_directory(files.folder, filename, max_age=SHORT_SECONDS)
    response.headers["Cache-Control"] = SHORT_CACHE
    return response


def register(app: Flask) -> None:
    """Name static files by their content and cache them accordingly (not in development,
    where a stylesheet edited while the server runs must show at the next reload)."""
    if app.config["PORTAL_ENV"] == "development" or not app.static_folder:
        return
    app.extensions[EXTENSION_KEY] = StaticFiles(app.static_folder)
    app.url_defaults(_url_defaults)
    app.view_functions["static"] = serve
