"""What each role sees, it may use: a staff member is never offered a link or a button that
answers "403 Forbidden". The walk signs in one member per role on the demo incident, follows
every link on the staff side that the role may open, and checks each link and form it is shown.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from portal.extensions import db
from portal.models.staff import STAFF_ROLES
from portal.services.demo import load_demo
from portal.web.access import STAFF, access_of
from tests.staff_flow import set_up
from tests.test_fuzz import _Forms, _match

WHEN = datetime(2026, 11, 20, 12, tzinfo=UTC)
# Links the walk does not follow: they end the session or spend something on a GET.
NOT_FOLLOWED = {"staff.logout"}
STAFF_SIDE = ("/admin", "/staff")


def _target(app, path: str, method: str) -> str | None:
    """The endpoint `path` reaches by `method`, or None when no route answers it."""
    found = _match(app.url_map.bind("localhost"), path, method)
    return found[0] if found else None


def _offered(body: str) -> list[tuple[str, str]]:
    """(method, path) of each link and each form on a page, to the staff side (read by the
    fuzz test's parser of links and forms)."""
    page = _Forms()
    page.feed(body)
    found = [("GET", urlsplit(href).path) for href in page.links]
    found += [(method, urlsplit(action).path) for method, action, _fields, _ in page.forms]
    return [(method, path) for method, path in found if path.startswith(STAFF_SIDE)]


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
