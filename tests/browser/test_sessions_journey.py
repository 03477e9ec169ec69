"""Where you are signed in, as a customer lives it: on a phone, they find a browser they do not
recognise and sign it out; that browser is back at the way in (JS on and off, axe clean)."""

from __future__ import annotations

import pytest

from tests.browser.people import code_for, notify

pytestmark = pytest.mark.slow


def _sign_in(who, live, someone, seen: int):
    page = who.goto(someone["link"])
    who.click("button", "Send me the code")
    page.wait_for_url(live.base + "/verify")
    page.get_by_label("Verification code").fill(code_for(live, someone, seen=seen))
    who.click("button", "Continue")
    page.wait_for_url(live.base + "/me")
    return page


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_a_customer_signs_out_a_browser_they_do_not_recognise(live, person, js):
    someone = notify(live)
    you = person(js=js, phone=True)
    stranger = person(js=True, name=f"sessions-other-{'js' if js else 'nojs'}")
    page = _sign_in(you, live, someone, seen=0)
    _sign_in(stranger, live, someone, seen=1)

    page = you.goto("/me")
    you.click("link", "See where you are signed in, and sign out other places")
    page.wait_for_url(live.base + "/me/sessions")
    you.check("where signed in")
    shown = page.inner_text("main")
    assert "This browser" in shown and "Signed in:" in shown and "Last used:" in shown
    assert page.get_by_role("button", name="Sign out this one").count() == 1  # not this one

    you.submit("Sign out this one")
    assert "Signed out there" in page.inner_text("main")
    assert "You are signed in only here." in page.inner_text("main")
    you.check("signed out there")

    stranger.page.goto(live.base + "/me")
    stranger.page.wait_for_url(live.base + "/signed-out*")
    assert you.goto("/me").url == live.base + "/me"  # this browser goes on
