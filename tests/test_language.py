"""Language follows the person's choice; the organisation's text comes in their language, or in
English marked as English."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Customer, IncidentUpdate
from portal.services import updates
from portal.services.imports import import_customers
from portal.services.incidents import update_incident
from portal.services.notices import queue_notices
from tests.approval_flow import approve_update
from tests.conftest import customer_row
from tests.customer_flow import (
    code_sent_to,
    csrf_from,
    link_path,
    messages_to,
    sign_in,
    start_from_link,
    submit_code,
)
from tests.staff_flow import reauth, set_up

ANA = "ana@example.com"
LUIS = "luis@example.com"
TITLE = "Unauthorized access to customer records"


@pytest.fixture
def notified(app, incident, write_csv):
    rows = [
        customer_row(1, email=ANA, phone="", locale="en"),
        customer_row(2, email=LUIS, phone="", locale="es"),
    ]
    import_customers(incident, write_csv(rows), actor="test")
    queue_notices(incident, actor="test")
    return incident


def stored(address: str) -> Customer:
    db.session.expire_all()
    return next(c for c in db.session.scalars(select(Customer)) if c.email == address)


def switch(client, page, lang: str):
    """Press a language button in the page's footer, as a browser without JavaScript does."""
    html = page.get_data(as_text=True)
    back = re.search(r'name="next" value="([^"]*)"', html).group(1).replace("&amp;", "&")
    return client.post(
        "/language", data={"csrf_token": csrf_from(page), "lang": lang, "next": back}
    )


def test_a_language_picked_before_signing_in_is_kept_after_it_and_remembered(
    app, client, notified, write_csv
):
    path = link_path(ANA)
    page = client.get(path)
    assert b"Send me the code" in page.data
    switched = switch(client, page, "es")
    assert switched.headers["Location"] == path  # the same page
    assert "Envíenme el código" in client.get(path).get_data(as_text=True)

    start_from_link(client, path)
    # The code comes in the language they picked, though their record still says English.
    code_message = messages_to(ANA)[-1].row
    assert code_message.locale == "es"
    assert code_message.subject.startswith("Su código de verificación")
    assert submit_code(client, code_sent_to(ANA)).headers["Location"] == "/me"
    page = client.get("/me").get_data(as_text=True)
    assert '<html lang="es">' in page and "Su página personal" in page
    assert stored(ANA).locale == "es"

    # Remembered: another browser, and the messages that follow, use it too.
    other = app.test_client()
    assert "Envíenme el código" in other.get(path).get_data(as_text=True)
    update = updates.draft(notified, "Forensics finished", "Nothing more.", actor="test")
    approve_update(update)
    updates.publish(update, actor="test")
    updates.notify_affected(update.id)
    assert messages_to(ANA)[-1].row.subject == f"Novedades sobre {TITLE}"
    # An import of the organisation's file later does not undo the person's choice.
    import_customers(notified, write_csv([customer_row(1, email=ANA, phone="")]), actor="test")
    assert stored(ANA).locale == "es"


def test_without_a_choice_signing_in_keeps_the_customers_language(client, notified):
    page = sign_in(client, LUIS).get_data(as_text=True)
    assert '<html lang="es">' in page
    customer = stored(LUIS)
    assert customer.locale == "es" and customer.locale_chosen_at is None


def test_switching_when_signed_in_changes_the_page_and_the_stored_language(client, notified):
    sign_in(client, ANA)
    page = client.get("/me/plan?from=mail")
    assert 'name="next" value="/me/plan?from=mail"' in page.get_data(as_text=True)
    switched = switch(client, page, "es")
    assert switched.headers["Location"] == "/me/plan?from=mail"  # same page, query kept
    assert '<html lang="es">' in client.get("/me/plan?from=mail").get_data(as_text=True)
    assert '<html lang="es">' in client.get("/me").get_data(as_text=True)
    assert '<html lang="es">' in client.get("/help").get_data(as_text=True)  # public pages too
    customer = stored(ANA)
    assert customer.locale == "es" and customer.locale_chosen_at is not None

    switch(client, client.get("/me"), "en")
    assert '<html lang="en">' in client.get("/me").get_data(as_text=True)
    assert stored(ANA).locale == "en"


def test_the_switch_on_a_page_answering_a_form_returns_to_a_page_that_opens(client, notified):
    sign_in(client, ANA)
    protection = client.get("/me/protection")
    refused = client.post(  # no such offer: an error page in answer to a POST-only address
        "/me/protection/99",
        data={"csrf_token": csrf_from(protection)},
        headers={"Referer": "https://localhost/me/protection"},
    )
    assert refused.status_code == 404
    assert 'name="next" value="/me/protection"' in refused.get_data(as_text=True)


def test_a_spanish_page_shows_missing_spanish_text_in_english_marked_as_english(client, notified):
    page = sign_in(client, LUIS).get_data(as_text=True)
    assert '<html lang="es">' in page
    assert f'<span lang="en">{TITLE}</span>' in page
    assert '<div lang="en"><p>Someone copied part of our customer database.</p>' in page
    assert '(<span lang="en">Monday to Friday, 8 am to 8 pm</span>)' in page

    update_incident(
        notified,
        actor="test",
        translations={"es": {"title": "Acceso no autorizado", "what_happened": "Alguien copió."}},
    )
    page = client.get("/me").get_data(as_text=True)
    assert ">Acceso no autorizado</h2>" in page and "<p>Alguien copió.</p>" in page
    assert '<div lang="en"><p>Alguien' not in page
    # Sections still without Spanish stay marked; English readers see no marks at all.
    assert '<div lang="en"><p>We closed the access and hired investigators.</p>' in page
    english = sign_in(client.application.test_client(), ANA).get_data(as_text=True)
    assert f">{TITLE}</h2>" in english and 'lang="en"><p>' not in english


def test_the_public_page_and_updates_follow_the_language_with_the_same_rule(app, notified):
    visitor = app.test_client()
    switch(visitor, visitor.get("/incidents/acme-2026"), "es")
    draft = updates.draft(
        notified,
        "Forensics finished",
        "No further access.",
        actor="test",
        translations={"es": {"title": "Análisis forense terminado", "body": ""}},
    )
    approve_update(draft)
    updates.publish(draft, actor="test")
    page = visitor.get("/incidents/acme-2026").get_data(as_text=True)
    assert f'<h1><span lang="en">{TITLE}</span></h1>' in page
    assert "Análisis forense terminado</h4>" in page
    assert '<div lang="en"><p>No further access.</p>' in page


def test_notice_emails_use_the_spanish_text_or_mark_the_english(app, incident, write_csv):
    update_incident(
        incident, actor="test", translations={"es": {"what_happened": "Alguien copió."}}
    )
    row = customer_row(3, email="eva@example.com", phone="", locale="es")
    import_customers(incident, write_csv([row]), actor="test")
    queue_notices(incident, actor="test")
    notice = messages_to("eva@example.com")[0]
    assert "Alguien copió." in notice.text and "Someone copied" not in notice.text
    assert "<p>Alguien copió.</p>" in notice.html
    assert '<div lang="en"><p>We closed the access and hired investigators.</p>' in notice.html
    assert f'<span lang="en">{TITLE}</span>' in notice.html


def test_the_offers_list_in_spanish_from_the_command_line(app, runner, client, notified):
    from tests.test_protection import offer_cli

    offer_cli(runner)
    sign_in(client, LUIS)
    assert '<ul lang="en"><li>Credit monitoring</li>' in client.get("/me/protection").get_data(
        as_text=True
    )
    offer_cli(runner, includes_es="Monitoreo de crédito;Restauración")
    page = client.get("/me/protection").get_data(as_text=True)
    assert "<ul><li>Monitoreo de crédito</li><li>Restauración</li></ul>" in page


@pytest.fixture
def admin(app, clock):
    client = app.test_client()
    set_up(app, client, "boss@example.com", "admin", clock, roles=("communications",))
    return client


def test_the_console_saves_spanish_text_for_the_incident_and_its_updates(admin, app, notified):
    page = admin.get("/admin/incidents/acme-2026")
    assert 'name="title_es"' in page.get_data(as_text=True)
    saved = admin.post(
        "/admin/incidents/acme-2026",
        data={
            "csrf_token": csrf_from(page),
            "title": TITLE,
            "status": "notifying",
            "discovered_on": "2026-10-09",
            "what_happened": "Someone copied part of our customer database.",
            "what_we_are_doing": "We closed the access.",
            "contact_hours": "9-5",
            "title_es": "Acceso no autorizado a datos de clientes",
            "what_happened_es": "Alguien copió parte de nuestra base de datos.",
            "contact_hours_es": "de 9 a 17",
            "action": "save",
        },
    )
    assert saved.status_code == 302
    db.session.expire_all()
    assert notified.translations == {
        "es": {
            "title": "Acceso no autorizado a datos de clientes",
            "what_happened": "Alguien copió parte de nuestra base de datos.",
            "contact_hours": "de 9 a 17",
        }
    }
    shown = admin.get("/admin/incidents/acme-2026").get_data(as_text=True)
    assert 'value="Acceso no autorizado a datos de clientes"' in shown  # shown again to edit

    admin.post(
        "/admin/incidents/acme-2026/updates",
        data={
            "csrf_token": csrf_from(page),
            "title": "Forensics finished",
            "body": "No further access.",
            "title_es": "Análisis forense terminado",
            "body_es": "Ningún otro acceso.",
        },
    )
    draft = db.session.scalars(select(IncidentUpdate)).one()
    assert draft.translations == {
        "es": {"title": "Análisis forense terminado", "body": "Ningún otro acceso."}
    }
    approve_update(draft)
    admin.post(f"/admin/updates/{draft.id}/publish", data={"csrf_token": csrf_from(page)})

    luis = app.test_client()
    page = sign_in(luis, LUIS).get_data(as_text=True)
    assert "Acceso no autorizado a datos de clientes</h2>" in page
    assert "Alguien copió parte de nuestra base de datos." in page
    assert "(de 9 a 17)" in page and "Análisis forense terminado" in page
    assert '<div lang="en"><p>We closed the access.</p>' in page  # no Spanish given


def test_what_an_agent_does_reaches_the_customer_in_the_customers_language(app, clock, notified):
    """The agent works on English pages; the messages it causes are written in the customer's."""
    luis = app.test_client()
    sign_in(luis, LUIS)
    page = luis.get("/me/cases")
    opened = luis.post(
        "/me/cases",
        data={"csrf_token": csrf_from(page), "topic": "my_data", "body": "Mi correo cambió."},
    )
    case_path = "/staff/cases/" + opened.headers["Location"].rsplit("/", 1)[1]
    agent = app.test_client()
    set_up(app, agent, "agent.a@example.com", "agent", clock)
    reauth(agent, "agent.a@example.com", clock, case_path)
    page = agent.get(case_path)
    agent.post(
        f"{case_path}/messages",
        data={"csrf_token": csrf_from(page), "body": "Lo miramos.", "kind": "reply"},
    )
    agent.post(
        f"{case_path}/tools/correct-contact",
        data={"csrf_token": csrf_from(page), "reason": "Called in", "email": "luis@example.net"},
    )

    subjects = [m.row.subject for m in messages_to(LUIS)]
    assert "Tiene una respuesta nueva de Example Corp" in subjects
    # The address on file is told, the new one asked to confirm: both in Luis's language.
    told = [m for m in messages_to(LUIS) if m.row.subject.startswith("Un cambio")]
    assert len(told) == 1
    assert (
        "Se pidió a nuestro equipo de ayuda que cambiara el correo electrónico de su cuenta."
        in told[0].text
    )
    assert told[0].row.locale == "es"
    asked = messages_to("luis@example.net")
    assert len(asked) == 1 and asked[0].row.subject.startswith("Confirme sus nuevos datos")
    assert asked[0].row.locale == "es"


def test_every_message_is_composed_where_the_recipients_language_is_set():
    """Only outbox.queue_message hands a composed message to the outbox: a message queued
    anywhere else could be written in the language of whoever caused it."""
    import ast

    from portal import ROOT

    elsewhere = []
    for path in sorted((ROOT / "portal").rglob("*.py")):
        if path == ROOT / "portal/services/outbox.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            called = getattr(node, "func", None)
            name = getattr(called, "attr", None) or getattr(called, "id", None)
            if isinstance(node, ast.Call) and name in ("enqueue_email", "enqueue_sms"):
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not elsewhere, "messages queued without outbox.queue_message: " + ", ".join(elsewhere)


def test_the_link_page_in_the_customers_language_says_where_the_code_goes_in_it(client, notified):
    """The page follows the customer's language; the words for where the code goes did not (they
    were worded in the browser's language before the page's was known)."""
    page = client.get(link_path(LUIS), headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="es">' in page
    assert "por correo electrónico a" in page and "by email to" not in page
