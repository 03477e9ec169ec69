"""`make demo` on this checkout, as a new user meets it: in a real browser."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from portal import ROOT
from tests.conftest import free_port
from tests.staff_flow import set_up


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
        return response.status, response.read().decode()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """`make demo` on a free port with a fresh instance folder; yield its base URL and log."""
    folder = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env["PORTAL_INSTANCE_PATH"] = str(folder)  # a fresh database, keys and all
    log = (folder / "demo.log").open("w")
    server = subprocess.Popen(
        ["make", "--no-print-directory", "demo", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                _get(base + "/healthz")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make demo did not serve: {(folder / 'demo.log').read_text()}")
                time.sleep(0.5)
        yield base, folder / "demo.log"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def demo(demo_run):
    return demo_run[0]


def test_the_demo_prints_a_staff_set_up_link_that_opens_and_then_says_where_to_sign_in(
    app, client, runner, clock
):
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    links = re.findall(r"^(https?://\S+/staff/setup/\S+)$", first.output, re.M)
    # The team: the admin, and legal and communications (four eyes need two people).
    assert len(links) == 3, first.output
    assert "the demo legal legal@example.com" in first.output
    assert "the demo communications communications@example.com" in first.output
    # Its notices went out as every campaign does: approved by legal, not by the admin alone.
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Approval, StaffMember

    db.session.expire_all()
    approval = db.session.scalars(select(Approval)).one()
    assert approval.subject == "campaign" and approval.state == "approved"
    assert db.session.get(StaffMember, approval.approved_by_id).email == "legal@example.com"
    assert links[0].startswith(app.config["BASE_URL"] + "/staff/setup/")
    page = client.get(links[0].removeprefix(app.config["BASE_URL"]))
    assert page.status_code == 200
    assert b"admin@example.com" in page.data

    # Run again before the set-up is done: a new link, and the one before stops working.
    second = runner.invoke(args=["demo"])
    again = re.findall(r"^(https?://\S+/staff/setup/\S+)$", second.output, re.M)
    assert len(again) == 3 and again[0] != links[0]
    assert client.get(links[0].removeprefix(app.config["BASE_URL"])).status_code == 404

    # Once the admin is set up, the demo sends them to the sign-in page instead.
    set_up(app, app.test_client(), "admin@example.com", "admin", clock)
    third = runner.invoke(args=["demo"])
    assert "admin@example.com is set up" in third.output
    assert len(re.findall(r"/staff/setup/", third.output)) == 2
    assert f"sign in at {app.config['BASE_URL']}/staff/login" in third.output


@pytest.mark.slow
def test_make_demo_serves_the_portal_and_the_demo_mailbox(demo_run):
    demo, log = demo_run
    status, page = _get(demo + "/")
    assert status == 200
    assert "Help after a data breach" in page
    status, mailbox = _get(demo + "/dev/mail")
    assert status == 200
    english = mailbox.count("Notice of Data Breach from Example Corp")
    spanish = mailbox.count("Aviso de filtración de datos de Example Corp")
    assert (english, spanish) == (8, 4)  # four demo customers read Spanish
    # The staff side: the printed set-up link opens on the port the demo serves.
    link = re.search(r"^(\S+/staff/setup/\S+)$", log.read_text(), re.M).group(1)
    assert link.startswith(demo + "/staff/setup/")
    status, setup = _get(link)
    assert status == 200
    assert "admin@example.com" in setup


@pytest.mark.slow
def test_a_new_user_reads_a_notice_follows_its_link_and_sees_the_dashboard(demo, chromium):
    context = chromium.new_context()
    page = context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on(
        "request",
        lambda r: (
            problems.append(f"foreign request {r.url}") if not r.url.startswith(demo) else None
        ),
    )

    # The mailbox: James Smith's notice (he has no phone on file, so his code comes by email).
    page.goto(demo + "/dev/mail")
    row = page.locator("tr", has_text="james.smith@example.com")
    row.get_by_role("link", name="Notice of Data Breach from Example Corp").click()
    # A click returns once the next page starts to arrive, not once it is there: on a loaded
    # machine page.content() then read an empty document. Read a page only after it loaded.
    page.wait_for_url(demo + "/dev/mail/*")
    assert "What Information Was Involved" in page.content()
    page.locator("a", has_text=demo + "/a/").first.click()
    page.wait_for_url(demo + "/a/*")

    # The link page spends nothing until the person presses the button.
    assert page.get_by_role("button", name="Send me the code").is_visible()
    assert "by email to j•••@example.com" in page.content()
    page.get_by_role("button", name="Send me the code").click()
    page.wait_for_url(demo + "/verify")

    # Read the code in the mailbox, in a second tab, as a person would.
    mailbox = context.new_page()
    code = None
    for _ in range(20):
        mailbox.goto(demo + "/dev/mail")
        newest = mailbox.locator("tr", has_text="james.smith@example.com").first
        if "verification code" in newest.inner_text():
            newest.get_by_role("link").click()
            mailbox.wait_for_url(demo + "/dev/mail/*")
            code = re.search(
                r"^\s*(\d{6})\s*$", mailbox.locator("pre.mail").inner_text(), re.M
            ).group(1)
            break
        time.sleep(0.5)
    assert code, "the code never reached the mailbox"

    page.get_by_label("Verification code").fill(code[:3] + " " + code[3:])  # as people type
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(demo + "/me")
    dashboard = page.content()
    assert "Your personal page" in dashboard
    assert "Password for your account" in dashboard
    assert "Security questions and answers" in dashboard
    page.screenshot(path=str(ROOT / "instance" / "dashboard.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(demo + "/signed-out?lang=en")
    page.goto(demo + "/me")
    assert page.url == demo + "/signed-out"
    assert problems == []
    context.close()
