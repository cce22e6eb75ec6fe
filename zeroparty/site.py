"""Loading ``site.toml``: every package's section checked, then applied in one go.

Each package that owns a part of the site file names a :class:`SiteSection` (a parser
and an applier) in its wiring (:mod:`zeroparty.wiring`). The loader parses the whole
file first, collecting every problem; only a file without problems is applied, in one
transaction, so nothing is ever half-loaded.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.orm import Session

from zeroparty import i18n
from zeroparty.brand import parse_brand, store_brand
from zeroparty.config_errors import ConfigProblems, SiteConfigError
from zeroparty.db import Database
from zeroparty.site_info import UNNAMED, SiteIdentity, store_site_identity

SITE_KEYS = {
    "name", "default_locale", "locales", "controller", "policy_url", "mail", "brand",
}  # fmt: skip
MAIL_KEYS = {"from_name", "from_address", "reply_to", "company"}
MAIL_ADDRESS_KEYS = ("from_address", "reply_to")
MAX_FILE_BYTES = 2_000_000
# A locale as the site file writes it: a language, optionally a region (en, de, pt-BR);
# the same rule as notice texts' locales (consent_ledger.site.LOCALE_RE).
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")


@dataclass(frozen=True, slots=True)
class SiteSection:
    """A package's part of the site file: which top-level keys it owns, how to load them."""

    keys: frozenset[str]
    parse: Callable[[Mapping[str, object], tuple[str, ...], ConfigProblems], Any]
    apply: Callable[[Session, Any], list[str]]


SITE_SECTION = SiteSection(
    frozenset({"site"}), lambda raw, locales, problems: None, store_site_identity
)
# [site.brand]: checked with the rest of [site], applied after it (zeroparty.brand).
BRAND_SECTION = SiteSection(frozenset(), lambda raw, locales, problems: None, store_brand)


def sections() -> list[SiteSection]:
    """Every package's part of the site file, as its wiring names it (the ledger's
    purposes first: forms and scoring rules refer to them)."""
    from zeroparty.wiring import features

    return [section for part in features() for section in part.site_sections]


@dataclass(frozen=True, slots=True)
class LoadResult:
    changes: list[str]


def read_site_file(path: Path) -> dict[str, Any]:
    """Read and TOML-parse ``path``; syntax errors name the line and column."""
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SiteConfigError([(where, f"cannot read: {exc.strerror or exc}")]) from exc
    if len(data) > MAX_FILE_BYTES:
        raise SiteConfigError([(where, f"larger than {MAX_FILE_BYTES} bytes")])
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SiteConfigError([(where, "is not UTF-8 text")]) from exc
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        location = f"{where}:{match.group(1)}:{match.group(2)}" if match else where
        raise SiteConfigError([(location, f"TOML syntax: {exc}")]) from exc


def _site_table(raw: Mapping[str, Any], problems: ConfigProblems) -> SiteIdentity:
    site = raw.get("site", {})
    if not isinstance(site, dict):
        problems.add("site", "must be a table")
        return UNNAMED
    for key in sorted(set(site) - SITE_KEYS):
        problems.add(f"site.{key}", f"unknown key (known: {', '.join(sorted(SITE_KEYS))})")
    locales = site.get("locales", ["en"])
    if not isinstance(locales, list) or not all(
        isinstance(item, str) and LOCALE_RE.match(item) for item in locales
    ):
        problems.add("site.locales", 'must be a list of locales such as ["en", "de"]')
        locales = ["en"]
    speakable = i18n.languages()
    for locale in locales:
        if i18n.primary(locale) not in speakable:
            # The visitor's pages and mails would be half in English (README: Languages).
            problems.add("site.locales", f"{locale!r} has no catalogue (languages with one: "
                         f"{', '.join(sorted(speakable))})")  # fmt: skip
    default_locale = site.get("default_locale", locales[0] if locales else "en")
    if not isinstance(default_locale, str) or default_locale not in locales:
        problems.add("site.default_locale", f"must be one of site.locales {locales}")
        default_locale = locales[0] if locales else "en"
    texts: dict[str, str] = {}
    for key, default in (("name", "zeroparty"), ("controller", ""), ("policy_url", "")):
        value = site.get(key, default)
        if not isinstance(value, str) or len(value) > 500:
            problems.add(f"site.{key}", "must be a string of at most 500 characters")
            value = default
        texts[key] = value.strip()
    if texts["policy_url"] and not texts["policy_url"].startswith(("https://", "http://")):
        problems.add("site.policy_url", "must be an http(s) URL")
    mail = _mail_table(site.get("mail", {}), problems)
    return SiteIdentity(
        texts["name"],
        texts["controller"],
        texts["policy_url"],
        default_locale,
        tuple(locales),
        mail["from_name"],
        mail["from_address"],
        mail["reply_to"],
        mail["company"],
    )


def _mail_table(table: object, problems: ConfigProblems) -> dict[str, str]:
    """``[site.mail]``: the sender of every mail. Addresses are checked by syntax
    (email-validator, no DNS); names must fit on one header line."""
    values = dict.fromkeys(MAIL_KEYS, "")
    if not isinstance(table, dict):
        problems.add("site.mail", "must be a table")
        return values
    for key in sorted(set(table) - MAIL_KEYS):
        problems.add(f"site.mail.{key}", f"unknown key (known: {', '.join(sorted(MAIL_KEYS))})")
    for key in sorted(MAIL_KEYS & set(table)):
        value = table[key]
        if not isinstance(value, str) or len(value) > 200 or not value.isprintable():
            problems.add(f"site.mail.{key}", "must be one line of text, at most 200 characters")
            continue
        values[key] = value.strip()
    for key in MAIL_ADDRESS_KEYS:
        if values[key]:
            try:
                # ASCII before the @ (no SMTPUTF8): mail is written in 7-bit ASCII.
                values[key] = validate_email(
                    values[key], check_deliverability=False, allow_smtputf8=False
                ).normalized
            except EmailNotValidError as exc:
                problems.add(f"site.mail.{key}", f"not a valid email address: {exc}")
                values[key] = ""
    return values


def parse_site(raw: Mapping[str, Any], where: str) -> list[tuple[SiteSection, Any]]:
    """Check every section of a parsed site file; raise with all problems found."""
    problems = ConfigProblems()
    identity = _site_table(raw, problems)
    locales = identity.locales
    package_sections = sections()
    owned = {"site"} | {key for section in package_sections for key in section.keys}
    for key in sorted(set(raw) - owned):
        problems.add(key, f"unknown section (known: {', '.join(sorted(owned))})")
    site = raw.get("site", {})
    brand = parse_brand(
        site.get("brand") if isinstance(site, dict) else None, problems, identity.name
    )
    parsed: list[tuple[SiteSection, Any]] = [(SITE_SECTION, identity), (BRAND_SECTION, brand)]
    parsed += [(section, section.parse(raw, locales, problems)) for section in package_sections]
    if problems:
        raise SiteConfigError([(f"{where}: {path}", what) for path, what in problems.items])
    return parsed


def load_site(database: Database, path: Path, *, dry_run: bool = False) -> LoadResult:
    """Validate ``path`` and apply it (unless ``dry_run``); all or nothing."""
    parsed = parse_site(read_site_file(path), path.name)
    changes: list[str] = []
    try:
        with database.write() as session:
            for section, config in parsed:
                changes.extend(section.apply(session, config))
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except SiteConfigError as refused:
        # A section may refuse the file only against what is stored (scoring: a stage
        # leads hold that the new lifecycle drops); the transaction is rolled back.
        raise SiteConfigError(
            [(f"{path.name}: {where}", what) for where, what in refused.problems]
        ) from refused
    return LoadResult(changes)


class _DryRun(Exception):
    """Raised to roll a checked load back."""
