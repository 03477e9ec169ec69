"""The public pages' shared HTML: rendered once, never carrying one visitor's nonce, token, name
or message to another, and showing a change at once where it was made and within
PORTAL_PAGE_CACHE_SECONDS elsewhere (portal/web/page_cache.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event

from portal.config import ConfigError, load
from portal.extensions import db
from portal.services.imports import import_customers
from portal.services.notices import queue_notices
from tests.conftest import BrowserClient, base_env, customer_row
from tests.customer_flow import csrf_from, sign_in

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
NONCE = re.compile(r'<script [^>]*nonce="([^"]+)"')


@pytest.fixture
def incident(incident):
    """The incident, committed (the tests' requests share the test's session: an uncommitted
    incident would be committed by the first request, and a commit that changes an incident
    empties the cache, as it should)."""
    db.session.commit()
    return incident


def csrf_from_text(html: str) -> str:
    return TOKEN.search(html)[1]


def _statements(app, client, path: str) -> tuple[object, int]:
    """The response to GET `path`, and how many SQL statements answering it took."""
    seen = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        response = client.get(path)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return response, seen


def test_each_visitor_gets_their_own_nonce_and_token_from_a_page_rendered_once(app, incident):
    first, second = app.test_client(), app.test_client()
    one, queried = _statements(app, first, "/")
    assert one.status_code == 200 and queried  # rendered: it read the incidents
    two, queried = _statements(app, second, "/")
    assert two.status_code == 200 and not queried, queried  # served: nothing read
    assert "Did you get a letter?" in two.text
    nonces = [NONCE.findall(page.text) for page in (one, two)]
    assert all(len(set(found)) == 1 for found in nonces)  # one nonce a page, in every script tag
    assert nonces[0][0] != nonces[1][0]
    for page, found in zip((one, two), nonces, strict=True):
        assert f"'nonce-{found[0]}'" in page.headers["Content-Security-Policy"]
    tokens = [csrf_from(page) for page in (one, two)]
    assert tokens[0] != tokens[1]
    assert two.text.count(tokens[1]) == 2  # htmx's header and the language form's field
    # Each token is its own visitor's: it switches their language, and not the other's.
    assert second.post("/language", data={"csrf_token": tokens[1], "lang": "es"}).status_code == 302
    assert first.post("/language", data={"csrf_token": tokens[1], "lang": "es"}).status_code == 400
    assert "marker" not in two.text and "nonce" + "0" * 4 not in two.text


def test_the_languages_are_kept_apart(app, incident):
    english = app.test_client().get("/", headers={"Accept-Language": "en"}).text
    spanish = app.test_client().get("/", headers={"Accept-Language": "es"}).text
    again = app.test_client().get("/", headers={"Accept-Language": "en"}).text
    assert '<html lang="en">' in english and "Did you get a letter?" in english
    assert '<html lang="es">' in spanish and "¿Recibió una carta?" in spanish
    assert again == english.replace(csrf_from_text(english), csrf_from_text(again)).replace(
        NONCE.search(english)[1], NONCE.search(again)[1]
    )


def test_a_signed_in_customer_is_never_served_the_shared_page_nor_shares_theirs(
    app, incident, write_csv
):
    rows = [customer_row(1, email="ann@example.com", phone="")]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    app.test_client().get("/")  # the shared page is made
    customer = app.test_client()
    sign_in(customer, "ann@example.com")
    mine, queried = _statements(app, customer, "/")
    assert queried  # rendered for her: her session is more than a token and a language
    theirs = app.test_client().get("/")
    assert csrf_from(mine) not in theirs.text


def test_a_flashed_message_or_a_notice_to_come_back_to_is_rendered_for_its_visitor_only(
    app, incident
):
    app.test_client().get("/")  # the shared page is made
    flashed = app.test_client()
    with flashed.session_transaction() as session:
        session["_flashes"] = [("info", "A message for this visitor alone")]
    assert "A message for this visitor alone" in flashed.get("/").text
    assert "A message for this visitor alone" not in app.test_client().get("/").text
    came_from_a_notice = app.test_client()
    with came_from_a_notice.session_transaction() as session:
        session["notice"] = 1  # whose helpline to show: this visitor's own incident
    _response, queried = _statements(app, came_from_a_notice, "/")
    assert queried


def test_a_query_string_is_never_kept(app, incident):
    app.test_client().get("/")
    _response, queried = _statements(app, app.test_client(), "/?utm_source=letter")
    assert queried


def test_a_change_shows_at_once_in_its_process_and_within_the_seconds_in_another(
    app, incident, make_app, env, clock
):
    other = make_app(env)  # a second process of the same deployment
    other.test_client_class = BrowserClient
    path = f"/incidents/{incident.slug}"
    assert "We closed the access" in app.test_client().get(path).text
    with other.app_context():
        assert "We closed the access" in other.test_client().get(path).text
    incident.what_we_are_doing = "We rotated every password."
    db.session.commit()
    assert "We rotated every password." in app.test_client().get(path).text
    with other.app_context():
        assert "We closed the access" in other.test_client().get(path).text  # its copy
        clock.move(timedelta(seconds=5))
        assert "We rotated every password." in other.test_client().get(path).text


def test_an_unknown_incident_is_a_404_every_time_and_never_kept(app, incident):
    for _ in range(2):
        response, queried = _statements(app, app.test_client(), "/incidents/no-such-thing")
        assert response.status_code == 404 and queried


def test_a_withdrawn_incident_leaves_its_page_at_once(app, incident):
    path = f"/incidents/{incident.slug}"
    assert incident.title in app.test_client().get(path).text
    db.session.delete(incident)
    db.session.commit()
    assert app.test_client().get(path).status_code == 404


def test_the_cache_can_be_turned_off_and_refuses_a_wrong_setting(make_app, database_url):
    app = make_app(base_env(database_url, PORTAL_PAGE_CACHE_SECONDS="0"))
    with app.app_context():
        app.test_client().get("/")
        _response, queried = _statements(app, app.test_client(), "/")
        assert queried
    with pytest.raises(ConfigError, match="PORTAL_PAGE_CACHE_SECONDS must be a whole number"):
        load(base_env(database_url, PORTAL_PAGE_CACHE_SECONDS="soon"))
