"""An admin in a real browser under the production rule (PORTAL_ADMIN_SECURITY_KEY_REQUIRED=1):
set up with the app, held on the security-key page, a key added, then signing in with the key.

The key is Chromium's virtual authenticator (DevTools' WebAuthn domain), so the page's own
script, navigator.credentials and the portal's checks all run as with a real key.
"""

from __future__ import annotations

import pytest

from tests.browser.conftest import serve_portal
from tests.browser.staff import PASSWORD, AuthenticatorClock, authenticator_key, invite

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(migrated_database, tmp_path_factory):
    """The portal at http://localhost:<port>: a host name, which WebAuthn needs (not an IP)."""
    with serve_portal(
        migrated_database,
        tmp_path_factory,
        host="localhost",
        PORTAL_ADMIN_SECURITY_KEY_REQUIRED="1",
    ) as portal:
        yield portal


@pytest.fixture
def clock(clock):
    return AuthenticatorClock(clock)


def _virtual_key(you) -> None:
    """A USB security key plugged into this browser, touched whenever it is asked."""
    cdp = you.context.new_cdp_session(you.page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "usb",
                "hasResidentKey": False,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def _password(you, live, email: str):
    page = you.goto("/staff/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/staff/code")
    you.check("code page")
    return page


def test_an_admin_adds_a_security_key_and_then_signs_in_with_it(person, live, clock):
    you = person(js=True)
    _virtual_key(you)
    admin, link = invite(live, "admin")
    page = you.page
    page.goto(link)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    you.click("button", "Continue")
    page.wait_for_url(live.base + "/staff/setup-authenticator")
    admin.secret = authenticator_key(page)
    page.get_by_label("Code from your authenticator app").fill(clock.code(admin.secret))
    you.click("button", "Confirm")
    you.click("link", "I have stored them: continue")
    # Signed in with the app only: the queue is not open to an admin, only the key page.
    page.wait_for_url(live.base + "/staff/security-keys")
    you.check("held on the key page")
    assert "the only page you can use" in page.inner_text("main")
    you.goto("/admin/")
    assert page.url == live.base + "/staff/security-keys"

    you.click("link", "Add a security key")
    page.wait_for_url(live.base + "/staff/security-keys/new")
    you.check("add a key")
    page.get_by_label("A name for this key").fill("blue key")
    with page.expect_navigation():
        page.get_by_role("button", name="Add this security key").click()
    page.wait_for_url(live.base + "/staff/security-keys")
    you.check("key added")
    assert "blue key" in page.inner_text("main")
    you.goto("/admin/")
    assert page.url == live.base + "/admin/"
    live.wait_for_mail(admin.email, "Your staff account")

    # Signed out and back: the key signs the admin in; no app code is asked for.
    you.click("button", "Sign out")
    page = _password(you, live, admin.email)
    assert page.get_by_label("Code from your authenticator app").count() == 0
    with page.expect_navigation(url=live.base + "/staff/cases"):
        page.get_by_role("button", name="Sign in with your security key").click()
    you.check("signed in with the key")
    you.goto("/admin/")
    assert page.url == live.base + "/admin/"


def test_without_javascript_the_code_page_says_a_key_needs_it(person, live, clock):
    # An agent with a key, in a browser without JavaScript: told why, and offered the app code.
    helper = person(js=True, name="key-agent-setup")
    _virtual_key(helper)
    agent, link = invite(live, "agent")
    page = helper.page
    page.goto(link)
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_label("The same password again").fill(PASSWORD)
    helper.click("button", "Continue")
    agent.secret = authenticator_key(page)
    page.get_by_label("Code from your authenticator app").fill(clock.code(agent.secret))
    helper.click("button", "Confirm")
    helper.click("link", "I have stored them: continue")
    helper.goto("/staff/security-keys/new")
    page.get_by_label("A name for this key").fill("desk key")
    with page.expect_navigation():
        page.get_by_role("button", name="Add this security key").click()
    assert "desk key" in page.inner_text("main")

    you = person(js=False)
    page = _password(you, live, agent.email)
    text = page.inner_text("main")
    assert "needs JavaScript" in text and "code from your authenticator app" in text
    assert page.get_by_role("button", name="Sign in with your security key").count() == 0
    page.get_by_label("Code from your authenticator app, or a recovery code").fill(
        clock.next_code(agent.secret)
    )
    you.click("button", "Sign in")
    page.wait_for_url(live.base + "/staff/cases")
