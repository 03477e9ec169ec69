"""Static files: content-hashed names cached for a year; old names still answer, briefly cached."""

from __future__ import annotations

import hashlib
import re

from flask import Flask, url_for

from portal import ROOT
from portal.web import static_files
from portal.web.static_files import LONG_CACHE, SHORT_CACHE, hashed_names

_ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def _fetch(client, path: str):
    response = client.get(path)
    body = response.get_data()
    response.close()
    return response, body


def test_a_pages_stylesheet_and_scripts_carry_their_hash_and_are_cached_for_a_year(client):
    page = client.get("/").get_data(as_text=True)
    assets = _ASSET.findall(page)
    assert {"css/portal", "js/portal", "vendor/htmx-2.0.11.min"} <= {
        re.sub(r"\.[0-9a-f]{12}\.\w+$", "", path.removeprefix("/static/")) for path in assets
    }
    for path in assets:
        plain = re.sub(r"\.([0-9a-f]{12})(\.\w+)$", r"\2", path.removeprefix("/static/"))
        content = (ROOT / "static" / plain).read_bytes()
        # The name's hash is the content's: a changed file can never hide behind an old name.
        assert path.split(".")[-2] == hashlib.sha256(content).hexdigest()[:12], path
        response, body = _fetch(client, path)
        assert response.status_code == 200 and body == content, path
        assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable", path
        assert "no-store" not in response.headers["Cache-Control"]


def test_the_vendored_htmx_under_its_hashed_name_is_the_one_recorded_in_sha256sums(client):
    recorded = dict(
        reversed(line.split())
        for line in (ROOT / "static" / "vendor" / "SHA256SUMS").read_text().splitlines()
    )
    page = client.get("/").get_data(as_text=True)
    path = re.search(r'src="(/static/vendor/htmx-2\.0\.11\.min\.[0-9a-f]{12}\.js)"', page).group(1)
    _response, body = _fetch(client, path)
    assert hashlib.sha256(body).hexdigest() == recorded["htmx-2.0.11.min.js"]
    # The scripts still load by the page's nonce under the same policy.
    csp = client.get("/").headers["Content-Security-Policy"]
    assert "script-src 'nonce-" in csp and "style-src 'self'" in csp


def test_a_plain_or_stale_name_still_answers_with_todays_file_briefly_cached(client):
    today = (ROOT / "static" / "css" / "portal.css").read_bytes()
    for path in ("/static/css/portal.css", "/static/css/portal.0123456789ab.css"):
        response, body = _fetch(client, path)
        assert response.status_code == 200 and body == today, path
        assert response.headers["Cache-Control"] == SHORT_CACHE, path
    for path in ("/static/css/nothing.css", "/static/css/nothing.0123456789ab.css"):
        assert _fetch(client, path)[0].status_code == 404, path


def _served_from(folder) -> Flask:
    """An app serving folder the portal's way, as a restart after a deploy would make it."""
    made = Flask("deploy", static_folder=str(folder), static_url_path="/static")
    made.config["PORTAL_ENV"] = "production"
    static_files.register(made)
    return made


def test_a_changed_file_gets_a_new_name_and_its_old_name_is_no_longer_long_cached(tmp_path):
    (tmp_path / "app.css").write_text("body { color: black; }")
    (tmp_path / "app.js").write_text("// unchanged")
    before = _served_from(tmp_path)
    with before.test_request_context():
        old_css, old_js = (
            url_for("static", filename="app.css"),
            url_for("static", filename="app.js"),
        )
    assert re.fullmatch(r"/static/app\.[0-9a-f]{12}\.css", old_css)

    (tmp_path / "app.css").write_text("body { color: navy; }")  # the next release
    after = _served_from(tmp_path)
    with after.test_request_context():
        new_css, new_js = (
            url_for("static", filename="app.css"),
            url_for("static", filename="app.js"),
        )
    assert new_css != old_css and new_js == old_js
    client = after.test_client()
    response, body = _fetch(client, new_css)
    assert body == b"body { color: navy; }" and response.headers["Cache-Control"] == LONG_CACHE
    # An old page asks for the old name: it gets today's file, cached only briefly.
    response, body = _fetch(client, old_css)
    assert body == b"body { color: navy; }" and response.headers["Cache-Control"] == SHORT_CACHE


def test_names_are_worked_out_once_at_start_not_per_request(client, monkeypatch):
    hashed = []
    real = static_files.hashed_name
    monkeypatch.setattr(static_files, "hashed_name", lambda *a: hashed.append(a) or real(*a))
    for _ in range(5):
        page = client.get("/").get_data(as_text=True)
        for path in _ASSET.findall(page):
            _fetch(client, path)
    assert hashed == []


def test_every_static_file_has_a_hashed_name():
    names = hashed_names(ROOT / "static")
    assert set(names) >= {"css/portal.css", "js/portal.js", "vendor/SHA256SUMS", "favicon.svg"}
    assert re.fullmatch(r"vendor/SHA256SUMS\.[0-9a-f]{12}", names["vendor/SHA256SUMS"])
