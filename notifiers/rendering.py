"""Message templates: Jinja2, one file per template and language, approved translations only.

Every message says what is known, what is being done and when the next update comes; a
template cannot render without the next-update time (:class:`MissingNextUpdate`). A
translation is used only when a person approved it — in ``templates/catalogue.yaml`` or
recorded in the database pinned to the file's SHA-256 — otherwise the message falls back to
approved Norwegian (then English) and the caller logs the fallback.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import yaml

from notifiers import sms

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXERCISE_PREFIX = "ØVELSE ØVELSE ØVELSE"
FALLBACK_LANGUAGES = ("nb", "en")
OSLO = ZoneInfo("Europe/Oslo")

_ACK = {
    "nb": " Bekreft: svar {code} eller åpne {url}",
    "en": " Confirm: reply {code} or open {url}",
}
_AT = {"nb": "{d:%d.%m.%Y} kl. {d:%H:%M}", "en": "{d:%d %b %Y} at {d:%H:%M} (Oslo time)"}


class TemplateError(ValueError):
    pass


class MissingNextUpdate(TemplateError):
    """Every message must say when the next update comes."""


@dataclass(frozen=True)
class Rendered:
    title: str
    body: str
    language: str
    fallback_from: str | None = None  # the preferred language that was not approved
    segments: int | None = None  # SMS segments, when rendered for SMS


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # Plain-text messages (SMS, e-mail text, webhooks): HTML escaping would corrupt them.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=jinja2.select_autoescape(enabled_extensions=(), default=False),
    )


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, dict[str, Any]]]:
    data = yaml.safe_load((TEMPLATES / "catalogue.yaml").read_text(encoding="utf-8"))
    return dict(data)


def template_path(template: str, language: str) -> Path:
    return TEMPLATES / f"{template}.{language}.j2"


@lru_cache(maxsize=256)
def template_sha256(template: str, language: str) -> str | None:
    path = template_path(template, language)
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_approved(template: str, language: str, db_approvals: Iterable[tuple[str, str, str]]) -> bool:
    """Approved in the shipped catalogue, or by a person for exactly this file's content."""
    sha = template_sha256(template, language)
    if sha is None:
        return False
    if catalogue().get(template, {}).get(language, {}).get("approved_by"):
        return True
    return (template, language, sha) in set(db_approvals)


def choose_language(
    template: str, preferred: Iterable[str], db_approvals: Iterable[tuple[str, str, str]] = ()
) -> tuple[str, str | None]:
    """(language used, preferred language that was skipped because unapproved, if any)."""
    approvals = set(db_approvals)
    if template not in catalogue():
        raise TemplateError(f"unknown template {template!r}")
    skipped: str | None = None
    for lang in preferred:
        if template_sha256(template, lang) is None:
            continue
        if is_approved(template, lang, approvals):
            return lang, skipped
        skipped = skipped or lang
    for lang in FALLBACK_LANGUAGES:
        if is_approved(template, lang, approvals):
            return lang, skipped
    raise TemplateError(f"template {template!r} has no approved nb/en version")


def email_text(body: str) -> str:
    """The plain-text part of an e-mail: the message's own lines, without trailing blanks."""
    return "\n".join(line.rstrip() for line in body.splitlines()).strip()


def email_html(body: str) -> str:
    """The HTML part of an e-mail: the text escaped, its lines and spacing kept.

    A ``<pre>`` in the reader's own font: mail clients honour it, and apprise derives the
    plain-text part from it line for line (``<br>`` would lose indents and runs of spaces).
    """
    return (
        '<pre style="white-space: pre-wrap; font-family: inherit; margin: 0">'
        f"{html.escape(email_text(body), quote=False)}</pre>"
    )


def format_time(value: datetime, language: str) -> str:
    local = value.astimezone(OSLO)
    return _AT.get(language, _AT["en"]).format(d=local)


def render(
    template: str,
    *,
    language: str,
    facts: Mapping[str, Any],
    next_update_at: datetime | None,
    exercise: str | None = None,
    ack_code: str | None = None,
    ack_url: str | None = None,
    original_at: datetime | None = None,
    for_sms: bool = False,
    sms_max_segments: int = 3,
    fallback_from: str | None = None,
) -> Rendered:
    """Render one message; refuses without ``next_update_at``. Adds the ØVELSE prefix."""
    if next_update_at is None:
        raise MissingNextUpdate("a message must say when the next update comes (next_update_at)")
    if next_update_at.tzinfo is None:
        raise TemplateError("next_update_at must be timezone-aware")
    fmt_lang = language if language in _AT else "en"

    def t(value: Any) -> str:
        """A fact given per language ({nb: …, en: …}) or as plain (Norwegian) text."""
        if isinstance(value, Mapping):
            for lang in (language, "nb", "en"):
                if value.get(lang):
                    return str(value[lang])
            return str(next(iter(value.values()), ""))
        return "" if value is None else str(value)

    title = t(facts.get("title") or "")
    ack = ""
    if ack_code:
        ack = _ACK.get(language, _ACK["en"]).format(code=ack_code, url=ack_url or "")
    try:
        body = (
            _environment()
            .get_template(template_path(template, language).name)
            .render(
                facts=dict(facts),
                t=t,
                title=title,
                next_update=format_time(next_update_at, fmt_lang),
                ack=ack,
                original_at=format_time(original_at, fmt_lang) if original_at else "",
            )
            .strip()
        )
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {template}.{language}: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise TemplateError(f"no template {template}.{language}") from None
    if exercise:
        body = f"{EXERCISE_PREFIX}\n{body}"
        title = f"{EXERCISE_PREFIX}: {title}"
    segments = None
    if for_sms:
        body = sms.fit_sms(body, sms_max_segments)
        segments = sms.count(body).segments
    return Rendered(title[:300], body, language, fallback_from, segments)
