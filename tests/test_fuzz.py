"""Every route, fuzzed: generated values in its path, query and form, sent by the kind of person
the route is for, with a valid session and CSRF token. No answer is a 5xx, and a refused
request (4xx) changes no row (issue 12, finding 6; checklist VAL-03).

What a browser would send is the starting point: each persona's pages are crawled once and
every form found (its action, fields and values) becomes a baseline; an example then replaces,
repeats, adds or drops fields with hostile values. Routes that no page of the persona reaches
still get generated paths and fields.

At least 200 examples per route: the default, so `make test` and CI run that many. A developer
may ask for fewer while working, e.g. PORTAL_FUZZ_EXAMPLES=20.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from portal import create_app
from portal.extensions import db
from portal.models import Case, Customer, IncidentUpdate, OutboxMessage
from portal.models.base import Base
from portal.services import background, cases, updates
from portal.services.imports import import_customers
from portal.services.incidents import create_incident
from portal.services.notices import queue_notices
from portal.services.staff import invite
from portal.web.access import CUSTOMER, PUBLIC, STAFF, STAFF_PENDING, access_of
from tests.conftest import INCIDENT, BrowserClient, base_env, customer_row
from tests.customer_flow import csrf_from, link_path, sign_in, start_from_link
from tests.staff_flow import PASSWORD, log_in, reauth, set_up

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "200"))
CUSTOMER_EMAIL = "c@example.com"


def _rules():
    """(method, rule) for every route of the app, as the URL map lists them."""
    app = create_app(base_env("sqlite://"))
    found = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append(pytest.param(method, rule.rule, id=f"{method} {rule.rule}"))
    return found


# --- what is sent ---

CONTROLS = st.sampled_from([chr(c) for c in range(32)] + ["\x7f"])
# Text without control characters too, or the edge's 400 would answer nearly every example and
# the views behind it would rarely see a hostile value.
PRINTABLE = st.text(st.characters(exclude_categories=["Cc", "Cs"]), max_size=30)
HOSTILE = st.one_of(
    PRINTABLE,
    st.text(max_size=30),  # any code point, controls and NUL included
    st.builds(lambda a, c, b: a + c + b, PRINTABLE, CONTROLS, PRINTABLE),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.dates().map(str),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "2147483647",
            "2147483648",
            "9223372036854775808",
            "9" * 30,
            "9" * 5000,
            "1e309",
            "NaN",
            "true",
            "[]",
            "{}",
            "9999-12-31",
            "0001-01-01",
            "2026-02-30",
            "x" * 6000,
            "%00",
            "../../etc/passwd",
            "'; DROP TABLE incident; --",
            "<script>alert(1)</script>",
            "１２３４５６",
            "a@example.com",
            "+14155550123",
            "https://evil.test/",
        ]
    ),
)
# Field names the portal reads: every form's fields and the names views read directly.
_READ = re.compile(r"""(?:args|form|values)\.get\(\s*["']([a-z_]+)["']""")


def _names_read() -> list[str]:
    from wtforms.form import FormMeta

    import portal

    names = set()
    for path in (portal.ROOT / "portal" / "web").rglob("*.py"):
        names.update(_READ.findall(path.read_text()))
    import portal.web.admin.forms
    import portal.web.customer.forms
    import portal.web.staff.forms

    for module in (portal.web.admin.forms, portal.web.customer.forms, portal.web.staff.forms):
        for value in vars(module).values():
            if isinstance(value, FormMeta) and hasattr(value, "_unbound_fields"):
                names.update(n for n, _f in (value._unbound_fields or []))
            if isinstance(value, FormMeta):
                names.update(k for k, v in vars(value).items() if hasattr(v, "field_class"))
    return sorted(names - {"csrf_token"})


NAMES = _names_read()


# --- what a browser would send: the forms on the persona's pages ---


class _Forms(HTMLParser):
    """Forms (method, action, fields) and links on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.links: list[str] = []
        self._form = None
        self._textarea = None
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href", "").startswith("/"):
            self.links.append(a["href"])
        elif tag == "form":
            self._form = [(a.get("method") or "get").upper(), a.get("action") or "", [], set()]
            self.forms.append(self._form)
        elif self._form is None or not a.get("name"):
            return
        elif tag == "input":
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if a["name"] not in self._form[3]:  # one value of a group
                    self._form[3].add(a["name"])
                    self._form[2].append((a["name"], a.get("value") or "y"))
            elif kind != "submit":
                self._form[2].append((a["name"], a.get("value") or _filler(kind, a["name"])))
        elif tag == "button" and a.get("name") and a["name"] not in self._form[3]:
            self._form[3].add(a["name"])
            self._form[2].append((a["name"], a.get("value", "")))
        elif tag == "textarea":
            self._textarea = a["name"]
            self._form[2].append((a["name"], "Some words for the record."))
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select not in (None, *self._form[3]) and a.get("value"):
            self._form[3].add(self._select)
            self._form[2].append((self._select, a["value"]))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def _filler(kind: str, name: str) -> str:
    """A plausible value for an empty field, as a person would type it."""
    return {
        "email": "person@example.com",
        "date": "2026-10-09",
        "number": "1",
        "tel": "+14155550123",
        "password": PASSWORD,
    }.get(kind) or ("123456" if name == "code" else "Some words")


def crawl(client, adapter, start: list[str], limit: int = 40):
    """Visit pages from start (links one level deep, and further within limit); return the
    forms found per (endpoint, method): (path, query or form fields), and path values seen."""
    seen, queue = set(), list(start)
    forms: dict[tuple[str, str], list[tuple[str, list]]] = {}
    values: dict[str, set[str]] = {}
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        if response.status_code != 200 or "html" not in response.content_type:
            continue
        page = _Forms()
        page.feed(response.get_data(as_text=True))
        for href in page.links:
            target = _match(adapter, href, "GET")
            if target is not None:
                for name, value in target[1].items():
                    values.setdefault(name, set()).add(str(value))
                queue.append(urlsplit(href).path)
        for method, action, fields, _groups in page.forms:
            target_path = urlsplit(action).path or urlsplit(path).path
            target = _match(adapter, target_path, method)
            if target is not None:
                forms.setdefault((target[0], method), []).append((target_path, fields))
                for name, value in target[1].items():
                    values.setdefault(name, set()).add(str(value))
    return forms, values


def _match(adapter, path: str, method: str):
    try:
        return adapter.match(urlsplit(path).path, method=method)
    except (HTTPException, RequestRedirect):
        return None


# --- who sends it ---


class Persona:
    """A client signed in as the kind of person a route is for, kept signed in between examples."""

    def __init__(self, app, clock, level: str, roles: tuple[str, ...]) -> None:
        self.app, self.clock, self.level = app, clock, level
        # The route's own kind of person: an agent for the desk, an admin for the console, and
        # for a route of another role (legal's approvals, communications' updates) that role.
        self.role = next(
            (r for r in ("agent", "admin") if r in roles), roles[0] if roles else "admin"
        )
        self.email = f"{self.role}@example.com" if level == STAFF else "pending@example.com"
        self.client = app.test_client()
        if level == STAFF:
            set_up(app, self.client, self.email, self.role, clock)
        elif level == STAFF_PENDING:
            set_up(app, app.test_client(), self.email, "agent", clock)
        self.sign_in(first=True)

    def sign_in(self, first: bool = False) -> None:
        """Sign in again (after a logout the fuzz sent, say); best effort: a lock is an answer."""
        try:
            if self.level == CUSTOMER:
                sign_in(self.client, CUSTOMER_EMAIL)
            elif self.level == STAFF:
                if not first:  # set_up has just signed in
                    log_in(self.client, self.email, self.clock)
                # A fresh proof, so that routes asking for one reach their view.
                reauth(self.client, self.email, self.clock, "/staff/cases")
            elif self.level == PUBLIC:
                # Someone on their way in: a code is waiting for them (the code pages act on it).
                start_from_link(self.client, link_path(CUSTOMER_EMAIL))
            elif self.level == STAFF_PENDING:
                page = self.client.get("/staff/login")
                self.client.post(
                    "/staff/login",
                    data={"csrf_token": csrf_from(page), "email": self.email, "password": PASSWORD},
                )
        except AssertionError:
            pass
        home = {CUSTOMER: "/me", STAFF: "/staff/cases", STAFF_PENDING: "/staff/code"}
        page = self.client.get(home.get(self.level, "/"))
        if page.status_code != 200:
            page = self.client.get("/")
        self.token = csrf_from(page)

    def signed_out(self, response) -> bool:
        location = response.headers.get("Location", "")
        return response.status_code in (302, 303) and location.startswith(
            ("/signed-out", "/staff/login", "/staff/code", "/staff/reauth")
        )


def build_world(app) -> dict[str, set[str]]:
    """An incident, a notified customer with a case, a drafted update, a job, another agent;
    return the values that name them in URLs (by the URL argument's name)."""
    item = create_incident(**INCIDENT, actor="test")
    path = os.path.join(app.instance_path, "customers.csv")
    with open(path, "w", encoding="utf-8") as handle:
        row = customer_row(1, email=CUSTOMER_EMAIL, phone="")
        handle.write(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    import_customers(item, path, actor="test")
    queue_notices(item, actor="test")
    person = db.session.scalars(select(Customer)).one()
    cases.open_case(person, "my_data", "Which of my data was taken?")
    updates.draft(item, "Progress", "We are working on it.", actor="test")
    job = background.submit(
        "send_notices", {"incident_id": item.id, "actor": "test", "total": 0}, actor="test"
    )
    setup_link = invite("colleague@example.com", "agent", actor="test")
    db.session.commit()
    case = db.session.scalars(select(Case)).one()
    return {
        "slug": {item.slug},
        "public_id": {case.public_id, person.public_id, job.public_id},
        "token": {
            link_path(CUSTOMER_EMAIL).rsplit("/", 1)[1],
            setup_link.rsplit("/", 1)[1],
        },
        "update_id": {str(u.id) for u in db.session.scalars(select(IncidentUpdate))},
        "message_id": {str(m.id) for m in db.session.scalars(select(OutboxMessage))},
    }


# A well-formed attempt that is wrong (a code that does not match, a case that is not yours, an
# expired link) is answered 4xx and recorded on purpose: an audit event, and the alert a
# failed second factor sends its owner. Anything else refused (400 bad input or CSRF, 404, 405,
# 413) must leave every table as it was.
RECORDED_ATTEMPTS = {403, 409, 410, 422, 429}
ATTEMPT_RECORDS = {"audit_event", "outbox_message"}


def _count_query():
    tables = Base.metadata.sorted_tables
    return select(
        *[select(func.count()).select_from(t).scalar_subquery().label(t.name) for t in tables]
    )


def row_counts(engine, query) -> dict:
    """Rows in every table the models declare, read on a connection of its own."""
    with engine.connect() as connection:
        return dict(connection.execute(query).one()._mapping)


def _path(rule: str, values: dict[str, str]) -> str:
    def fill(match):
        converter, name = match[1], match[2]
        return quote(values[name], safe="/" if converter == "path" else "")

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", fill, rule)


@pytest.fixture
def fuzz_app(env):
    # Rate limits off: after a few examples every answer would be a 429, hiding how the view
    # handles input. The limits have their own tests (tests/test_rate_limits.py).
    app = create_app(env, RATELIMIT_ENABLED=False)
    app.test_client_class = BrowserClient
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(("method", "rule_text"), _rules())
def test_no_route_answers_5xx_or_writes_on_a_refusal(fuzz_app, clock, method, rule_text):
    app = fuzz_app
    rule = next(r for r in app.url_map.iter_rules() if r.rule == rule_text)
    view = app.view_functions[rule.endpoint]
    level = access_of(view) or PUBLIC
    world = build_world(app)
    persona = Persona(app, clock, level, getattr(view, "roles", ()))
    adapter = app.url_map.bind("localhost")
    start = [
        r.rule
        for r in app.url_map.iter_rules()
        if "GET" in r.methods
        and not r.arguments
        and r.endpoint != "static"
        and (access_of(app.view_functions[r.endpoint]) or PUBLIC) in (level, PUBLIC)
    ]
    forms, known = crawl(persona.client, adapter, start)
    for name, values in world.items():
        known.setdefault(name, set()).update(values)
    baselines = forms.get((rule.endpoint, method), [])
    engine = db.engine
    counting = _count_query()
    counts = [row_counts(engine, counting)]  # as the last example left them

    # A strategy per path argument: a value a page links to, or a hostile one.
    def argument(name):
        seen = sorted(known.get(name, ()))
        return st.one_of(st.sampled_from(seen), HOSTILE) if seen else HOSTILE

    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # a request's time varies with the machine; timing lives in bench/
        # Generate only: shrinking a failure re-sends hundreds of requests; the first failing
        # example is printed as found. No example database: nothing written in the repository.
        phases=[Phase.explicit, Phase.generate],
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def send(data):
        if baselines and data.draw(st.booleans(), label="from a page's form"):
            path, fields = data.draw(st.sampled_from(baselines), label="baseline")
            fields = list(fields)
        else:
            path = _path(rule.rule, {a: data.draw(argument(a), label=a) for a in rule.arguments})
            fields = []
        fields = [(k, v) for k, v in fields if k != "csrf_token"]
        # Replace some values, drop some fields, repeat one, add names the portal reads.
        fields = [
            (
                k,
                data.draw(HOSTILE, label=k)
                if data.draw(st.integers(0, 2), label=f"fuzz {k}") == 0
                else v,
            )
            for k, v in fields
            if data.draw(st.integers(0, 9), label=f"keep {k}")  # drop about one in ten
        ]
        if fields and data.draw(st.integers(0, 4), label="repeat") == 0:
            fields.append((fields[0][0], data.draw(HOSTILE, label="again")))
        extra = data.draw(
            st.lists(
                st.tuples(st.sampled_from(NAMES) | PRINTABLE | st.text(max_size=8), HOSTILE),
                max_size=3,
            ),
            label="extra",
        )
        fields.extend(extra)
        before = counts[0]
        if method == "GET":
            response = persona.client.get(path, query_string=MultiDict(fields))
        else:
            fields.insert(0, ("csrf_token", persona.token))
            response = persona.client.open(path, method=method, data=MultiDict(fields))
        assert response.status_code < 500, (method, path, fields)
        after = counts[0] = row_counts(engine, counting)  # the next example's "before"
        if 400 <= response.status_code < 500:
            changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
            allowed = ATTEMPT_RECORDS if response.status_code in RECORDED_ATTEMPTS else set()
            assert set(changed) <= allowed, (response.status_code, method, path, fields, changed)
        if persona.signed_out(response):
            persona.sign_in()
            counts[0] = row_counts(engine, counting)

    send()
