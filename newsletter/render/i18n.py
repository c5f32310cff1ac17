"""The fixed text of a template in the variant's language(s), from gettext message catalogues.

A template's catalogues are `.po` files under it: `templates/<name>/locale/<lang>/LC_MESSAGES/
messages.po` (`messages.pot` beside `locale/` lists every message). They are compiled in memory when
the template is loaded, so no binary `.mo` is kept in the repository, a build needs no extra step,
and the build stays deterministic (the `.po` files are part of `template_sha256`). Entries marked
fuzzy are not used: a translation counts once a reviewer has cleared that flag.

A variant has one language (`locale: cy`) or two (`bilingual: [cy, en-GB]`): the first is the
document's `<html lang>`, and every fixed string is given in each language, each in an element
with its own `lang`. English (`en-GB`) is the source language and needs no catalogue.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import Markup, escape

from newsletter.errors import InputError

SOURCE_LOCALE = "en-GB"
DATE_FORMAT = "d MMMM y"  # 16 November 2026 / 16 Tachwedd 2026


def catalogue_path(template_dir: Path, code: str) -> Path:
    return template_dir / "locale" / code.replace("-", "_") / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=64)
def babel_locale(code: str) -> Locale:
    """The babel locale for a language tag (kept per tag: parsing it is most of a date's cost)."""
    try:
        return Locale.parse(code, sep="-")
    except (ValueError, UnknownLocaleError):
        raise InputError(f"unknown locale {code!r}", hint="use a language tag such as en-GB or cy") from None


def load_catalogue(template_dir: Path, code: str) -> gettext.NullTranslations:
    """The compiled catalogue for `code` (the source language has none: msgids are English)."""
    if code == SOURCE_LOCALE:
        return gettext.NullTranslations()
    path = catalogue_path(template_dir, code)
    if not path.is_file():
        raise InputError(
            f"template {template_dir.name!r} has no {code} translation: {path} does not exist",
            hint=f"translate {template_dir / 'messages.pot'} into {path}, or choose another locale",
        )
    try:
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=babel_locale(code), ignore_obsolete=True, abort_invalid=True)
    except Exception as exc:  # babel's PoFileError and parse errors carry the line
        raise InputError(f"{path}: not a valid message catalogue ({exc})") from None
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@dataclass(frozen=True)
class Translator:
    """Fixed strings and dates for one variant, in its languages (first = the document's)."""

    languages: tuple[str, ...]
    catalogues: Mapping[str, gettext.NullTranslations]

    @property
    def lang(self) -> str:
        return self.languages[0]

    def text(self, code: str, msgid: str, /, **values: object) -> Markup:
        """msgid in one language, escaped, with `%(name)s` values filled in (escaped too). A value
        given as `N_(...)` (a msgid itself, e.g. a region name) is translated in that language."""
        translated = self.catalogues[code].gettext(msgid)
        filled = {k: self.catalogues[code].gettext(v.msgid) if isinstance(v, Msgid) else v
                  for k, v in values.items()}
        return Markup(escape(translated)) % filled if filled else Markup(escape(translated))

    def __call__(self, msgid: str, /, **values: object) -> Markup:
        """msgid in every language of the variant: `<span lang="cy">…</span> / <span lang="en-GB">…</span>`
        when bilingual, the plain translation otherwise."""
        if len(self.languages) == 1:
            return self.text(self.lang, msgid, **values)
        return Markup(" / ").join(
            Markup('<span lang="{}">{}</span>').format(code, self.text(code, msgid, **values))
            for code in self.languages
        )

    def date(self, value: datetime) -> str:
        # no-break spaces: a date is never split across lines of the text part
        return format_date(value.date(), DATE_FORMAT, locale=babel_locale(self.lang)).replace(" ", "\u00a0")


@dataclass(frozen=True)
class Msgid:
    """A message id passed as a value (`N_("Wales")`), translated in each language where used."""

    msgid: str

    def __str__(self) -> str:
        return self.msgid


def mark(msgid: str) -> Msgid:
    return Msgid(msgid)
