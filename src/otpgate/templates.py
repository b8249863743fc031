"""The templates in effect: the shipped texts, with an operator's overrides on top.

``OTPGATE_TEMPLATES_DIR`` names a folder holding one TOML file per locale, named after
it (``fr.toml``, ``pt-BR.toml``), with any of the keys ``sms``, ``voice``,
``email_subject``, ``email_body``, ``email_html`` and ``minutes`` (a table of plural
category → wording, ``{n}`` for the number)::

    # fr.toml
    sms = "{code} est votre code {brand}. Il expire dans {minutes}."

A key the file leaves out keeps the text the locale had without it: the shipped one, or
that of its language (``es-MX.toml`` over ``es``, overridden or not). A locale otpgate
ships no texts for (``it.toml``) must give every key but ``email_html``. Everything is
read and checked once, at start-up: an unreadable file, an unknown key, a placeholder
other than ``{brand}``, ``{code}`` and ``{minutes}``, a missing ``{code}`` or a template
that does not render is a ``ConfigurationError`` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from otpgate.core import locales, messages
from otpgate.core.locales import LocaleTexts
from otpgate.core.messages import Templates
from otpgate.core.texts import SHIPPED
from otpgate.errors import ConfigurationError

_FILE_NAME = re.compile(r"[a-z]{2,3}(-[A-Z]{2})?", re.ASCII)
_KEYS = frozenset({*messages.KEYS, "minutes"})
_REQUIRED = frozenset(_KEYS - {"email_html"})


def load(directory: Path | None) -> Templates:
    """The shipped templates, overridden by the files in ``directory`` (if given)."""
    texts = dict(SHIPPED)
    if directory is None:
        return Templates(texts)
    if not directory.is_dir():
        raise ConfigurationError(f"OTPGATE_TEMPLATES_DIR {directory} is not a folder")
    files = sorted(directory.glob("*.toml"), key=lambda p: (p.stem.count("-"), p.stem))
    for path in files:
        locale = _locale_of(path)
        texts[locale] = _override(path, locale, _base(texts, locale), _read(path))
    return Templates(texts)


def _locale_of(path: Path) -> str:
    if not _FILE_NAME.fullmatch(path.stem):
        raise ConfigurationError(f"{path}: a template file is named after its locale, "
                                 "e.g. fr.toml or pt-BR.toml")
    return path.stem


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None


def _base(texts: dict[str, LocaleTexts], locale: str) -> LocaleTexts | None:
    for candidate in locales.candidates(locale):
        if candidate in texts:
            return texts[candidate]
    return None


def _override(path: Path, locale: str, base: LocaleTexts | None,
              data: dict[str, Any]) -> LocaleTexts:
    if unknown := sorted(set(data) - _KEYS):
        raise ConfigurationError(f"{path}: unknown key {unknown[0]!r}; the keys are "
                                 f"{', '.join(sorted(_KEYS))}")
    if base is None and (missing := sorted(_REQUIRED - set(data))):
        raise ConfigurationError(f"{path}: otpgate has no {locale} texts to fall back "
                                 f"on, so the file must give {', '.join(missing)}")
    try:
        for key in messages.KEYS:
            if key in data:
                messages.check_text(key, data[key])
        if "minutes" in data:
            messages.check_minutes(locale, data["minutes"])
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc.detail}") from None
    if base is None:
        return LocaleTexts(**data)
    return dataclasses.replace(base, **data)
