"""What each role sees, it may use: a staff member is never offered a link or a button that
answers "403 Forbidden". The walk signs in one member per role on the demo incident, follows
every link on the staff side that the role may open, and checks each link and form it is shown.
"""

from __future__ import annotations

import re
from collections import deque
from datetime import UTC, datetime
from html import unescape

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from portal.extensions import db
from portal.models.staff import STAFF_ROLES
from portal.services.demo import load_demo
from portal.web.access import STAFF, access_of
from tests.staff_flow import set_up

WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC)
# Links the walk does not follow: they end the session or spend something on a GET.
NOT_FOLLOWED = {"staff.logout"}
LINK = re.compile(r'<a\b[^>]*\bhref="(/(?:admin|staff)[^"#?]*)', re.I)
FORM = re.compile(r"<form\b[^>]*>", re.I)


def _target(app, path: str, method: str) -> str | None:
    """The endpoint `path` reaches by `method`, or None when no route answers it."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method=method)
    except (NotFound, MethodNotAllowed):
        return None
    return endpoint


def _offered(body: str) -> list[tuple[str, str]]:
    """(method, path) of each link and each form on a page, to the staff side."""
    found = [("GET", unescape(path)) for path in LINK.findall(body)]
    for tag in FORM.findall(body):
        action = re.search(r'\baction="([^"#?]*)', tag)
        method = re.search(r'\bmethod="(\w+)"', tag)
        if action and action.group(1).startswith(("/admin", "/staff")):
            verb = method.group(1).upper() if method else "GET"
            found.append((verb, unescape(action.group(1))))
    return found


def _may(app, role: str, endpoint: str) -> bool:
    view = app.view_functions[endpoint]
    if access_of(view) != STAFF:
        return True
    roles = set(view.roles)
    return role in roles or role == "admin"


@pytest.fixture
def demo(app, clock):
    clock.move_to(WHEN)
    load_demo(actor="test")
    db.session.commit()


@pytest.mark.parametrize("role", [r for r in STAFF_ROLES if r != "admin"])
def test_a_member_is_offered_only_the_links_and_buttons_their_role_may_use(app, demo, clock, role):
    client = app.test_client()
    set_up(app, client, f"{role}@example.com", role, clock)
    seen: set[str] = set()
    queue = deque(["/staff/cases", "/admin/approvals", "/staff/sessions"])
    offending: set[str] = set()
    while queue and len(seen) < 60:
        path = queue.popleft()
        if path in seen:
            continue
        seen.add(path)
        page = client.get(path)
        if page.status_code != 200 or "text/html" not in page.content_type:
            continue
        for method, target in _offered(page.get_data(as_text=True)):
            endpoint = _target(app, target, method)
            if endpoint is None or endpoint in NOT_FOLLOWED:
                continue
            if not _may(app, role, endpoint):
                offending.add(f"{path} offers {method} {target} ({endpoint})")
            elif method == "GET" and target not in seen:
                queue.append(target)
    assert len(seen) >= 7, seen  # the walk got past the front pages (legal reaches 13 today)
    assert not offending, "\n".join(sorted(offending))
