"""Attacks on the page caches, kept as tests: no reader sees another's data or a withdrawn text,
each response has its own nonce and token, and keys cannot be poisoned or grown without bound."""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent
from portal.models.approval import Approval
from portal.models.playbook import RemediationAction
from portal.services import updates
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.web import page_cache
from tests.approval_flow import approve_update
from tests.conftest import INCIDENT, customer_row
from tests.customer_flow import csrf_from, link_path, sign_in

PARTS = "portal.shared_parts"
FRAGMENTS = "portal.fragments"
LAWS = "portal.laws"
NONCE = re.compile(r'nonce="([^"]+)"')
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _norm(html: str) -> str:
    for rx in (NONCE, TOKEN, re.compile(r'"X-CSRFToken": ?"([^"]+)"')):
        for found in set(rx.findall(html)):
            html = html.replace(found, "X")
    return html


def _notified(incident, write_csv, rows) -> None:
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()


def _readers(app, incident, write_csv, rows):
    _notified(incident, write_csv, rows)
    clients = {}
    for row in rows:
        client = app.test_client()
        sign_in(client, row["email"])
        clients[row["email"]] = client
    return clients


def _markers(app):
    found = []
    for name in (PARTS, "portal.page_cache"):
        ext = app.extensions.get(name)
        if ext is not None:
            found += [ext.nonce_mark, ext.token_mark]
    fragments = app.extensions["portal.fragments"]
    found += [fragments.token_mark, fragments.nonce_mark, fragments.fill_mark]
    return found


def test_attack_readers_differ_in_region_language_classes_and_get_exactly_their_fresh_page(
    app, incident, write_csv
):
    """Differential: each reader's page served after another reader warmed the parts equals
    the page rendered with the parts cache empty (but for nonce and token)."""
    rows = [
        customer_row(2, email="p2@example.com", phone="", region="US-CA", locale="en"),
        customer_row(
            3,
            email="p3@example.com",
            phone="",
            region="US-MA",
            locale="es",
            data_classes="email_address;ssn:1111",
        ),
        customer_row(
            4,
            email="p4@example.com",
            phone="",
            region="US-MA",
            locale="en",
            data_classes="email_address;payment_card:9999",
        ),
        customer_row(5, email="p5@example.com", phone="", region="US-NY", locale="es"),
    ]
    # An update is shown on every dashboard with its time, on each reader's own clock.
    update = updates.draft(incident, "Forensics finished", "Nothing more.", actor="test")
    approve_update(update)
    updates.publish(update, actor="test")
    clients = _readers(app, incident, write_csv, rows)
    app.config["PROPAGATE_EXCEPTIONS"] = True
    # p4 has made progress on their plan: a step done.
    p4 = clients["p4@example.com"]
    plan_page = p4.get("/me/plan").text
    step = re.search(r'action="/me/plan/([^"]+)"', plan_page)[1]
    assert p4.post(
        f"/me/plan/{step}", data={"csrf_token": csrf_from(p4.get("/me/plan"))}
    ).status_code in (302, 303)
    parts = app.extensions[PARTS]

    def cold() -> None:
        parts.clear()
        app.extensions[FRAGMENTS].parts.clear()
        app.extensions.get(LAWS, {}).clear()

    fresh = {}
    for address, client in clients.items():
        cold()
        fresh[address] = client.get("/me").text
    for warm_by in clients:
        for address, client in clients.items():
            cold()
            clients[warm_by].get("/me")
            served = client.get("/me").text
            assert _norm(served) == _norm(fresh[address]), (warm_by, address)
            for mark in _markers(app):
                assert mark not in served
    assert "1111" in fresh["p3@example.com"] and "1111" not in fresh["p2@example.com"]
    assert "Forensics finished" in fresh["p2@example.com"]
    assert re.search(r"P[SD]T", fresh["p2@example.com"]) and re.search(
        r"E[SD]T", fresh["p4@example.com"]
    )
    # Massachusetts leaves What Happened out; California does not.
    assert "Someone copied part" in fresh["p2@example.com"]
    assert "Someone copied part" not in fresh["p4@example.com"]


def _approved_action(incident, text: str) -> RemediationAction:
    action = RemediationAction(
        incident_id=incident.id,
        title="t",
        owner="security",
        created_on=date(2026, 11, 1),
        public=True,
        public_text=text,
        public_hash="h" + str(incident.id),
        created_by="test",
    )
    db.session.add(action)
    db.session.flush()
    db.session.add(
        Approval(
            incident_id=incident.id,
            subject="remediation",
            subject_ref=str(action.id),
            pinned="{}",
            pinned_hash=action.public_hash,
            drafted_at=datetime.now(UTC),
            approved_at=datetime.now(UTC),
            state="approved",
        )
    )
    db.session.commit()
    return action


def test_attack_unapproval_shows_at_once_in_this_process(app, incident, write_csv):
    from portal.services import approvals

    action = _approved_action(incident, "We hired LEGAL-TEXT-ONE.")
    (reader,) = _readers(
        app, incident, write_csv, [customer_row(2, email="p2@example.com", phone="")]
    ).values()
    assert "LEGAL-TEXT-ONE" in reader.get("/me").text
    approvals.withdraw("remediation", str(action.id), actor="test")  # a Core UPDATE
    db.session.commit()
    assert "LEGAL-TEXT-ONE" not in reader.get("/me").text


def test_attack_translation_edit_of_an_action_shows_at_once(app, incident, write_csv):
    action = _approved_action(incident, "We hired LEGAL-TEXT-ONE.")
    action.translations = {"es": {"public_text": "Contratamos TEXTO-UNO."}}
    db.session.commit()
    (reader,) = _readers(
        app, incident, write_csv, [customer_row(2, email="p2@example.com", phone="", locale="es")]
    ).values()
    assert "TEXTO-UNO" in reader.get("/me").text
    action.translations = {"es": {"public_text": "Contratamos TEXTO-DOS."}}
    db.session.commit()
    page = reader.get("/me").text
    assert "TEXTO-DOS" in page and "TEXTO-UNO" not in page


def test_attack_unapproval_racing_a_dashboard_with_two_incidents_is_kept_after_the_clearing(
    app, incident, write_csv, make_app, env, monkeypatch
):
    """A request reads every incident's remediation actions at its first "doing" part. If an
    un-approval commits (another thread of this process: its after_commit empties the parts)
    before the request renders the SECOND incident's part, that part is rendered from the
    pre-un-approval list AFTER the clearing, so the generation check passes and the withdrawn
    legal text is kept and served to every reader of this process for the cache's seconds."""
    second = create_incident(
        **{**INCIDENT, "slug": "acme-2026-b", "title": "Second incident"}, actor="test"
    )
    db.session.commit()
    action = _approved_action(incident, "We hired WITHDRAWN-TEXT.")
    row = customer_row(2, email="p2@example.com", phone="")
    import_customers(second, write_csv([row]), actor="test")
    queue_notices(second, actor="test")
    db.session.commit()
    (reader,) = _readers(app, incident, write_csv, [row]).values()
    other = make_app(env)  # the "other thread": its own session, so its commit is real
    real = page_cache.shared_part
    state = {"doing": 0}

    def racing(template, key, values):
        html = real(template, key, values)
        if template.endswith("_incident_doing.html"):
            state["doing"] += 1
            if state["doing"] == 1:  # between the first and the second incident's part
                with other.app_context():
                    db.session.execute(
                        Approval.__table__.update()
                        .where(Approval.subject_ref == str(action.id))
                        .values(state="superseded")
                    )
                    db.session.commit()
                app.extensions[PARTS].clear()  # what that thread's after_commit does here
        return html

    app.extensions[PARTS].clear()
    monkeypatch.setattr(page_cache, "shared_part", racing)
    raced = reader.get("/me").text  # the racing request
    assert state["doing"] == 2 and "WITHDRAWN-TEXT" in raced  # read before the withdrawal
    monkeypatch.setattr(page_cache, "shared_part", real)
    db.session.expire_all()
    served = reader.get("/me").text
    app.extensions[PARTS].clear()
    assert "WITHDRAWN-TEXT" not in reader.get("/me").text  # control: the database has it withdrawn
    # After the commit and the clearing, nobody in this process should see the text any more.
    assert "WITHDRAWN-TEXT" not in served


def test_attack_link_page_audits_every_get_and_logs_no_token(app, incident, write_csv, caplog):
    row = customer_row(2, email="p2@example.com", phone="")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    db.session.commit()
    path = link_path("p2@example.com")
    token = path.rsplit("/", 1)[1]
    client = app.test_client()
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        assert client.get(path).status_code == 200
    after = db.session.scalar(select(func.count()).select_from(AuditEvent))
    assert after - before == 3
    assert token not in caplog.text
    # The link page is personal (notice in session): never the shared front page afterwards.
    mine = client.get("/").text
    assert client.get("/").status_code == 200
    stranger = app.test_client().get("/").text
    for mark in _markers(app):
        assert mark not in mine and mark not in stranger


def test_attack_public_cache_keys_htmx_query_host_and_language(app, incident, write_csv):
    _readers(app, incident, write_csv, [customer_row(2, email="p2@example.com", phone="")])
    plain = app.test_client().get("/").text
    hx = app.test_client().get("/", headers={"HX-Request": "true"})
    assert _norm(hx.text) == _norm(plain)
    poisoned = app.test_client().get("/", headers={"Host": "evil.example:8080"})
    again = app.test_client().get("/").text
    assert "evil.example" not in again
    assert _norm(again) == _norm(plain)
    q = app.test_client().get("/?lang=es&<script>x").text
    assert _norm(app.test_client().get("/").text) == _norm(plain)
    assert "<script>x" not in q
    assert len(app.extensions["portal.page_cache"].pages) <= 512
    for i in range(600):
        app.test_client().get("/", headers={"Host": f"h{i}.example"})
    assert len(app.extensions["portal.page_cache"].pages) <= 512
    assert poisoned.status_code in (200, 404)


def test_attack_unapproval_elsewhere_reaches_this_process_within_the_seconds(
    app, incident, write_csv, make_app, env, monkeypatch
):
    action = _approved_action(incident, "We hired LEGAL-TEXT-ONE.")
    (reader,) = _readers(
        app, incident, write_csv, [customer_row(2, email="p2@example.com", phone="")]
    ).values()
    assert "LEGAL-TEXT-ONE" in reader.get("/me").text
    other = make_app(env)
    with other.app_context():
        from portal.services import approvals

        approvals.withdraw("remediation", str(action.id), actor="test")
        db.session.commit()
    db.session.expire_all()
    assert "LEGAL-TEXT-ONE" in reader.get("/me").text  # this process's copy, for the seconds
    later = page_cache.monotonic() + 5
    monkeypatch.setattr(page_cache, "monotonic", lambda: later)
    assert "LEGAL-TEXT-ONE" not in reader.get("/me").text


FOOTER_NEXT = re.compile(r'name="next" value="([^"]*)"')
ANY_TOKEN = re.compile(r'(?:name="csrf_token" value="|"X-CSRFToken": ?")([^"]+)"')


def _kept_text(app) -> str:
    """Everything the fragment cache holds, keys and HTML, as one text to search."""
    return repr(list(app.extensions[FRAGMENTS].parts.items()))


def test_attack_frame_pieces_keep_nothing_of_the_visitor_and_fill_in_each_response_its_own(
    app, incident, write_csv
):
    """The frame (head, header, sign-out, footer) and the fixed parts of the dashboard and the
    link page are rendered once per language: what differs per response (the nonce, the CSRF
    token, the path the language switch returns to, which on the link page holds the link's
    token) is filled in every time and never kept, and nobody's data is in what is kept."""
    rows = [
        customer_row(2, email="p2@example.com", phone="", locale="en"),
        customer_row(3, email="p3@example.com", phone="", locale="es"),
    ]
    _notified(incident, write_csv, rows)
    links = {row["email"]: link_path(row["email"]) for row in rows}
    visitors = {address: app.test_client() for address in links}
    pages = []
    for address, client in visitors.items():
        pages.append((client, links[address], client.get(links[address])))
        sign_in(client, address)
        for path in ("/me", "/me/plan", "/me/sessions"):
            pages.append((client, path, client.get(path)))
    stranger = app.test_client()
    pages.append((stranger, "/help", stranger.get("/help")))
    tokens_seen = set()
    for _client, path, response in pages:
        assert response.status_code == 200, path
        page = response.text
        # The language switch returns to this very page, and only this one.
        assert FOOTER_NEXT.findall(page) == [path], path
        # Every script carries this response's nonce, the one its CSP names.
        nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])[1]
        assert set(NONCE.findall(page)) == {nonce}, path
        # One CSRF token on the page, this session's (hx-headers, sign-out, language, steps).
        tokens = set(ANY_TOKEN.findall(page))
        assert len(tokens) == 1, (path, tokens)
        tokens_seen |= tokens
        for mark in _markers(app):
            assert mark not in page
        # Sign-out for a signed-in customer only.
        assert ("Sign out" in page or ">Salir<" in page) == (path.startswith("/me")), path
    assert len(tokens_seen) >= 3  # each visitor their own (and a new one on signing in)
    kept = _kept_text(app)
    for address, link in links.items():
        assert link.rsplit("/", 1)[1] not in kept  # no link token, in a key or a piece
        assert address not in kept and address.split("@")[0] not in kept
    assert "Number2" not in kept and "Number3" not in kept and "/a/" not in kept
    for token in tokens_seen:
        assert token not in kept
    # The pieces of the frame: one per template, language, host and root, however many visitors.
    frames = [key for key in app.extensions[FRAGMENTS].parts if key[0] == "frame"]
    assert len(frames) == len(set(frames)) <= 2 * 8


def test_attack_frame_pieces_served_warm_equal_a_cold_rendering_in_each_language(
    app, incident, write_csv
):
    """Differential: every page, read after a visitor in the other language (or anonymous, or
    signed in) warmed the frame, equals the page rendered with the frame cache empty."""
    rows = [
        customer_row(2, email="p2@example.com", phone="", locale="en"),
        customer_row(3, email="p3@example.com", phone="", locale="es"),
    ]
    _notified(incident, write_csv, rows)
    signed_in = {}
    for row in rows:
        signed_in[row["email"]] = client = app.test_client()
        sign_in(client, row["email"])
    anonymous = {"en": app.test_client(), "es": app.test_client()}
    anonymous["es"].get("/", headers={"Accept-Language": "es"})
    reads = [
        (client, path)
        for client in signed_in.values()
        for path in ("/me", "/me/plan", "/me/cases", "/me/password")
    ]
    reads += [(c, path) for c in anonymous.values() for path in ("/start", "/help", "/link/new")]
    fragments = app.extensions[FRAGMENTS]

    def read(client, path):
        return _norm(
            client.get(
                path, headers={"Accept-Language": "es"} if client is anonymous["es"] else {}
            ).text
        )

    cold = {}
    for client, path in reads:
        fragments.parts.clear()
        cold[id(client), path] = read(client, path)
    for warm_client, warm_path in reads:
        for client, path in reads:
            fragments.parts.clear()
            warm_client.get(warm_path)
            assert read(client, path) == cold[id(client), path], (warm_path, path)
    assert ">Salir<" in cold[id(signed_in["p3@example.com"]), "/me"]
    assert "Sign out" in cold[id(signed_in["p2@example.com"]), "/me"]


def test_attack_the_frame_links_home_on_each_host_whichever_host_warmed_it(database_url, make_app):
    """On the staff host the name in the header leads to the staff pages, on the public host to
    the front page: a piece rendered for one host is never served on the other."""
    from tests.test_staff_host import clients, staff_host_env

    app = make_app(staff_host_env(database_url, PORTAL_ENV="testing"))
    with app.app_context():
        public, staff = clients(app)
        brand = re.compile(r'<a class="brand" href="([^"]+)"')
        for first, second in ((public, staff), (staff, public)):
            app.extensions[FRAGMENTS].parts.clear()
            pages = {client: client.get("/no-such-page") for client in (first, second)}
            assert all(page.status_code == 404 for page in pages.values())
            assert brand.search(pages[public].text)[1] == "/"
            assert brand.search(pages[staff].text)[1] == "/staff/cases"


def test_attack_state_statements_follow_place_language_and_data_and_an_edit_shows_at_once(
    app, incident, write_csv, make_app, env
):
    """The statements the law of a reader's state adds are worked out once per incident, place,
    language and data types: each reader gets their own state's, in their language, and an edit
    of the incident (the helpline its statements name) made in another process shows at once."""
    rows = [
        customer_row(2, email="p2@example.com", phone="", region="US-VT", locale="en"),
        customer_row(3, email="p3@example.com", phone="", region="US-CA", locale="en"),
        customer_row(4, email="p4@example.com", phone="", region="US-VT", locale="es"),
    ]
    readers = _readers(app, incident, write_csv, rows)
    vermont, california, vermont_es = (readers[row["email"]] for row in rows)
    vt = "For further information and assistance, call"
    for _ in range(2):  # cold, then warm: the same
        assert vt in vermont.get("/me").text and "1-800-555-0199" in vermont.get("/me").text
        assert vt not in california.get("/me").text
        spanish = vermont_es.get("/me").text
        assert vt not in spanish and "1-800-555-0199" in spanish
    other = make_app(env)  # another process edits: this one's caches are not emptied
    with other.app_context():
        from portal.models import Incident

        db.session.get(Incident, incident.id).contact_phone = "1-800-555-0123"
        db.session.commit()
    db.session.expire_all()
    page = vermont.get("/me").text
    assert "1-800-555-0123" in page and "1-800-555-0199" not in page
