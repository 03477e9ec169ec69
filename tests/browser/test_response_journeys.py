"""The response team's workspace in a real browser, with JavaScript on and off, on a phone and
a desk, in English and Spanish: the playbook's tasks of an incident, an overdue task on the
console's front page, and (after legal approves it) a remediation action on the customer's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.people import SLUG, incident
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
