"""The guidance library: protective steps per data class, read from reviewed files per language."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app

from portal import regions as regions_
from portal.models import DATA_CLASSES

FOLDER = Path(__file__).resolve().parent.parent / "guidance"
URGENCIES = ("today", "week", "ongoing")  # the order a plan follows
CHANGE_PASSWORD = "change-password"  # noqa: S105 (a step id, not a secret)


class GuidanceError(Exception):
    """A guidance file is wrong; the app refuses to start rather than show bad advice."""


@dataclass(frozen=True)
class Step:
    id: str
    applies_to: frozenset[str]
    urgency: str
    minutes: int
    title: str
    why: str
    how: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    portal_action: str | None
    position: int  # its place in the file: the last tie-breaker of a plan's order
    source: str = ""  # where the advice comes from, for the reviewer
    # Where the step applies: empty everywhere; else readers in one of these regions (a country,
    # a subdivision or a group such as "EU"). A US credit-bureau step means nothing in Germany.
    regions: tuple[str, ...] = ()
    # Readers in these regions do not get the step (a generic step where a specific one exists).
    outside: tuple[str, ...] = ()
    leads: bool = False  # leads the plan whenever it applies (medical identity theft)

    def weight(self, keys: set[str]) -> int:
        """How sensitive the most sensitive of these exposed keys calling for the step is."""
        return max(DATA_CLASSES[k].sensitivity for k in self.applies_to & keys)

    def applies_in(self, region: str) -> bool:
        """Whether a reader living in `region` ("" unknown: the home country) gets the step."""
        if self.regions and not any(regions_.matches(region, r) for r in self.regions):
            return False
        return not any(regions_.matches(region, r) for r in self.outside)


def _step(raw: dict, position: int, where: str) -> Step:
    try:
        step = Step(
            id=raw["id"],
            applies_to=frozenset(raw["applies_to"]),
            urgency=raw["urgency"],
            minutes=int(raw["minutes"]),
            title=raw["title"],
            why=raw["why"],
            how=tuple(raw["how"]),
            links=tuple((link["label"], link["url"]) for link in raw.get("links", [])),
            portal_action=raw.get("portal_action"),
            position=position,
            source=raw["source"].strip(),
            regions=tuple(regions_.normalize(r) for r in raw.get("regions", [])),
            outside=tuple(regions_.normalize(r) for r in raw.get("outside", [])),
            leads=bool(raw.get("leads", False)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise GuidanceError(f"{where}: step {position + 1} is incomplete ({exc})") from exc
    if not step.source:
        raise GuidanceError(f"{where}: step {step.id} has no source")
    for region in step.regions + step.outside:
        if region not in regions_.GROUPS and not regions_.is_valid(region):
            raise GuidanceError(f"{where}: step {step.id} names an unknown region {region!r}")
    unknown = sorted(step.applies_to - DATA_CLASSES.keys())
    if unknown:
        raise GuidanceError(f"{where}: step {step.id} names unknown data classes {unknown}")
    if not step.applies_to:
        raise GuidanceError(f"{where}: step {step.id} applies to nothing")
    if step.urgency not in URGENCIES:
        raise GuidanceError(f"{where}: step {step.id} has urgency {step.urgency!r}")
    for _label, url in step.links:
        if urlsplit(url).scheme != "https":  # official places only, and never a script URL
            raise GuidanceError(f"{where}: step {step.id} links to {url!r}, not https")
    return step


def load_library(folder: Path = FOLDER, languages=("en", "es")) -> dict[str, list[Step]]:
    """Read and check every language's steps; raise GuidanceError on any problem."""
    library: dict[str, list[Step]] = {}
    for language in languages:
        path = folder / f"{language}.toml"
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise GuidanceError(f"{path.name}: {exc}") from exc
        steps = [_step(item, i, path.name) for i, item in enumerate(raw.get("steps", []))]
        ids = [s.id for s in steps]
        if len(set(ids)) != len(ids):
            raise GuidanceError(f"{path.name}: a step id is used twice")
        uncovered = sorted(DATA_CLASSES.keys() - set().union(*(s.applies_to for s in steps)))
        if uncovered:
            raise GuidanceError(f"{path.name}: no step for {uncovered}")
        library[language] = steps
    reference = {s.id: _shape(s) for s in library[languages[0]]}
    for language, steps in library.items():
        shape = {s.id: _shape(s) for s in steps}
        if shape != reference:
            raise GuidanceError(
                f"{language}.toml does not have the same steps as "
                f"{languages[0]}.toml (ids, data classes, urgency or regions differ)"
            )
    return library


def _shape(step: Step) -> tuple:
    """What every language must agree on: who gets the step, when, and in what order."""
    return (
        step.applies_to,
        step.urgency,
        step.portal_action,
        step.regions,
        step.outside,
        step.leads,
    )


def init_app(app) -> None:
    app.extensions["guidance"] = load_library(FOLDER, languages=app.config["LANGUAGES"])


def steps_for(keys: set[str], language: str, region: str = "") -> list[Step]:
    """The steps for these exposed keys where the reader lives, once each: a leading step first,
    then the most urgent, then the most sensitive."""
    library = current_app.extensions["guidance"]
    steps = library.get(language) or library["en"]
    chosen = [s for s in steps if s.applies_to & keys and s.applies_in(region)]
    return sorted(
        chosen,
        key=lambda s: (not s.leads, URGENCIES.index(s.urgency), -s.weight(keys), s.position),
    )


def region_key(region: str, language: str = "en") -> tuple[str, ...]:
    """The region-limited steps a reader living in `region` gets: readers with the same key get
    the same steps for the same data, so a message can be rendered once per key."""
    library = current_app.extensions["guidance"]
    steps = library.get(language) or library["en"]
    return tuple(s.id for s in steps if (s.regions or s.outside) and s.applies_in(region))


def step_titles(keys: set[str], language: str, limit: int = 3, region: str = "") -> list[str]:
    """The first few steps' titles, for a message to a reader living in `region`."""
    return [s.title for s in steps_for(keys, language, region)[:limit]]
