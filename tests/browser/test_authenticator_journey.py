"""The authenticator app, as a customer lives it: setting one up, then moving to a new phone,
which needs a code from the app in use (a session alone cannot swap it), with JS on and off."""

from __future__ import annotations

import pyotp
import pytest

from tests.browser.people import notify, signed_in

pytestmark = pytest.mark.slow


def _key(page) -> str:
    """The key shown for people who cannot scan the QR code, as the app wants it."""
    return page.locator("p.code").inner_text().replace(" ", "")


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_moving_to_a_new_app_asks_for_a_code_from_the_current_one(live, person, clock, js):
    someone = notify(live)
    you = person(js=js)
    signed_in(you, live, someone)

    page = you.goto("/me/authenticator")
    you.submit("Set up an authenticator app")
    current = _key(page)
    page.get_by_label("Verification code").fill(pyotp.TOTP(current).at(clock.now()))
    you.submit("Turn it on")
    assert "Your authenticator app is set up" in page.inner_text("body")
    you.check("app on")

    # A new phone: without a code from the app in use, nothing changes and the page says why.
    you.submit("Set up a new app")
    problem = page.get_by_role("alert").inner_text()
    assert "Enter the 6 digits the app you use now shows." in problem
    you.check("new app without a code")

    clock.tick(30)  # the app's next code (the one used to turn it on cannot be replayed)
    page.get_by_label("Code from the authenticator app you use now").fill(
        pyotp.TOTP(current).at(clock.now())
    )
    you.submit("Set up a new app")
    assert "Your old authenticator app no longer works" in page.inner_text("body")
    assert _key(page) != current  # a new key to scan; the old app is off
    you.check("new app to scan")
