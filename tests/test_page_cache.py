"""The public pages' shared HTML: rendered once, never carrying one visitor's nonce, token, name
or message to another, and showing a change at once where it was made and within
PORTAL_PAGE_CACHE_SECONDS elsewhere (portal/web/page_cache.py)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from portal.config import ConfigError, load
from portal.extensions import db
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.web import page_cache
from tests.conftest import INCIDENT, BrowserClient, base_env, customer_row
from tests.customer_flow import csrf_from, sign_in

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
NONCE = re.compile(r'<script [^>]*nonce="([^"]+)"')


@pytest.fixture
def incident(incident, write_csv):
    """The incident, announced (its first notice queued: it has a public page) and committed
    (the tests' requests share the test's session: an uncommitted incident would be committed
    by the first request, and a commit that changes an incident empties the cache, as it
    should)."""
    _announce(incident, write_csv, 1)
    return incident


def _announce(incident, write_csv, n: int) -> None:
    rows = [customer_row(n, email=f"person{n}@example.com", phone="")]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()


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


def test_a_signed_in_customer_is_never_served_the_shared_page_nor_shares_theirs(app, incident):
    app.test_client().get("/")  # the shared page is made
    customer = app.test_client()
    sign_in(customer, "person1@example.com")  # notified by the fixture
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
    app, incident, make_app, env, monkeypatch
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
        later = page_cache.monotonic() + 5
        monkeypatch.setattr(page_cache, "monotonic", lambda: later)
        assert "We rotated every password." in other.test_client().get(path).text


def test_an_unknown_incident_is_a_404_every_time_and_never_kept(app, incident):
    for _ in range(2):
        response, queried = _statements(app, app.test_client(), "/incidents/no-such-thing")
        assert response.status_code == 404 and queried


def test_an_incident_has_no_public_page_before_its_first_notice_however_its_slug_is_guessed(
    app, incident, write_csv
):
    quiet = create_incident(
        **{**INCIDENT, "slug": "quiet-2026", "title": "Not told yet"},
        actor="test",
    )
    db.session.commit()
    for _ in range(2):  # and the refusal is not kept
        assert app.test_client().get("/incidents/quiet-2026").status_code == 404
    _announce(quiet, write_csv, 2)
    page = app.test_client().get("/incidents/quiet-2026").text
    assert "Not told yet" in page


def test_two_incidents_each_get_their_own_page(app, incident, write_csv):
    other = create_incident(
        **{**INCIDENT, "slug": "other-2026", "title": "Another breach entirely"}, actor="test"
    )
    _announce(other, write_csv, 2)
    first = app.test_client().get(f"/incidents/{incident.slug}").text
    second = app.test_client().get("/incidents/other-2026").text
    assert "Another breach entirely" in second and "Another breach entirely" not in first
    assert 'name="next" value="/incidents/other-2026"' in second
    assert f'name="next" value="/incidents/{incident.slug}"' in first


def test_a_port_in_the_host_is_no_new_page_and_the_oldest_page_makes_room(
    app, incident, monkeypatch
):
    cache = app.extensions["portal.page_cache"]
    for port in (8000, 8001):
        app.test_client().get("/", headers={"Host": f"localhost:{port}"})
    assert len(cache.pages) == 1
    monkeypatch.setattr(page_cache, "_MAX_PAGES", 2)
    app.test_client().get(f"/incidents/{incident.slug}")
    app.test_client().get("/", headers={"Accept-Language": "es"})
    assert [key[0:2] for key in cache.pages] == [
        ("public/incident.html", "en"),
        ("public/index.html", "es"),
    ]


def test_a_page_rendered_while_a_change_is_committed_is_served_but_not_kept(app, incident):
    cache = app.extensions["portal.page_cache"]

    def render_while_an_admin_commits():
        cache.clear()  # what the other thread's commit does, mid-rendering
        return "the page as it was"

    with app.test_request_context("/"):
        from flask import g

        g.csp_nonce = "n"
        assert cache.shared(("k",), render_while_an_admin_commits) == "the page as it was"
    assert ("k",) not in cache.pages


def test_the_cache_can_be_turned_off_and_refuses_a_wrong_setting(make_app, database_url):
    app = make_app(base_env(database_url, PORTAL_PAGE_CACHE_SECONDS="0"))
    with app.app_context():
        app.test_client().get("/")
        _response, queried = _statements(app, app.test_client(), "/")
        assert queried
    with pytest.raises(ConfigError, match="PORTAL_PAGE_CACHE_SECONDS must be a whole number"):
        load(base_env(database_url, PORTAL_PAGE_CACHE_SECONDS="soon"))


# --- the dashboard's incident sections (page_cache.shared_part) ---


def _two_readers(app, incident, write_csv):
    """Two customers of the incident with different exposures, each signed in."""
    rows = [
        customer_row(2, email="person2@example.com", phone=""),
        customer_row(
            3, email="person3@example.com", phone="", data_classes="email_address;ssn:1111"
        ),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    readers = []
    for n in (2, 3):
        client = app.test_client()
        sign_in(client, f"person{n}@example.com")
        readers.append(client)
    return readers


def test_the_incident_sections_of_the_dashboard_are_shared_and_nothing_of_the_reader_is(
    app, incident, write_csv
):
    first, second = _two_readers(app, incident, write_csv)
    app.extensions["portal.shared_parts"].clear()  # signing in showed the dashboard already
    one, read_first = _statements(app, first, "/me")
    two, read_second = _statements(app, second, "/me")
    assert one.status_code == two.status_code == 200
    # The second reader's incident sections came from the cache: no query for the updates or
    # the remediation actions.
    assert len(read_second) == len(read_first) - 2, (read_first, read_second)
    assert "We closed the access" in two.text  # the shared "What We Are Doing"
    assert "ending 4242" in one.text and "ending 4242" not in two.text  # their own data
    assert "ending 1111" in two.text and "ending 1111" not in one.text
    assert csrf_from(one) != csrf_from(two)
    assert NONCE.search(one.text)[1] != NONCE.search(two.text)[1]


def test_a_published_update_reaches_the_dashboard_at_once_here_and_within_the_seconds_elsewhere(
    app, incident, write_csv, make_app, env, monkeypatch
):
    from portal import clock
    from portal.models import IncidentUpdate

    reader, _ = _two_readers(app, incident, write_csv)
    other = make_app(env)  # a second process of the same deployment, its cache filled
    other.test_client_class = BrowserClient
    cookie = reader.get_cookie(app.config["SESSION_COOKIE_NAME"])
    with other.app_context():
        elsewhere = other.test_client()
        elsewhere.set_cookie(cookie.key, cookie.value)
        assert "Updates" not in elsewhere.get("/me").text
    assert "Updates" not in reader.get("/me").text
    db.session.add(
        IncidentUpdate(
            incident_id=incident.id,
            title="The forensic review is finished",
            body="Nothing else was taken.",
            published_at=clock.now(),
        )
    )
    db.session.commit()
    assert "The forensic review is finished" in reader.get("/me").text
    with other.app_context():
        assert "The forensic review is finished" not in elsewhere.get("/me").text  # its copy
        later = page_cache.monotonic() + 5
        monkeypatch.setattr(page_cache, "monotonic", lambda: later)
        assert "The forensic review is finished" in elsewhere.get("/me").text


def test_an_edited_incident_is_a_new_key_in_every_process_at_once(
    app, incident, write_csv, make_app, env
):
    reader, _ = _two_readers(app, incident, write_csv)
    assert "We closed the access" in reader.get("/me").text
    other = make_app(env)  # another process makes the edit: this one's cache is not emptied
    with other.app_context():
        from portal.models import Incident

        edited = db.session.get(Incident, incident.id)
        edited.what_we_are_doing = "We rotated every password."
        db.session.commit()
    db.session.expire_all()  # this process reads the row afresh, as the next request would
    page = reader.get("/me").text
    assert "We rotated every password." in page and "We closed the access" not in page
