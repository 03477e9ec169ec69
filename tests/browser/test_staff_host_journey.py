"""Staff on their own host, in a real browser: the public host is 127.0.0.1 and the staff host is
localhost (one server, two names), so the browser itself decides which cookies go where."""

from __future__ import annotations

import os
import threading

import pytest
from werkzeug.serving import make_server

from portal import create_app
from portal.extensions import db
from tests.browser.conftest import REDIS_URL
from tests.browser.staff import PASSWORD
from tests.conftest import base_env, clean_database, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hosts(migrated_database, tmp_path_factory):
    """(the app, the public origin, the staff origin) of a live portal with a staff host."""
    folder = tmp_path_factory.mktemp("two-hosts")
    port = free_port()
    public, staff = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
    previous = os.environ.get("PORTAL_INSTANCE_PATH")
    os.environ["PORTAL_INSTANCE_PATH"] = str(folder)
    env = base_env(
        clean_database(migrated_database, folder),
        PORTAL_BASE_URL=public,
        PORTAL_STAFF_BASE_URL=staff,
        PORTAL_REDIS_URL=REDIS_URL,
    )
    del env["PORTAL_STAFF_SAME_HOST"]
    app = create_app(env)
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield app, public, staff
    finally:
        server.shutdown()
        server.server_close()
        with app.app_context():
            db.engine.dispose()
        if previous is None:
            os.environ.pop("PORTAL_INSTANCE_PATH", None)
        else:
            os.environ["PORTAL_INSTANCE_PATH"] = previous


@pytest.fixture(autouse=True)
def own_instance_folder():
    """The live server keeps the instance folder it started with (overrides the suite's)."""


def test_an_invited_agent_sets_up_on_the_staff_host_whose_cookies_never_reach_the_public_one(
    chromium, hosts
):
    from portal.services import staff as staff_service

    app, public, staff = hosts
    with app.app_context():
        link = staff_service.invite("agent.host@staff.example.com", "agent", actor="cli:test")
        db.session.commit()
    assert link.startswith(f"{staff}/staff/setup/")
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(link)
        page.get_by_label("New password").fill(PASSWORD)
        page.get_by_label("The same password again").fill(PASSWORD)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(f"{staff}/staff/setup-authenticator")

        cookies = {(c["domain"], c["name"]): c for c in context.cookies()}
        assert cookies[("localhost", "portal_staff")]["sameSite"] == "Strict"
        assert cookies[("localhost", "portal")]["sameSite"] == "Strict"
        assert not [c for c in cookies if c[0] != "localhost"]

        # The same page by the public name: not found, and the staff session is not sent there.
        assert page.goto(f"{public}/staff/setup-authenticator").status == 404
        assert page.get_by_role("heading", name="Page not found").is_visible()
        # Customer pages are not served by the staff name; the public name serves them (Lax).
        assert page.goto(f"{staff}/start").status == 404
        assert page.goto(f"{public}/start").status == 200
        public_session = next(c for c in context.cookies() if c["domain"] == "127.0.0.1")
        assert public_session["sameSite"] == "Lax"
        assert ("127.0.0.1", "portal_staff") not in {
            (c["domain"], c["name"]) for c in context.cookies()
        }
    finally:
        context.close()
