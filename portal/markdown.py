"""Markdown written by the response team, rendered to HTML that cannot run anything."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

# Raw HTML in the source is not passed through at all; what Markdown makes is then cleaned by
# an allow-list: no script, no event handler, no style, no image (nothing loads from elsewhere),
# and links only to https, mailto and tel.
_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False})
_TAGS = {"p", "br", "strong", "em", "ul", "ol", "li", "a", "blockquote", "code", "h3", "h4"}


def render(source) -> Markup:
    """Safe HTML for a Markdown text (the only place the portal marks HTML as safe).

    A portal.i18n.Localized text standing in for another language keeps its own `lang`.
    """
    html = _PARSER.render(str(source or ""))
    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        attributes={"a": {"href"}},
        url_schemes={"https", "mailto", "tel"},
        link_rel="noopener noreferrer",
    )
    # Sanitised by nh3 with the allow-list just above: the one place HTML is marked safe.
    safe = Markup(cleaned)  # noqa: S704  # nosec B704: nh3-cleaned with an allow-list
    lang_attr = getattr(source, "attr", Markup())
    if lang_attr and safe:
        return Markup("<div{}>{}</div>").format(lang_attr, safe)
    return safe
