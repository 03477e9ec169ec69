"""The way in, as people live it: a notice in the mailbox, its link, a code, the dashboard;
and every way it can go wrong, with JavaScript on and off."""

from __future__ import annotations

import pytest

from tests.browser.people import code_for, notify

pytestmark = pytest.mark.slow


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_wrong_code_is_explained_and_the_right_one_then_lets_them_in(live, person, js):
    someone = notify(live)
    you = person(js=js)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    page.wait_for_url(live.base + "/verify")
    you.check("code page")
    code = code_for(live, someone)

    page.get_by_label("Verification code").fill(_wrong(code))
    you.submit("Continue")
    problem = page.get_by_role("alert")
    assert "That code is not right" in problem.inner_text()
    # The person's attention goes to the message, not to the top of the page.
    you.wait_until("document.activeElement.closest('[role=alert]') !== null")
    you.check("wrong code")

    page.get_by_label("Verification code").fill("")
    you.submit("Continue")
    assert "Enter the 6 digits" in page.get_by_role("alert").inner_text()

    page.get_by_label("Verification code").fill(code)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/me")
    you.check("dashboard")


def _type_code(you, code: str) -> str:
    page = you.page
    page.get_by_label("Verification code").fill(code)
    you.submit("Continue")
    return page.get_by_role("alert").inner_text()


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_after_five_wrong_codes_the_page_offers_a_new_code_and_warns_before_the_lock(
    live, person, js
):
    someone = notify(live)
    you = person(js=js)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    code = code_for(live, someone)
    for _ in range(2):
        assert "That code is not right" in _type_code(you, _wrong(code))
    # The code's own limit is said before it ends the code, not only after.
    assert "You can try this code 2 more times" in _type_code(you, _wrong(code))
    assert "You can try this code once more" in _type_code(you, _wrong(code))
    assert "Too many wrong tries for this code" in _type_code(you, _wrong(code))
    # The box is gone (typing again cannot work); the one step that can is offered instead.
    assert page.get_by_label("Verification code").count() == 0
    you.check("code ended")
    you.submit("Send me a new code")
    page.wait_for_url(live.base + "/verify")
    code = code_for(live, someone, seen=1)

    # Ten wrong codes in a day pause codes: the person is told before, not after.
    assert "today" not in _type_code(you, _wrong(code))  # six: no warning yet
    warning = _type_code(you, _wrong(code))  # seven
    # The lock does not lift by itself: the warning says a person will have to let them in.
    assert (
        "After 3 more wrong codes today, codes will stop: a person from our team will then need"
        " to check it is you." in warning
    )
    _type_code(you, _wrong(code))
    assert "One more wrong code today" in _type_code(you, _wrong(code))  # nine
    you.check("warned")
    page.get_by_label("Verification code").fill(_wrong(code))
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/locked")
    helpline = page.get_by_role("complementary", name="Talk to a person")
    assert "1-800-555-0199" in helpline.inner_text()  # the incident's own line and hours
    assert "Monday to Friday, 8 am to 8 pm Pacific" in helpline.inner_text()
    assert helpline.get_by_role("link", name="Write to us").get_attribute("href") == "/help"
    assert "until a person from our team checks it is you" in page.get_by_role("main").inner_text()
    you.check("locked")


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_new_code_after_a_used_up_one_lets_the_person_in(live, person, js):
    someone = notify(live)
    you = person(js=js, phone=True)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    code = code_for(live, someone)
    for _ in range(5):
        _type_code(you, _wrong(code))
    # The old code, even right, no longer works; a new one does.
    you.submit("Send me a new code")
    fresh = code_for(live, someone, seen=1)
    page.get_by_label("Verification code").fill(fresh)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/me")
    you.check("in")


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_code_sent_to_an_old_phone_can_go_to_the_email_on_file_instead(live, person, js):
    digits = "42" if js else "43"  # a phone number of each person's own
    someone = notify(live, phone=f"+141555501{digits}")
    you = person(js=js, phone=True)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    page.wait_for_url(live.base + "/verify")
    assert f"phone number ending in {digits}" in page.get_by_role("main").inner_text()
    code = code_for(live, someone)  # by text, to a phone the person no longer has

    you.click("button", "Send it by email to b")  # b•••@example.com: masked
    you.check("sent by email")
    by_email = live.wait_for_mail(someone["email"], "verification code")
    assert code in by_email.text  # the same code: the text message would still work too
    page.get_by_label("Verification code").fill(code)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/me")


DEAD_ENDS = ["/", "/start", "/link/new", "/a/not-a-real-link", "/locked"]


@pytest.mark.parametrize(
    ("language", "js", "phone"),
    [("en", True, False), ("es", False, True)],
    ids=["en-js-desktop", "es-nojs-phone"],
)
def test_every_page_where_someone_can_get_stuck_leads_to_a_person(
    live, person, language, js, phone
):
    notify(live)  # an announced incident with a helpline
    you = person(language=language, js=js, phone=phone)
    heading = {"en": "Talk to a person", "es": "Hable con una persona"}[language]
    for path in DEAD_ENDS:
        page = you.goto(path)
        helpline = page.get_by_role("complementary", name=heading)
        assert "1-800-555-0199" in helpline.inner_text(), path
        assert helpline.get_by_role("link").get_attribute("href") == "/help", path
    # The front page also links the public page of the incident people were told about.
    page = you.goto("/")
    page.get_by_role("link", name="Unauthorized access to customer records").click()
    assert page.url == live.base + "/incidents/acme-2026"
    you.check("incident page")


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_resending_the_code_says_what_happened_each_time(live, person, js):
    someone = notify(live)
    you = person(js=js)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    status = page.locator("#resend-status") if js else page.get_by_role("status").first
    for _ in range(3):
        you.submit("Send the code again")
        assert "We sent the same code again" in status.inner_text()
    you.submit("Send the code again")
    assert "We have sent this code as often as we can" in status.inner_text()
    you.check("resend limit")
    # Every message carried the same code, so whichever arrives first works.
    codes = {code_for(live, someone, seen=n) for n in range(4)}
    assert len(codes) == 1


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_mistyped_address_for_a_new_link_is_explained_and_focused(live, person, js):
    you = person(js=js, phone=True)
    page = you.goto("/link/new")
    page.get_by_label("Email address").fill("not an address")
    you.submit("Send me a new link")
    summary = page.get_by_role("alert")
    assert "There is a problem" in summary.inner_text()
    assert you.page.evaluate("document.activeElement.classList.contains('error-summary')")
    # The summary's link takes the person to the field, which says what is wrong with it.
    summary.get_by_role("link").click()
    field = page.get_by_label("Email address")
    assert field.get_attribute("aria-invalid") == "true"
    assert "error" in field.get_attribute("aria-describedby")
    you.check("new link mistake")


def test_an_answer_that_is_not_a_page_still_tells_the_person_something(live, person):
    someone = notify(live)
    you = person(js=True)
    page = you.goto(someone["link"])
    you.click("button", "Send me the code")
    # A proxy in front of the portal answers for it, in plain text.
    page.route(
        "**/verify",
        lambda route: (
            route.fulfill(status=502, body="Bad gateway", content_type="text/plain")
            if route.request.method == "POST"
            else route.continue_()
        ),
    )
    page.get_by_label("Verification code").fill("123456")
    you.submit("Continue")
    assert "Something went wrong on our side" in page.get_by_role("main").inner_text()
    you.wait_until("document.activeElement.tagName === 'H1'")
