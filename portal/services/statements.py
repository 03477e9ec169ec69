"""Statements by place of residence: the inserts a reader's notice must carry where they live.

Read from reviewed files per language (portal/statements/*.toml), checked when the app starts and
kept for its life. Everything here is a pure function of those files: no database, no request.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from string import Formatter

from flask import current_app
from flask_babel import gettext as _

from portal import regions
from portal.i18n import localized
from portal.models import DATA_CLASSES

FOLDER = Path(__file__).resolve().parent.parent / "statements"

# Notice sections an insert may ask to leave out. Massachusetts bars the consumer notice from
# describing the nature of the breach (M.G.L. c. 93H, s. 3(b)), so its insert omits "What happened".
OMITTABLE = frozenset({"what_happened"})

# What a body may name in {braces}; the caller fills them from the organisation and the incident
# (values_for), except likely_consequences, which comes from this library for the reader's data.
PLACEHOLDERS = frozenset(
    {
        "organisation",  # the organisation's name
        "contact",  # how to reach the organisation: phone with hours, email
        "what_happened",  # the incident's "What happened" text
        "what_we_are_doing",  # the incident's "What we are doing" text
        "affected_count",  # how many people the incident touched, written out
        "likely_consequences",  # from this library's [[consequences]] for the reader's data
    }
)


class StatementsError(Exception):
    """A statements file is wrong; the app refuses to start rather than send a wrong notice."""


@dataclass(frozen=True)
class Statement:
    id: str
    title: str
    paragraphs: tuple[str, ...]
    source: str

    @property
    def placeholders(self) -> frozenset[str]:
        """The {names} its paragraphs need filled."""
        return frozenset(_names(" ".join(self.paragraphs)))

    def filled(self, values: dict[str, str]) -> Statement:
        """The same statement with its {placeholders} replaced (KeyError names a missing one)."""
        return replace(self, paragraphs=tuple(p.format_map(values) for p in self.paragraphs))


@dataclass(frozen=True)
class Insert:
    statement: Statement
    regions: tuple[str, ...]
    needs: frozenset[str]  # empty: whatever was exposed; else any one of these classes
    omit: frozenset[str]
    position: int
    # Where the insert is given whatever was exposed, `needs` notwithstanding (states whose
    # statute asks for the credit bureaus' contacts in every notice, not only for an SSN).
    always_in: tuple[str, ...] = ()

    def applies(self, region: str, classes: set[str]) -> bool:
        """Whether a reader living in `region` whose `classes` were exposed gets this insert."""
        if not any(regions.matches(region, wanted) for wanted in self.regions):
            return False
        if not self.needs or self.needs & classes:
            return True
        return any(regions.matches(region, wanted) for wanted in self.always_in)


@dataclass(frozen=True)
class Consequence:
    classes: frozenset[str]
    text: str


@dataclass(frozen=True)
class Library:
    as_of: date
    inserts: tuple[Insert, ...]
    consequences: tuple[Consequence, ...]


@dataclass(frozen=True)
class Inserts:
    """What a reader's notice adds and leaves out, in the order the library gives."""

    statements: list[Statement]
    omit: frozenset[str]
    likely_consequences: str
    as_of: date

    @property
    def key(self) -> tuple[str, ...]:
        """Which inserts these are: readers with the same key get the same text, so a notice
        can be rendered once per key rather than once per state."""
        return tuple(s.id for s in self.statements)

    @property
    def placeholders(self) -> frozenset[str]:
        """Every {name} the statements need, for the caller to supply to filled()."""
        return frozenset().union(*(s.placeholders for s in self.statements))

    def filled(self, values: dict[str, str]) -> list[Statement]:
        """The statements with their placeholders filled; likely_consequences is given here."""
        values = {"likely_consequences": self.likely_consequences, **values}
        return [s.filled(values) for s in self.statements]


def _names(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in Formatter().parse(text) if name is not None}


def _paragraphs(body: str) -> tuple[str, ...]:
    """Plain paragraphs separated by a blank line; a line break inside one is a space."""
    blocks = (" ".join(line.strip() for line in block.splitlines()) for block in body.split("\n\n"))
    return tuple(block.strip() for block in blocks if block.strip())


def _insert(raw: dict, position: int, where: str) -> Insert:
    try:
        statement = Statement(
            id=raw["id"],
            title=raw["title"].strip(),
            paragraphs=_paragraphs(raw["body"]),
            source=raw["source"].strip(),
        )
        found = Insert(
            statement=statement,
            regions=tuple(regions.normalize(r) for r in raw["regions"]),
            needs=frozenset(raw.get("needs", [])),
            omit=frozenset(raw.get("omit", [])),
            position=position,
            always_in=tuple(regions.normalize(r) for r in raw.get("always_in", [])),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise StatementsError(f"{where}: insert {position + 1} is incomplete ({exc})") from exc
    name = statement.id
    if not (statement.title and statement.paragraphs and statement.source):
        raise StatementsError(f"{where}: insert {name} needs a title, a body and a source")
    if not found.regions:
        raise StatementsError(f"{where}: insert {name} applies nowhere")
    for region in found.regions + found.always_in:
        if region not in regions.GROUPS and not regions.is_valid(region):
            raise StatementsError(f"{where}: insert {name} names an unknown region {region!r}")
    unknown = sorted(found.needs - DATA_CLASSES.keys())
    if unknown:
        raise StatementsError(f"{where}: insert {name} needs unknown data classes {unknown}")
    if found.omit - OMITTABLE:
        raise StatementsError(
            f"{where}: insert {name} omits {sorted(found.omit - OMITTABLE)}; "
            f"only {sorted(OMITTABLE)} can be left out"
        )
    try:
        names = _names(raw["body"])
    except ValueError as exc:  # an unbalanced brace
        raise StatementsError(f"{where}: insert {name} has a broken placeholder ({exc})") from exc
    if names - PLACEHOLDERS:
        raise StatementsError(
            f"{where}: insert {name} uses unknown placeholders {sorted(names - PLACEHOLDERS)}"
        )
    return found


def _consequence(raw: dict, where: str) -> Consequence:
    try:
        found = Consequence(frozenset(raw["classes"]), raw["text"].strip())
    except (KeyError, TypeError, AttributeError) as exc:
        raise StatementsError(f"{where}: a consequence is incomplete ({exc})") from exc
    if found.classes - DATA_CLASSES.keys() or not found.text:
        raise StatementsError(f"{where}: a consequence names unknown classes or says nothing")
    return found


def _read(path: Path) -> Library:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StatementsError(f"{path.name}: {exc}") from exc
    as_of = raw.get("as_of")
    if not isinstance(as_of, date):
        raise StatementsError(f"{path.name}: as_of must be a date (as_of = 2026-11-01)")
    inserts = tuple(_insert(item, i, path.name) for i, item in enumerate(raw.get("inserts", [])))
    ids = [i.statement.id for i in inserts]
    if len(set(ids)) != len(ids):
        raise StatementsError(f"{path.name}: an insert id is used twice")
    consequences = tuple(_consequence(c, path.name) for c in raw.get("consequences", []))
    uncovered = sorted(DATA_CLASSES.keys() - set().union(*(c.classes for c in consequences)))
    if uncovered:
        raise StatementsError(f"{path.name}: no likely consequence for {uncovered}")
    return Library(as_of, inserts, consequences)


def _shape(library: Library) -> tuple:
    """What must be the same in every language: which insert goes to whom, and what it needs."""
    return (
        library.as_of,
        [
            (i.statement.id, i.regions, i.needs, i.always_in, i.omit, i.statement.placeholders)
            for i in library.inserts
        ],
        [c.classes for c in library.consequences],
    )


def load_library(folder: Path = FOLDER, languages=("en", "es")) -> dict[str, Library]:
    """Read and check every language's inserts; raise StatementsError on any problem."""
    libraries = {language: _read(folder / f"{language}.toml") for language in languages}
    reference = _shape(libraries[languages[0]])
    for language, library in libraries.items():
        if _shape(library) != reference:
            raise StatementsError(
                f"{language}.toml does not match {languages[0]}.toml (as_of, ids, regions, "
                "needs, omit, placeholders or consequences differ)"
            )
    return libraries


def init_app(app) -> None:
    app.extensions["statements"] = load_library(FOLDER, languages=app.config["LANGUAGES"])


def _library(locale: str) -> Library:
    libraries = current_app.extensions["statements"]
    return libraries.get((locale or "en")[:2].lower()) or libraries["en"]


def for_reader(region: str, locale: str, classes: set[str]) -> Inserts:
    """The inserts for a reader living in `region` (ISO 3166-2 or country; "" unknown) whose
    `classes` were exposed, in `locale` (English where the language has no file)."""
    library = _library(locale)
    classes = set(classes)
    chosen = [i for i in library.inserts if i.applies(region, classes)]
    consequences = [c.text for c in library.consequences if c.classes & classes]
    return Inserts(
        statements=[i.statement for i in chosen],
        omit=frozenset().union(*(i.omit for i in chosen)),
        likely_consequences=" ".join(consequences),
        as_of=library.as_of,
    )


def statement(statement_id: str, locale: str) -> Statement:
    """One insert by id, whoever reads it (e.g. the credit bureaus' block for a letter)."""
    for insert in _library(locale).inserts:
        if insert.statement.id == statement_id:
            return insert.statement
    raise KeyError(statement_id)


def credit_bureaus(locale: str) -> Statement:
    """The three US credit bureaus' toll-free numbers and addresses."""
    return statement("us-credit-bureaus", locale)


def ftc(locale: str) -> Statement:
    """The FTC's contact and IdentityTheft.gov."""
    return statement("us-ftc", locale)


def contact_for(incident, language: str) -> str:
    """How to reach the organisation about this incident, in words, for {contact}: the phone
    with its hours, the email, or both (in the current locale: call inside force_locale)."""
    hours = localized(incident, "contact_hours", language).text
    phone = incident.contact_phone or ""
    if phone and hours:
        phone = _("by phone at %(phone)s (%(hours)s)", phone=phone, hours=hours)
    elif phone:
        phone = _("by phone at %(phone)s", phone=phone)
    email = (
        _("by email at %(email)s", email=incident.contact_email) if incident.contact_email else ""
    )
    if phone and email:
        return _("%(phone)s, or %(email)s", phone=phone, email=email)
    return phone or email or _("through this portal")


def values_for(incident, organisation: str, contact: str, affected_count: str = "") -> dict:
    """The placeholder values from an incident's own fields; the caller words `contact`
    (contact_for) and, for Rhode Island, the number affected (Inserts.placeholders says when)."""
    return {
        "organisation": organisation,
        "contact": contact,
        "what_happened": incident.what_happened or "",
        "what_we_are_doing": incident.what_we_are_doing or "",
        "affected_count": affected_count,
    }
