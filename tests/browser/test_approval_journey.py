"""Four eyes, walked (issue 17, acceptance 1): communications drafts an update, an admin alone
cannot publish it, legal approves it, a change after approval returns it to draft, legal
approves again and it is published. JavaScript on (English) and off (Spanish), on a phone."""

from __future__ import annotations

from datetime import date

import pytest
from playwright.sync_api import expect

from tests.browser.people import announce
from tests.browser.staff import AuthenticatorClock, set_up

pytestmark = pytest.mark.slow

WORDS = {
    "en": {
        "title": "Title",
        "text": "Text (Markdown)",
        "title_es": "Title in Spanish",
        "text_es": "Text in Spanish (Markdown)",
        "save": "Save draft",
        "saved": "Draft saved",
        "ask": "Ask legal to approve",
        "asked": "Asked for approval",
        "publish": "Publish",
        "refused": "Legal has not approved this exactly as it is now.",
        "approve": "Approve this text",
        "approved": "Approved. It may go out exactly as shown.",
        "change": "Change this draft",
        "save_change": "Save the change",
        "changed": "It needs legal's approval again.",
        "not_yet": "Not approved yet",
        "published": "Published.",
    },
    "es": {
        "title": "Título",
        "text": "Texto (Markdown)",
        "title_es": "Título en español",
        "text_es": "Texto en español (Markdown)",
        "save": "Guardar borrador",
        "saved": "Borrador guardado",
        "ask": "Pedir la aprobación del equipo legal",
        "asked": "Aprobación solicitada",
        "publish": "Publicar",
        "refused": "El equipo legal no ha aprobado esto tal como está ahora.",
        "approve": "Aprobar este texto",
        "approved": "Aprobado. Puede enviarse exactamente como se muestra.",
        "change": "Cambiar este borrador",
        "save_change": "Guardar el cambio",
        "changed": "Necesita de nuevo la aprobación del equipo legal.",
        "not_yet": "Aún sin aprobar",
        "published": "Publicado.",
    },
}


@pytest.fixture
def clock(clock):
    return AuthenticatorClock(clock)


def _member(person, live, clock, role: str, language: str, js: bool, home: str, name: str):
    """A team member signed in on a phone, reading the console in their language."""
    you = person(js=js, phone=True, name=name)
    set_up(you, live, clock, role=role, home=home)
    if language == "es":
        you.click("button", "Español")
        you.language = "es"  # from here on, every page is checked for English left in it
    return you


def _status(you, text: str) -> None:
    expect(you.page.get_by_role("status").filter(has_text=text).first).to_be_visible()


@pytest.mark.parametrize(
    ("js", "language"), [(True, "en"), (False, "es")], ids=["js-en", "nojs-es"]
)
def test_communications_drafts_legal_approves_and_an_admin_alone_cannot_publish(
    live, person, clock, js, language
):
    from portal.services.incidents import create_incident

    mode = f"{'js' if js else 'nojs'}-{language}"
    slug = f"pier-{mode}"
    live.run(
        create_incident,
        slug=slug,
        title=f"Pier ledger exposure ({mode})",
        discovered_on=date(2026, 11, 9),
        actor="test",
    )
    announce(live, slug)  # its first notice is out: the incident has its public page
    w = WORDS[language]
    updates = f"/admin/incidents/{slug}/updates"
    public = live.base + f"/incidents/{slug}"

    comms = _member(
        person, live, clock, "communications", language, js, "/admin/approvals", f"comms-{mode}"
    )
    page = comms.goto(updates)
    form = page.locator("form").filter(has=page.get_by_role("heading", level=3))
    form.get_by_label(w["title"], exact=True).fill("Backups are now encrypted")
    form.get_by_label(w["text"], exact=True).fill("Every backup is now encrypted.")
    form.get_by_label(w["title_es"], exact=True).fill("Las copias ya están cifradas")
    form.get_by_label(w["text_es"], exact=True).fill("Todas las copias están cifradas.")
    comms.submit(w["save"])
    _status(comms, w["saved"])
    comms.check("draft saved")
    comms.submit(w["ask"])
    _status(comms, w["asked"])
    comms.check("asked legal")

    # An admin alone cannot publish it.
    admin = _member(person, live, clock, "admin", language, js, "/staff/cases", f"admin-{mode}")
    page = admin.goto(updates)
    admin.submit(w["publish"])
    _status(admin, w["refused"])
    admin.check("the admin is refused")
    admin.page.goto(public)
    expect(admin.page.get_by_role("main")).not_to_contain_text("Backups are now encrypted")

    legal = _member(person, live, clock, "legal", language, js, "/admin/approvals", f"legal-{mode}")
    page = legal.goto(updates)
    expect(page.get_by_role("main")).to_contain_text("Todas las copias están cifradas.")
    legal.submit(w["approve"])
    _status(legal, w["approved"])
    legal.check("legal approved")

    # A change after approval returns it to draft: legal approves again.
    page = comms.goto(updates)
    page.get_by_text(w["change"]).click()
    change = page.locator("details").filter(has_text=w["change"]).locator("form")
    change.get_by_label(w["text"], exact=True).fill("Every backup is now encrypted, and tested.")
    comms.submit(w["save_change"])
    _status(comms, w["changed"])
    expect(page.locator(".approval-state")).to_contain_text(w["not_yet"])
    comms.check("back to draft")
    comms.submit(w["ask"])
    page = legal.goto(updates)
    expect(page.get_by_role("main")).to_contain_text("and tested.")
    legal.submit(w["approve"])
    _status(legal, w["approved"])

    page = comms.goto(updates)
    comms.submit(w["publish"])
    _status(comms, w["published"])
    comms.check("published")
    reader = comms.page
    reader.goto(public)
    expect(reader.get_by_role("main")).to_contain_text(
        "Las copias ya están cifradas" if language == "es" else "Backups are now encrypted"
    )
