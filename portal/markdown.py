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


@lru_cache(maxsize=512)
def _plain(text: str) -> str:
    # Each finished block with whether it is an item's line of a tight list (one item a line)
    # and the outermost list it belongs to.
    out: list[tuple[str, bool, int | None]] = []
    lists: list[int] = []  # serial numbers of the lists we are in, outermost first
    serial = 0
    prefixes: list[str] = []  # list and quote markers of the blocks we are in
    numbers: list[int | None] = []  # per open list: the next number, None for bullets
    pending_marker = ""
    tight = False  # the paragraph being read is hidden: a tight list's item
    for token in _PARSER.parse(text):
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            ordered = kind == "ordered_list_open"
            numbers.append(int(token.attrGet("start") or 1) if ordered else None)
            serial += 1
            lists.append(serial)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            numbers.pop()
            lists.pop()
        elif kind == "list_item_open":
            if numbers[-1] is None:
                pending_marker = "* "
            else:
                pending_marker = f"{numbers[-1]}. "
                numbers[-1] += 1
            prefixes.append("  " + " " * len(pending_marker))
        elif kind == "list_item_close":
            prefixes.pop()
        elif kind == "blockquote_open":
            prefixes.append("> ")
        elif kind == "blockquote_close":
            prefixes.pop()
        elif kind == "paragraph_open":
            tight = token.hidden
        elif kind == "inline":
            lines = _inline_plain(token.children or []).split("\n")
            indent = "".join(prefixes)
            if pending_marker:
                first = indent[: -len(pending_marker)] + pending_marker
                pending_marker = ""
            else:
                first = indent
            block = "\n".join((first if n == 0 else indent) + line for n, line in enumerate(lines))
            out.append((block, tight and bool(lists), lists[0] if lists else None))
            tight = False
        elif kind in ("fence", "code_block"):
            indent = "".join(prefixes) + "    "
            lines = token.content.rstrip("\n").split("\n")
            out.append(("\n".join(indent + line for line in lines), False, None))
    # The items of a tight list (and of lists inside it) sit on consecutive lines; other blocks
    # have a blank line between them.
    text_out = ""
    for n, (block, in_tight_list, root) in enumerate(out):
        if n:
            _before, before_tight, before_root = out[n - 1]
            together = in_tight_list and before_tight and root == before_root
            text_out += "\n" if together else "\n\n"
        text_out += block
    return text_out


# The HTML part keeps links to these only (nh3's allow-list in _cleaned): the text part writes
# out the same addresses and no others.
_SHOWN_SCHEMES = ("https:", "mailto:", "tel:")


def _inline_plain(children) -> str:
    parts: list[str] = []
    href_stack: list[tuple[str, int]] = []
    for child in children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif kind == "link_open":
            href_stack.append((child.attrGet("href") or "", len(parts)))
        elif kind == "link_close":
            href, start = href_stack.pop()
            label = "".join(parts[start:])
            address = href.removeprefix("mailto:").removeprefix("tel:")
            # The address itself, beside its words: a text part has no links to click.
            if href.lower().startswith(_SHOWN_SCHEMES) and address != label:
                parts.append(f" ({address})")
        # em, strong, s: their words stay, their markers go. An image shows in neither part.
    return "".join(parts)


def plain(source) -> str:
    """A Markdown text as a person reads it in a plain-text email: no `**`, no `[..](..)`."""
    return _plain(str(source or ""))
