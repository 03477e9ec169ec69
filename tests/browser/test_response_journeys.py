"""The response team's workspace in a real browser, with JavaScript on and off, on a phone and
a desk, in English and Spanish: the playbook's tasks of an incident, an overdue task on the
console's front page, and (after legal approves it) a remediation action on the customer's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.people import SLUG, code_for, incident
from tests.browser.staff import AuthenticatorClock, set_up

pytestmark = pytest.mark.slow


@pytest.fixture
def clock(clock):
    return AuthenticatorClock(clock)


@pytest.mark.parametrize(
    "js, phone, language",
    [(True, False, "en"), (False, True, "es")],
    ids=["js-desk-en", "nojs-phone-es"],
)
def test_an_admin_sees_the_overdue_tasks_and_records_one_done_on_the_incidents_task_page(
    live, person, clock, js, phone, language
):
    incident(live)  # discovered 9 October 2026: the first days' tasks are long overdue
    you = person(js=js, phone=phone)
    set_up(you, live, clock, role="admin")
    page = you.page
    page.goto(live.base + "/admin/")
    if language == "es":
        you.click("button", "Español")
        you.language = "es"
    you.check("console")
    overdue = page.locator("section", has=page.locator("#overdue-tasks"))
    # Each way records a different task done (the module shares one live portal).
    task_id, title, due = {
        "en": (
            "contain-access",
            "Close the access: revoke stolen credentials, isolate affected systems, preserve "
            "evidence",
            "2026-10-10 00:00",
        ),
        "es": (
            "assess-how",
            "Establish how it happened: the way in, the accounts and systems used, the time window",
            "2026-10-11 00:00",
        ),
    }[language]
    expect(overdue).to_contain_text(title)

    overdue.get_by_role("link", name=title).click()
    page.wait_for_load_state()
    you.check("playbook")
    task = page.locator(f"#task-{task_id}")
    expect(task).to_contain_text("Seguridad" if language == "es" else "Security")
    expect(task).to_contain_text(due)
    status, notes, save = {
        "en": ("Status", "Notes", "Save the task"),
        "es": ("Estado", "Notas", "Guardar la tarea"),
    }[language]
    task.get_by_label(status).select_option("done")
    task.get_by_label(notes).fill("VPN account disabled 10 Oct 02:14 UTC; disk images kept.")
    with page.expect_response(lambda r: r.request.method == "POST"):
        task.get_by_role("button", name=save).click()
    page.wait_for_load_state()
    you.check("playbook-saved")
    expect(page.locator(f"#task-{task_id}")).to_contain_text("VPN account disabled")

    page.goto(live.base + "/admin/")
    you.check("console-after")
    expect(page.get_by_role("main")).not_to_contain_text(title)
    # Another overdue task is still there.
    expect(page.locator("#overdue-tasks")).to_be_visible()
    assert SLUG in page.locator("section", has=page.locator("#overdue-tasks")).inner_text()


EN = "We now require hardware security keys for all staff"
ES = "Ahora exigimos llaves de seguridad físicas a todo el personal"


def _public_action(live) -> int:
    """Security records a done action with its public text in both languages and asks legal."""
    from datetime import date

    from portal.models import Incident
    from portal.services import investigation, staff
    from tests.browser.staff import invite

    investigator, _link = invite(live, "security")

    def record():
        from portal.extensions import db

        found = db.session.query(Incident).filter_by(slug=SLUG).one()
        member = staff.by_email(investigator.email)
        action = investigation.save_action(
            found,
            None,
            title="Hardware keys for every staff account",
            owner="security",
            due_on=date(2026, 11, 15),
            done_on=date(2026, 11, 12),
            public=True,
            text_en=EN,
            text_es=ES,
            member=member,
        )
        investigation.submit_public(found, action, member=member)
        return action.id

    return live.run(record)


def _approve(live, action_id: int) -> None:
    from portal.models import Incident
    from portal.services import investigation, staff
    from tests.browser.staff import invite

    lawyer, _link = invite(live, "legal")

    def approve():
        from portal.extensions import db

        found = db.session.query(Incident).filter_by(slug=SLUG).one()
        action = investigation.get_action(action_id)
        investigation.approve_public(found, action, member=staff.by_email(lawyer.email))

    live.run(approve)


def _sign_in(you, live, someone: dict, language: str):
    page = you.page
    you.goto(someone["link"])
    send, field, go = {
        "en": ("Send me the code", "Verification code", "Continue"),
        "es": ("Envíenme el código", "Código de verificación", "Continuar"),
    }[language]
    you.click("button", send)
    page.wait_for_url(live.base + "/verify")
    page.get_by_label(field).fill(code_for(live, someone))
    you.click("button", go)
    page.wait_for_url(live.base + "/me")
    you.check("dashboard")
    return page


def test_a_remediation_action_reaches_customers_in_their_language_only_after_legal_approves_it(
    live, person
):
    from tests.browser.people import notify

    readers = {
        language: notify(live, locale=language, data_classes="email_address;password")
        for language in ("en", "es")
    }
    action_id = _public_action(live)
    ways = {"en": (True, True), "es": (False, True)}  # (js, phone)
    pages = {}
    for language, someone in readers.items():
        js, phone = ways[language]
        you = person(language=language, js=js, phone=phone, name=f"remediation-{language}")
        pages[language] = (you, _sign_in(you, live, someone, language))
        main = pages[language][1].get_by_role("main")
        expect(main).not_to_contain_text(EN)  # asked for, not yet approved
        expect(main).not_to_contain_text(ES)

    _approve(live, action_id)
    shown = {
        "en": (f"{EN} — done November 12", ES),
        "es": (f"{ES} — realizado el 12 de noviembre", EN),
    }
    for language, (you, page) in pages.items():
        page.reload()
        you.check(f"dashboard-approved-{language}")
        theirs, other = shown[language]
        listed = page.locator("ul.remediation")
        expect(listed).to_contain_text(theirs)
        expect(listed).not_to_contain_text(other)
