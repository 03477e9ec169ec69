"""Staff and admins in a real browser, with JavaScript on and off: setting up an account from an
invitation, the case queue, a tool behind re-authentication, letting a locked customer in, and
running an incident from the console. Each ends where the customer sees the result."""

from __future__ import annotations

import csv
import itertools
import re
import time
from datetime import date

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.browser.conftest import link_in
from tests.browser.people import code_for, notify
from tests.browser.staff import (
    PASSWORD,
    AuthenticatorClock,
    authenticator_key,
    invite,
    reauthenticate,
    set_up,
)
from tests.conftest import HEADER

pytestmark = pytest.mark.slow
JS = pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
_numbers = itertools.count(1)


@pytest.fixture
def clock(clock):
    """The portal's clock (tests/conftest.py), read by the staff member's authenticator app."""
    return AuthenticatorClock(clock)


def _legal_approves(subject: str, slug: str) -> None:
    """Someone of the legal team approves the incident's campaign, or its newest update."""
    from portal.extensions import db
    from portal.models import IncidentUpdate
    from portal.services.incidents import get_by_slug
    from tests.approval_flow import approve_campaign, approve_update

    incident = get_by_slug(slug)
    if subject == "campaign":
        approve_campaign(incident)
    else:
        newest = db.session.scalars(
            select(IncidentUpdate)
            .where(IncidentUpdate.incident_id == incident.id)
            .order_by(IncidentUpdate.id.desc())
        ).first()
        approve_update(newest)


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _line_with(text: str, part: str) -> str:
    return next(line.strip() for line in text.splitlines() if part in line)


def _help_case(live, contact: str) -> str:
    """The public id of the request for help written with this contact."""
    from portal.extensions import db
    from portal.models import Case
    from portal.services import cases

    def find():
        for case in db.session.scalars(select(Case).where(Case.unverified.is_(True))):
            if (cases.contact_of(case) or {}).get("contact") == contact:
                return case.public_id
        raise AssertionError(f"no request for help from {contact}")

    return live.run(find)


def _open_from_queue(you, public_id: str, *, status: str):
    """The agent finds the case in the queue (its row reads in words) and opens it."""
    page = you.page
    row = page.locator("tr", has=page.locator(f"a[href='/staff/cases/{public_id}']"))
    expect(row.locator("td").nth(2)).to_have_text(status)
    expect(row.locator("td").first).to_contain_text(re.compile(r"\d\d:\d\d UTC"))
    row.locator("a").click()
    page.wait_for_url(you.live.base + f"/staff/cases/{public_id}")
    you.check("case")


def _tool(page, button: str):
    """One of the agent's tools: its own form, with the reason beside the button."""
    return page.locator("form.tool", has=page.get_by_role("button", name=button))


def _submit_code(you, typed: str) -> None:
    """Type a code and wait until the answer is on the page (swapped in, or a new page)."""
    page = you.page
    page.get_by_label("Verification code").fill(typed)
    you.click("button", "Continue")
    page.wait_for_function("() => document.activeElement.closest('[role=alert]') !== null")


# --- 1. set-up and sign-in ---


@JS
def test_an_invited_admin_sets_a_password_an_authenticator_and_recovery_codes_then_signs_in_again(
    live, person, clock, js
):
    admin, link = invite(live, "admin")
    you = person(js=js)
    page = you.goto(link)
    assert admin.email in page.get_by_role("main").inner_text()

    # A password the rules refuse is explained where it was typed.
    page.get_by_label("New password").fill("short")
    page.get_by_label("The same password again").fill("short")
    you.click("button", "Continue")
    expect(page.get_by_role("alert")).to_contain_text("15")
    you.check("password refused")
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/staff/setup-authenticator")
    you.check("authenticator")

    # The QR code has a text alternative; the key beside it is what a person types into the app.
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    admin.secret = authenticator_key(page)
    assert re.fullmatch(r"[A-Z2-7]{32}", admin.secret)
    # No recovery codes exist yet, so the field does not offer one.
    expect(page.get_by_label("Code from your authenticator app", exact=True)).to_have_count(1)
    page.get_by_label("Code from your authenticator app").fill(_wrong(clock.code(admin.secret)))
    you.click("button", "Confirm")
    expect(page.get_by_role("alert")).to_contain_text("That code does not match")
    you.check("authenticator code refused")
    used = clock.code(admin.secret)
    page.get_by_label("Code from your authenticator app").fill(used)
    you.click("button", "Confirm")
    expect(page.get_by_role("heading", level=1)).to_contain_text("recovery codes")
    you.check("recovery codes")
    admin.recovery_codes = page.locator("ol.recovery li").all_inner_texts()
    assert len(admin.recovery_codes) == 10
    assert all(re.fullmatch(r"([A-Z0-9]{4}-){5}[A-Z0-9]{4}", c) for c in admin.recovery_codes)
    you.click("link", "I have stored them: continue")
    page.wait_for_url(live.base + "/staff/cases")
    you.check("queue")

    you.click("button", "Sign out")
    page.wait_for_url(live.base + "/staff/login")
    you.check("signed out")
    page.goto(live.base + "/staff/cases")
    assert page.url == live.base + "/staff/login"  # the session really ended

    page.get_by_label("Email").fill(admin.email)
    page.get_by_label("Password").fill(PASSWORD)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/staff/code")
    you.check("code")
    # The code that set the app up cannot be replayed: the app's next one signs in.
    page.get_by_label("Code from your authenticator app").fill(used)
    you.click("button", "Sign in")
    expect(page.get_by_role("alert")).to_contain_text("That code does not match")
    you.check("code replay refused")
    page.get_by_label("Code from your authenticator app").fill(clock.next_code(admin.secret))
    you.click("button", "Sign in")
    page.wait_for_url(live.base + "/staff/cases")
    expect(page.get_by_role("link", name="Console")).to_be_visible()  # an admin's way on
    you.check("signed in again")


# --- 2. the queue ---


@JS
def test_a_request_for_help_reaches_the_queue_and_its_writer_reads_the_reply_by_the_emailed_link(
    live, person, clock, js
):
    n = next(_numbers)
    writer = person(js=js, name=f"queue-writer-{js}")
    contact = f"writer{n}.{'js' if js else 'nojs'}@example.com"
    page = writer.goto("/help")
    page.get_by_label("Your name").fill(f"Robin Writer{n}")
    page.get_by_label("An email address or phone number").fill(contact)
    page.get_by_label("What went wrong?").fill("The code never arrives on my new phone.")
    writer.click("button", "Send")
    page.wait_for_url(live.base + "/help/sent")
    writer.check("help sent")
    public_id = _help_case(live, contact)

    you = person(js=js, name=f"queue-agent-{js}")
    set_up(you, live, clock)
    you.check("queue")
    _open_from_queue(you, public_id, status="New")
    desk = you.page
    expect(desk.get_by_role("main")).to_contain_text("The code never arrives on my new phone.")
    expect(desk.get_by_role("main")).to_contain_text("Unverified request.")
    you.click("button", "Claim")
    expect(desk.get_by_text("Status: Open")).to_be_visible()

    desk.get_by_label("Message").fill("Please use the link in this email to write to us again.")
    you.click("button", "Send reply to customer")
    expect(desk.get_by_text("Status: Waiting on customer")).to_be_visible()
    desk.get_by_label("Message").fill("Writer sounds genuine; check the reference next time.")
    you.click("button", "Add internal note")
    expect(desk.locator(".msg-note")).to_contain_text("Writer sounds genuine")
    expect(desk.locator(".msg-note .muted")).to_contain_text(re.compile(r"\d\d:\d\d UTC"))
    # The status is set with a labelled select whose options are words.
    desk.get_by_label("Change the status").select_option(label="Resolved")
    you.click("button", "Set status")
    expect(desk.get_by_text("Status: Resolved")).to_be_visible()
    you.check("case resolved")

    # The writer's email holds no answer, only a link to this one conversation.
    mail = live.wait_for_mail(contact, "An answer to your request")
    assert "Please use the link" not in mail.text
    link = _line_with(mail.text, "/help/case/")
    assert link.startswith(live.base + "/help/case/")
    page = writer.goto(link)
    thread = page.locator("ol.thread")
    expect(thread).to_contain_text("Please use the link in this email to write to us again.")
    expect(thread).to_contain_text("The code never arrives on my new phone.")
    assert "Writer sounds genuine" not in page.content()  # an internal note stays internal


# --- 3. a tool behind re-authentication ---


@JS
def test_a_case_tool_asks_the_agent_to_prove_it_is_them_again_then_resends_the_link_recorded(
    live, person, clock, js
):
    from portal.extensions import db
    from portal.models import AuditEvent
    from portal.services import cases
    from portal.services.customers import find_by_email

    someone = notify(live)

    def open_case():
        customer = find_by_email(someone["email"])[0]
        return cases.open_case(customer, "cannot_finish", "I deleted the email with my link.")

    public_id = live.run(lambda: open_case().public_id)
    you = person(js=js)
    agent = set_up(you, live, clock)
    _open_from_queue(you, public_id, status="New")
    page = you.page
    you.click("button", "Claim")

    clock.wait(6 * 60)  # six minutes on the phone: the sign-in's proof is too old for a tool
    page.reload()
    expect(page.get_by_text("Each of these asks for your password and code again")).to_be_visible()
    resend = _tool(page, "Send a fresh notice link (old links stop working)")
    resend.get_by_label("Reason (recorded)").fill("Customer deleted the notice email")
    resend.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/staff/reauth\?"))
    expect(page.get_by_role("status")).to_contain_text("Confirm it is you first")
    expect(page.get_by_role("main")).to_contain_text("nothing to enter or choose again")
    you.check("re-authentication")
    assert len(live.mails(someone["email"])) == 1  # nothing was sent before the proof
    reauthenticate(you, agent, clock)
    # The link is resent as asked, with the reason given before the proof: nothing typed twice.
    page.wait_for_url(live.base + f"/staff/cases/{public_id}")
    expect(page.get_by_role("status")).to_contain_text("Done, and recorded.")
    expect(page.locator(".msg-event").last).to_contain_text("Customer deleted the notice email")
    you.check("link resent")

    fresh = link_in(live.wait_for_mail(someone["email"], "Your new link").text, live.base)
    customer = person(js=js, name=f"tool-customer-{js}")
    page = customer.goto(someone["link"])
    expect(page.get_by_role("heading", level=1)).to_contain_text("replaced")
    page = customer.goto(fresh)
    expect(page.get_by_role("button", name="Send me the code")).to_be_visible()

    def recorded():
        return [
            (event.actor, event.details)
            for event in db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == "agent.link_resent")
            )
        ]

    assert any(
        actor.startswith("staff:") and "Customer deleted the notice email" in details
        for actor, details in live.run(recorded)
    )


# --- 4. a locked customer reaches a person and is let in ---


@JS
def test_a_locked_customer_reaches_a_person_and_is_let_in_without_anyone_touching_the_database(
    live, person, clock, js
):
    someone = notify(live)
    customer = person(js=js, phone=True, name=f"locked-customer-{js}")  # on their phone
    page = customer.goto(someone["link"])

    # Five wrong tries end a code; the link gives a second one; the tenth wrong try locks.
    for challenge in range(2):
        customer.click("button", "Send me the code")
        page.wait_for_url(live.base + "/verify")
        wrong = _wrong(code_for(live, someone, seen=challenge))
        for _ in range(4):
            _submit_code(customer, wrong)
        if challenge == 0:
            _submit_code(customer, wrong)
            expect(page.get_by_role("alert")).to_contain_text("Too many wrong tries")
            customer.check("code ended")
            page.goto(someone["link"])
    page.get_by_label("Verification code").fill(wrong)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(live.base + "/locked")
    customer.check("locked")
    # The page offers a way to a person: a number to call, or a message to write.
    text = page.get_by_role("main").inner_text()
    to_help = page.locator("main a[href='/help']")
    assert re.search(r"\d{3}[-. ]\d{3}[-. ]\d{4}", text) or to_help.count() == 1
    to_help.click()
    page.wait_for_url(live.base + "/help")
    page.get_by_label("Your name").fill(someone["full_name"])
    page.get_by_label("An email address or phone number").fill(someone["email"])
    page.get_by_label("What went wrong?").fill("I typed the codes wrong and now I am locked.")
    customer.click("button", "Send")
    page.wait_for_url(live.base + "/help/sent")
    customer.check("help sent")
    public_id = _help_case(live, someone["email"])

    you = person(js=js, name=f"locked-agent-{js}")
    agent = set_up(you, live, clock)
    _open_from_queue(you, public_id, status="New")
    desk = you.page
    # The lookup by the email they gave finds the customer, their codes marked as locked.
    you.click("button", "Look up the contact they gave")
    expect(desk.get_by_role("heading", name="Results")).to_be_visible()
    row = desk.locator("tr", has=desk.get_by_role("link", name=someone["full_name"]))
    expect(row).to_contain_text("locked")
    you.check("lookup")
    row.get_by_role("link", name=someone["full_name"]).click()
    expect(desk.get_by_role("heading", level=1)).to_have_text(someone["full_name"])
    expect(desk.get_by_text("Codes are locked for this customer")).to_be_visible()
    you.check("customer record")

    clock.wait(6 * 60)  # the identity check on the phone took a while
    unlock = _tool(desk, "Clear the code lock")
    unlock.get_by_label("Reason (recorded)").fill("Identity checked by phone: date of birth")
    unlock.get_by_role("button").click()
    desk.wait_for_url(re.compile(r"/staff/reauth\?"))
    reauthenticate(you, agent, clock)
    expect(desk.get_by_role("status")).to_contain_text("Done, and recorded.")
    expect(desk.get_by_text("Codes are locked for this customer")).to_have_count(0)
    sign_in = _tool(desk, "Identity confirmed by phone: send a one-time sign-in link")
    sign_in.get_by_label("Reason (recorded)").fill("Identity checked by phone: date of birth")
    sign_in.get_by_role("button").click()
    expect(desk.get_by_role("status")).to_contain_text("Done, and recorded.")
    you.check("customer let in")

    mail = live.wait_for_mail(someone["email"], "Your sign-in link")
    page = customer.goto(_line_with(mail.text, "/assisted/"))
    customer.click("button", "Sign in")
    page.wait_for_url(live.base + "/me")
    customer.check("dashboard")


# --- 5. the console: import, notices, an update in two languages ---


def _wait_for_job(you, done: str, *, check: bool = False) -> None:
    """The job page updates itself with JavaScript; without, the person presses Refresh."""
    page = you.page
    if you.js:
        expect(page.get_by_role("main")).to_contain_text(done, timeout=30_000)
    else:
        deadline = time.monotonic() + 30
        while done not in page.get_by_role("main").inner_text():
            assert time.monotonic() < deadline, f"the job never said {done!r}"
            time.sleep(0.3)
            you.click("link", "Refresh")
    if check:
        you.check("job done")


@JS
def test_an_admin_imports_sends_notices_and_publishes_an_update_read_in_each_customers_language(
    live, person, clock, js, tmp_path
):
    from portal.services.incidents import create_incident

    mode = "js" if js else "nojs"
    slug, title = f"harbor-{mode}", f"Harbor records exposure ({mode})"
    live.run(
        create_incident,
        slug=slug,
        title=title,
        discovered_on=date(2026, 11, 2),
        what_happened="A backup was left readable.",
        what_we_are_doing="We closed it and are checking every backup.",
        contact_phone="1-800-555-0142",
        contact_hours="Every day, 8 am to 8 pm Eastern",
        translations={
            "es": {
                "title": f"Exposición de registros de Harbor ({mode})",
                "what_happened": "Una copia de seguridad quedó legible.",
                "what_we_are_doing": "La cerramos y revisamos todas las copias.",
                "contact_hours": "Todos los días, de 8 a. m. a 8 p. m., hora del Este",
            }
        },
        actor="test",
    )
    people = {
        language: {
            "external_id": f"H-{mode}-{language}",
            "full_name": f"Harbor {language.upper()} {mode}",
            "email": f"harbor.{language}.{mode}@example.com",
            "phone": "",
            "locale": language,
            "region": "US-FL",
            "data_classes": "email_address;postal_address",
        }
        for language in ("en", "es")
    }
    upload = tmp_path / "affected.csv"
    with upload.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows([row[h] for h in HEADER] for row in people.values())

    you = person(js=js)
    # This admin also writes the updates (communications); legal is someone else (below).
    set_up(you, live, clock, role="admin", roles=("communications",))
    page = you.page
    you.click("link", "Console")
    you.check("console")
    you.click("link", title, exact=True)
    you.click("link", "Import affected customers")
    you.check("import")
    page.get_by_label("CSV file (UTF-8)").set_input_files(upload)
    you.click("button", "Upload and check")
    _wait_for_job(you, "2 rows checked: no problems.", check=True)
    you.click("button", "Import them")
    _wait_for_job(you, "Imported 2 rows: 2 new")

    you.click("link", "Back to the console")
    you.click("link", title, exact=True)
    you.click("link", "Notice campaign")
    you.check("campaign")
    # Before sending: what the Spanish reader will get, then the counts to confirm.
    page.get_by_role("link", name="Preview", exact=True).nth(1).click()
    you.check("campaign-preview")
    assert "Aviso de filtración de datos" in page.locator("pre.message-text").inner_text()
    frame = page.frame_locator("iframe.message-preview")
    assert "Notice of Data Breach" in frame.locator("h1").inner_text()
    you.click("link", "Back to the campaign")
    you.click("link", "Send notices to everyone not yet notified (2)")
    you.check("campaign-confirm")
    # Legal approves these exact messages and counts (their side is walked in
    # test_approval_journey.py); without it the campaign does not go out.
    live.run(_legal_approves, "campaign", slug)
    you.click("button", "Send 2 notices")
    _wait_for_job(you, "2 notice(s) queued for delivery.")
    links = {
        "en": link_in(
            live.wait_for_mail(people["en"]["email"], "Notice of Data Breach").text, live.base
        ),
        "es": link_in(live.wait_for_mail(people["es"]["email"], "Aviso").text, live.base),
    }

    you.click("link", "Back to the console")
    you.click("link", title, exact=True)
    you.click("link", "Updates about this incident")
    draft = page.locator(
        "form", has=page.get_by_role("heading", name="New update (saved as a draft)")
    )
    draft.get_by_label("Title", exact=True).fill("Backups are now encrypted")
    draft.get_by_label("Text (Markdown)", exact=True).fill("Every backup is now encrypted.")
    draft.get_by_label("Title in Spanish").fill("Las copias ya están cifradas")
    draft.get_by_label("Text in Spanish (Markdown)").fill("Todas las copias están cifradas.")
    you.click("button", "Save draft")
    expect(page.get_by_role("status")).to_contain_text("Draft saved")
    live.run(_legal_approves, "update", slug)
    you.click("button", "Publish", exact=True)
    expect(page.locator(".update h4")).to_contain_text("Backups are now encrypted")
    you.check("published")

    shown = {
        "en": ("Backups are now encrypted", "Las copias ya están cifradas"),
        "es": ("Las copias ya están cifradas", "Backups are now encrypted"),
    }
    labels = {
        "en": ("Send me the code", "Verification code", "Continue"),
        "es": ("Envíenme el código", "Código de verificación", "Continuar"),
    }
    for language, (theirs, other) in shown.items():
        reader = person(language=language, js=js, name=f"update-{language}-{mode}")
        page = reader.goto(links[language])
        send, field, go = labels[language]
        reader.click("button", send)
        page.wait_for_url(live.base + "/verify")
        page.get_by_label(field).fill(code_for(live, {**people[language], "link": ""}))
        reader.click("button", go)
        page.wait_for_url(live.base + "/me")
        reader.check("dashboard")
        updates = page.get_by_role("main").inner_text()
        assert theirs in updates and other not in updates


# --- 6. a proof that grew old while the admin looked for the file ---


@JS
def test_an_admin_whose_proof_grew_old_while_choosing_a_file_confirms_it_is_them_and_it_is_checked(
    live, person, clock, js, tmp_path
):
    from portal.services.incidents import create_incident

    mode = "js" if js else "nojs"
    slug = f"ferry-{mode}"
    live.run(
        create_incident,
        slug=slug,
        title=f"Ferry bookings exposure ({mode})",
        discovered_on=date(2026, 11, 4),
        actor="test",
    )
    upload = tmp_path / "affected.csv"
    with upload.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in (1, 2):
            email = f"ferry{n}.{mode}@example.com"
            writer.writerow(
                [f"F-{mode}-{n}", f"Ferry Rider{n}", email, "", "en", "", "email_address"]
            )

    you = person(js=js)
    admin = set_up(you, live, clock, role="admin")
    page = you.page
    page.goto(live.base + f"/admin/incidents/{slug}/import")
    page.get_by_label("CSV file (UTF-8)").set_input_files(upload)
    clock.wait(6 * 60)  # the file took a while to find: the sign-in's proof is too old now
    you.click("button", "Upload and check")
    page.wait_for_url(re.compile(r"/staff/reauth\?"))
    expect(page.get_by_role("status")).to_contain_text("Confirm it is you first")
    expect(page.get_by_role("main")).to_contain_text("nothing to enter or choose again")
    you.check("confirm before the upload")
    reauthenticate(you, admin, clock)
    # The file sent before the proof is the one checked: it is not chosen again.
    page.wait_for_url(re.compile(r"/admin/jobs/"))
    _wait_for_job(you, "2 rows checked: no problems.", check=True)


@JS
def test_an_admin_reading_in_spanish_is_told_in_spanish_which_line_of_the_file_is_not_utf8(
    live, person, clock, js, tmp_path
):
    """Issue 13, walked: the problems of a file are written by the worker, and were in its own
    language (English) for an admin reading the console in Spanish. On a phone, too."""
    from portal.services.incidents import create_incident

    mode = "js" if js else "nojs"
    slug = f"quay-{mode}"
    live.run(
        create_incident,
        slug=slug,
        title=f"Quay ledger exposure ({mode})",
        discovered_on=date(2026, 11, 5),
        actor="test",
    )
    rows = [f"Q-{mode}-{n},Quay Person{n},quay{n}.{mode}@example.com,,en,,ssn\n" for n in range(6)]
    lines = [",".join(HEADER).encode() + b"\n"] + [row.encode() for row in rows]
    lines[4] = lines[4].replace(b"Person", b"Pers\xe9n")  # Latin-1, on the file's line 5
    upload = tmp_path / "afectados.csv"
    upload.write_bytes(b"".join(lines))

    you = person(js=js, phone=True)
    set_up(you, live, clock, role="admin")
    page = you.page
    page.goto(live.base + f"/admin/incidents/{slug}/import")
    you.click("button", "Español")
    page.get_by_label("Archivo CSV (UTF-8)").set_input_files(upload)
    you.click("button", "Subir y revisar")
    page.wait_for_url(re.compile(r"/admin/jobs/"))
    deadline = time.monotonic() + 30
    while "Corrija el archivo" not in page.get_by_role("main").inner_text():
        assert time.monotonic() < deadline, "the check never finished"
        if js:
            time.sleep(0.3)  # the page updates itself
        else:
            time.sleep(0.3)
            you.click("link", "Actualizar")
    main = page.get_by_role("main").inner_text()
    assert "esta línea no es texto UTF-8" in main
    assert "this line is not UTF-8" not in main and "done" not in main
    you.check("a file that is not UTF-8, in Spanish, on a phone")


# --- a contact change made by staff waits for the new address and a second staff member ---


@JS
def test_an_agents_contact_change_waits_for_the_new_address_and_a_second_agent_before_it_applies(
    live, person, clock, js
):
    from portal.services import cases
    from portal.services.customers import find_by_email

    someone = notify(live)
    new_address = f"moved-{'js' if js else 'nojs'}@example.net"

    def open_case():
        customer = find_by_email(someone["email"])[0]
        return cases.open_case(customer, "my_data", "My old mailbox was closed.")

    public_id = live.run(lambda: open_case().public_id)
    you = person(js=js)
    set_up(you, live, clock)  # just signed in: the proof is fresh enough for a tool
    _open_from_queue(you, public_id, status="New")
    page = you.page
    you.click("button", "Claim")
    correct = _tool(
        page,
        "Correct contact details (the new address must confirm; a second staff member approves)",
    )
    correct.get_by_label("Reason (recorded)").fill("Customer called: old mailbox closed")
    correct.get_by_label("Corrected email").fill(new_address)
    correct.get_by_role("button").click()
    page.wait_for_url(live.base + f"/staff/cases/{public_id}")
    expect(page.get_by_role("status")).to_contain_text("Asked, and recorded.")
    changes = page.locator("#contact-changes")
    expect(changes).to_contain_text("Waiting for the new address to enter its code")
    expect(changes).to_contain_text("You asked for this change: a second staff member must approve")
    expect(changes.get_by_role("button", name="Approve as second staff member")).to_have_count(0)
    expect(changes).not_to_contain_text(new_address)  # masked
    you.check("contact change waiting")
    # The address on file was told, with a way to stop it.
    told = live.wait_for_mail(someone["email"], "A change to your account")
    assert "/contact/not-me/" in told.text

    # The new address's owner opens the page from their message and types its code.
    asked = live.wait_for_mail(new_address, "Confirm your new contact details")
    link = _line_with(asked.text, "/contact/confirm/")
    code = next(
        line.strip() for line in asked.text.splitlines() if re.fullmatch(r"\d{6}", line.strip())
    )
    owner = person(js=js, name=f"new-address-{js}")
    page = owner.goto(link)
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your new contact details")
    owner.check("confirm new address")
    page.get_by_label("Verification code").fill(code)
    owner.click("button", "Confirm")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you: this address is confirmed"
    )
    owner.check("address confirmed")

    page = you.page
    page.reload()
    expect(page.locator("#contact-changes")).to_contain_text("Waiting for a second staff member")

    # A second agent approves it from the list of changes waiting.
    second = person(js=js, name=f"second-agent-{js}")
    member = set_up(second, live, clock)
    page = second.page
    second.click("link", "Contact changes waiting for a second staff member")
    page.wait_for_url(live.base + "/staff/contact-changes")
    second.check("contact changes waiting")
    row = page.locator("tr.contact-change", has_text=someone["external_id"])
    approve = row.locator(
        "form", has=page.get_by_role("button", name="Approve as second staff member")
    )
    approve.get_by_label("Reason (recorded)").fill("Called the customer back on file")
    approve.get_by_role("button").click()
    if "/staff/reauth" in page.url:
        reauthenticate(second, member, clock)
    page.wait_for_url(live.base + "/staff/contact-changes")
    expect(page.get_by_role("status")).to_contain_text("Done, and recorded.")

    page = you.page
    page.reload()
    expect(page.locator("#contact-changes")).to_contain_text("Applied")
    expect(page.locator("#contact-changes")).to_contain_text(f"Approved by {member.email}")
    you.check("contact change applied")


# --- 6. printed letters: build in the background, download, record the mailing ---


def _paper_incident(slug: str, title: str, mode: str, folder) -> None:
    """An incident whose two affected people have a postal address and no email."""
    from portal.extensions import db
    from portal.services.imports import ADDRESS_COLUMNS, COLUMNS, import_customers
    from portal.services.incidents import create_incident

    incident = create_incident(
        slug=slug, title=title, discovered_on=date(2026, 11, 5), actor="test"
    )
    db.session.flush()
    path = folder / f"paper-{mode}.csv"
    header = [c for c in (*COLUMNS, *ADDRESS_COLUMNS) if c != "email"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for n in (1, 2):
            row = {
                "external_id": f"P-{mode}-{n}",
                "full_name": f"Paper Reader{n}",
                "locale": "en",
                "region": "US-OR",
                "data_classes": "full_name;postal_address",
                "address_line1": f"{n} Mill Street",
                "city": "Portland",
                "postal_code": "97201",
            }
            writer.writerow([row.get(h, "") for h in header])
    import_customers(incident, path, actor="test")


def _letters_approved_by_legal(slug: str) -> None:
    from portal.extensions import db
    from portal.models import Incident
    from tests.approval_flow import approve_letters

    approve_letters(db.session.query(Incident).filter_by(slug=slug).one())


@JS
def test_an_admin_builds_letters_downloads_the_manifest_and_records_the_mailing(
    live, person, clock, js, tmp_path
):
    mode = "js" if js else "nojs"
    slug, title = f"paper-{mode}", f"Paper records exposure ({mode})"
    live.run(_paper_incident, slug, title, mode, tmp_path)
    live.run(_letters_approved_by_legal, slug)  # four eyes: legal approved the batch first

    you = person(js=js)
    set_up(you, live, clock, role="admin")
    page = you.page
    you.click("link", "Console")
    you.click("link", title, exact=True)
    you.click("link", "Printed letters")
    you.check("letters")
    you.click("button", "Write the print files for the letters due")
    page.wait_for_url(re.compile(r"/admin/jobs/"))
    _wait_for_job(you, "2 letter(s) written in 1 file(s).", check=True)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"-manifest\.csv$")).click()
    manifest = tmp_path / f"manifest-{mode}.csv"
    download.value.save_as(manifest)
    assert "Mill Street" in manifest.read_text(encoding="utf-8")

    you.click("link", "Back to the letters")
    page.get_by_label("The mail house's manifest (CSV)").set_input_files(manifest)
    page.get_by_label("Mailed on").fill("2026-11-20")
    you.click("button", "Record these letters as mailed")
    expect(page.get_by_role("status")).to_contain_text("2 letter(s) recorded as mailed")
    expect(page.locator("tr", has_text="Mailed").first).to_contain_text("2")
    you.check("mailed")
