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
    you.click("button", "Continue")
    problem = page.get_by_role("alert")
    assert "That code is not right" in problem.inner_text()
    # The person's attention goes to the message, not to the top of the page.
    page.wait_for_function("document.activeElement.closest('[role=alert]') !== null")
    you.check("wrong code")

    page.get_by_label("Verification code").fill("")
    you.click("button", "Continue")
    assert "Enter the 6 digits" in page.get_by_role("alert").inner_text()

    page.get_by_label("Verification code").fill(code)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/me")
    you.check("dashboard")
