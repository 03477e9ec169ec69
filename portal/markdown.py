"""Markdown written by the response team, rendered to HTML that cannot run anything."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

# Raw HTML in the source is not passed through at all; what Markdown makes is then cleaned by
# an allow-list: no script, no event handler, no style, no image (nothing loads from elsewhere),
# and links only to https, mailto and tel.
_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False})
_TAGS = {"p", "br", "strong", "em", "ul", "ol", "li", "a", "blockquote", "code", "h3", "h4"}


# The same few texts (an incident's sections, its updates) are shown on every dashboard and
# public page: each is parsed and cleaned once a process, not once a request. The key is the
# text itself, so an edited text is a new entry; the bound keeps memory flat.
@lru_cache(maxsize=512)
def _cleaned(text: str) -> Markup:
    html = _PARSER.render(text)
    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )
    # Sanitised by nh3 with the allow-list just above: the one place HTML is marked safe.
    return Markup(cleaned)  # noqa: S704  # nosec B704: nh3-cleaned with an allow-list


def render(source) -> Markup:
    """Safe HTML for a Markdown text (the only place the portal marks HTML as safe).

    A portal.i18n.Localized text standing in for another language keeps its own `lang`.
    """
    safe = _cleaned(str(source or ""))
    lang_attr = getattr(source, "attr", Markup())
    if lang_attr and safe:
        return Markup("<div{}>{}</div>").format(lang_attr, safe)
    return safe
