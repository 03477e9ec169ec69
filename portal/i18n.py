"""Which of the portal's languages a locale reads, and the organisation's text in that language."""

from __future__ import annotations

from typing import NamedTuple

from flask import current_app, g, has_request_context
from flask_babel import get_locale, get_translations
from flask_babel import gettext as babel_gettext
from flask_babel.speaklater import LazyString
from markupsafe import Markup, escape

# The language the organisation writes its own text in first; other languages sit beside it.
SOURCE_LANGUAGE = "en"


def language_for(locale: str | None) -> str:
    """The portal language for a locale like "es-MX": its language if we have it, else English."""
    language = (locale or "").split("-")[0].split("_")[0].lower()
    return language if language in current_app.config["LANGUAGES"] else "en"


class Localized(NamedTuple):
    """A text of the organisation's and the language it is actually in.

    In HTML a text shown in another language than the page's carries its own `lang`, so a
    screen reader pronounces it right and nobody takes the English for a translation.
    """

    text: str
    lang: str
    fallback: bool  # True: not in the language asked for (the English stands in)

    def __str__(self) -> str:
        return self.text

    def __html__(self) -> str:
        if self.fallback and self.text:
            return Markup('<span lang="{}">{}</span>').format(self.lang, self.text)
        return str(escape(self.text))

    @property
    def attr(self) -> Markup:
        """` lang="en"` for an element holding a stand-in text; nothing otherwise."""
        return Markup(' lang="{}"').format(self.lang) if self.fallback and self.text else Markup()

    @property
    def lines(self) -> list[str]:
        return [line.strip() for line in self.text.splitlines() if line.strip()]


def localized(obj, field: str, language: str | None = None) -> Localized:
    """`obj.field` in `language` (default: the page's), else the English marked as English."""
    language = language or str(get_locale() or SOURCE_LANGUAGE)
    source = getattr(obj, field) or ""
    if language == SOURCE_LANGUAGE:
        return Localized(source, SOURCE_LANGUAGE, False)
    text = ((obj.translations or {}).get(language) or {}).get(field) or ""
    if text.strip():
        return Localized(text, language, False)
    return Localized(source, SOURCE_LANGUAGE, True)


def translated_text(obj, language: str) -> dict[str, str]:
    """The texts written for `obj` in `language`, field by field (for a form to show)."""
    return dict((obj.translations or {}).get(language) or {})


def with_translation(obj, language: str, texts: dict[str, str | None]) -> dict:
    """`obj.translations` with `language`'s texts replaced by `texts` (an empty text removes
    it). A new dict, so the change is seen; the caller validates lengths and assigns it."""
    if language == SOURCE_LANGUAGE or language not in current_app.config["LANGUAGES"]:
        raise ValueError(f"not a language to translate into: {language}")
    unknown = set(texts) - set(obj.translated_fields)
    if unknown:
        raise ValueError(f"not translatable: {', '.join(sorted(unknown))}")
    kept = {k: v for k, v in translated_text(obj, language).items() if k not in texts}
    kept.update({k: v.strip() for k, v in texts.items() if v and v.strip()})
    result = {k: dict(v) for k, v in (obj.translations or {}).items() if k != language}
    if kept:
        result[language] = kept
    return result


def datetime_with_zone(value) -> str:
    """A moment as a person reads it in their language, with its time zone named: a time without
    its zone is a guess for someone in another state."""
    from flask_babel import format_date, format_datetime, format_time

    if value is None:
        return "—"
    return f"{format_date(value, 'medium')}, {format_time(value, 'short')} " + format_datetime(
        value, "zzz"
    )


def day_and_month(value) -> str:
    """A day of this year as the reader's language writes it ("November 12", "12 de
    noviembre"): CLDR's pattern for the locale, not a pattern of our own."""
    from babel.dates import format_skeleton
    from flask_babel import get_locale

    return format_skeleton("MMMMd", value, locale=get_locale() or SOURCE_LANGUAGE)


def staff_datetime(value, seconds: bool = False) -> str:
    """A moment as staff read it: sortable, with its time zone, so that agents in several places
    (and the audit trail they compare against) never guess which clock a time is on."""
    from flask_babel import format_datetime

    if value is None:
        return "—"
    return format_datetime(value, "yyyy-MM-dd HH:mm:ss zzz" if seconds else "yyyy-MM-dd HH:mm zzz")


def _catalogue():
    """This request's translations, looked up once for each locale the request uses.

    Flask-Babel finds the catalogue anew on every call (its context, the domain, the locale and
    the locale's name each time), and a page calls gettext some thirty times. The catalogue is
    kept on Flask-Babel's own per-request namespace beside the locale object it was found for:
    `force_locale` and `refresh` replace or drop that object, so a new locale is never served
    the old catalogue.
    """
    ctx = g.get("_flask_babel")
    locale = getattr(ctx, "babel_locale", None)
    kept = getattr(ctx, "portal_catalogue", None)
    if kept is not None and locale is not None and kept[0] is locale:
        return kept[1]
    translations = get_translations()
    ctx = g.get("_flask_babel")  # made by Flask-Babel on its first use in this request
    if ctx is not None:
        ctx.portal_catalogue = (get_locale(), translations)
    return translations


def page_locale() -> str:
    """The name of this request's locale ("en", "es"), as `str(get_locale())`: read from where
    Flask-Babel keeps it once found, without its several lookups a call (a page's cache keys
    ask for it a dozen times)."""
    locale = getattr(g.get("_flask_babel"), "babel_locale", None)
    return str(locale if locale is not None else get_locale())


def _translated(string: str, **variables) -> str:
    """Flask-Babel's gettext, through this request's catalogue (above) in a request."""
    if not has_request_context():
        return babel_gettext(string, **variables)
    text = _catalogue().ugettext(string)
    return text % variables if variables else text


def lazy_text(string: str, **variables) -> LazyString:
    """Flask-Babel's `lazy_gettext`, translated when shown through this request's catalogue:
    the dashboard shows a dozen of them (the data types' names and explanations), and
    Flask-Babel finds its catalogue anew for each."""
    return LazyString(_translated, string, **variables)


def install_template_gettext(app) -> None:
    """Templates' `_`, `gettext`, `ngettext` and `pgettext` through the per-request catalogue
    above: the callables Flask-Babel installs, with a faster lookup (Jinja's newstyle wrapper
    still escapes and fills in the variables)."""
    app.jinja_env.install_gettext_callables(
        gettext=lambda s: _catalogue().ugettext(s),
        ngettext=lambda s, p, n: _catalogue().ungettext(s, p, n),
        newstyle=True,
        pgettext=lambda c, s: _catalogue().upgettext(c, s),
        npgettext=lambda c, s, p, n: _catalogue().unpgettext(c, s, p, n),
    )


def breach_dates(incident) -> str:
    """When the breach happened, as Cal. Civ. Code 1798.82(d)(2)(C) asks: a date, a range, a
    last day, or not known yet; the same words in the notice and on every page."""
    from flask_babel import format_date
    from flask_babel import gettext as _

    first, last = incident.occurred_on, incident.occurred_to
    if first and last and last != first:
        return _(
            "between %(first)s and %(last)s",
            first=format_date(first, "long"),
            last=format_date(last, "long"),
        )
    if first:  # a day, or a range that begins and ends on it
        return format_date(first, "long")
    if last:  # only its end is known
        return _("on or before %(date)s", date=format_date(last, "long"))
    return _("not known yet; we will tell you when we know")
