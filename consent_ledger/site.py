"""The ledger's part of ``site.toml``: purposes, their notice texts, topics.

Parsing (:func:`parse`) checks everything and builds plain specs; applying
(:func:`apply`) writes them in the caller's transaction. A notice text that changed
becomes a new immutable :class:`NoticeVersion`; purposes and notice versions are never
deleted (the ledger points at them), so a purpose missing from the file is kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from consent_ledger.actions import LegalBasis, Mechanism, PurposeCategory
from consent_ledger.models import NoticeVersion, Purpose, Topic
from zeroparty.config_errors import ConfigProblems

KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
JURISDICTION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
MAX_NOTICE_LENGTH = 5000

PURPOSE_KEYS = {
    "title",
    "description",
    "category",
    "legal_basis",
    "mechanism",
    "double_opt_in",
    "jurisdictions",
    "notice",
    "expires_after_days",
    "remind_before_days",
}
MAX_EXPIRY_DAYS = 36500
TOPIC_KEYS = {"purpose", "title", "description"}
# Keys of a purpose's notice table that are not locales (issue 16): what a changed text
# is to the version before ("material", the default, or "editorial"), and what changed.
NOTICE_CHANGE_KINDS = ("material", "editorial")
NOTICE_META_KEYS = {"change", "summary"}
MAX_SUMMARY_LENGTH = 500


@dataclass(frozen=True, slots=True)
class PurposeSpec:
    key: str
    title: str
    description: str
    category: str
    legal_basis: str
    mechanism: str
    double_opt_in: bool
    jurisdictions: tuple[str, ...]
    notices: Mapping[str, str]
    notice_change: str = "material"
    change_summary: str | None = None
    expires_after_days: int | None = None
    remind_before_days: int | None = None
    # The title and description in the site's other languages (stored as JSON).
    translations: str | None = None


@dataclass(frozen=True, slots=True)
class TopicSpec:
    key: str
    purpose: str
    title: str
    description: str
    translations: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    purposes: tuple[PurposeSpec, ...]
    topics: tuple[TopicSpec, ...]


def notice_sha256(text: str) -> str:
    """The public identity of a notice version: SHA-256 hex of its exact UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(raw: Mapping[str, object], key: str, where: str, problems: ConfigProblems,
          *, required: bool = True, limit: int = 200) -> str:  # fmt: skip
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(f"{where}.{key}", "is required")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        problems.add(f"{where}.{key}", "must be a non-empty string")
        return ""
    if len(value) > limit:
        problems.add(f"{where}.{key}", f"at most {limit} characters")
    return value.strip()


class _Translated:
    """The texts of one purpose or topic that people read (``title``, ``description``):
    a string, the same in every language, or a table of language → text that names
    every language of ``site.locales`` (``title = { en = "Newsletter", de = "Newsletter" }``).
    The text in the site's first language is the stored one; the others are kept as
    JSON beside it (``Purpose.translations``)."""

    def __init__(self, locales: tuple[str, ...]) -> None:
        self.locales = locales
        self.others: dict[str, dict[str, str]] = {}

    def text(self, raw: Mapping[str, object], key: str, where: str, problems: ConfigProblems,
             *, required: bool = True, limit: int = 200) -> str:  # fmt: skip
        value = raw.get(key)
        if not isinstance(value, dict):
            return _text(raw, key, where, problems, required=required, limit=limit)
        example = "{ " + ", ".join(f'{lang} = "…"' for lang in self.locales) + " }"
        for lang in sorted(set(value) - set(self.locales)):
            problems.add(f"{where}.{key}.{lang}", f"not one of site.locales {list(self.locales)}")
        texts: dict[str, str] = {}
        for lang in self.locales:
            text = value.get(lang)
            if not isinstance(text, str) or (required and not text.strip()):
                problems.add(f"{where}.{key}", f"no text in {lang!r}: give {example}")
            elif len(text) > limit:
                problems.add(f"{where}.{key}.{lang}", f"at most {limit} characters")
            else:
                texts[lang] = text.strip()
        if not self.locales or len(texts) < len(self.locales):
            return ""
        first, *others = self.locales
        for lang in others:
            self.others.setdefault(lang, {})[key] = texts[lang]
        return texts[first]

    def stored(self) -> str | None:
        """The other languages' texts as stored: ``None`` when every text is one string."""
        return (
            orjson.dumps(self.others, option=orjson.OPT_SORT_KEYS).decode() if self.others else None
        )


def _choice(raw: Mapping[str, object], key: str, where: str, choices: type[object],
            default: str, problems: ConfigProblems) -> str:  # fmt: skip
    value = raw.get(key, default)
    allowed = [str(c) for c in choices]  # type: ignore[attr-defined]
    if value not in allowed:
        problems.add(f"{where}.{key}", f"must be one of {', '.join(allowed)} (got {value!r})")
        return default
    return str(value)


def _unknown(
    raw: Mapping[str, object], known: set[str], where: str, problems: ConfigProblems
) -> None:
    for key in sorted(set(raw) - known):
        problems.add(f"{where}.{key}", f"unknown key (known: {', '.join(sorted(known))})")


def _purpose(
    key: str, raw: object, locales: tuple[str, ...], problems: ConfigProblems
) -> PurposeSpec | None:
    where = f"purposes.{key}"
    if not KEY_RE.match(key):
        problems.add(where, "purpose keys are lower-case letters, digits, '-' and '_'")
    if not isinstance(raw, dict):
        problems.add(where, "must be a table")
        return None
    for key in sorted(NOTICE_META_KEYS & set(raw)):
        # Only a notice text changes materially or editorially (issue 16).
        problems.add(
            f"{where}.{key}",
            f"a change is said of the purpose's notice: put it in {where}.notice.{key}",
        )
    _unknown(raw, PURPOSE_KEYS | NOTICE_META_KEYS, where, problems)
    category = _choice(raw, "category", where, PurposeCategory, "communication", problems)
    mechanism = _choice(raw, "mechanism", where, Mechanism, Mechanism.OPT_IN.value, problems)
    legal_basis = _choice(raw, "legal_basis", where, LegalBasis, LegalBasis.CONSENT.value, problems)
    default_doi = category == PurposeCategory.COMMUNICATION and mechanism == Mechanism.OPT_IN
    double_opt_in = raw.get("double_opt_in", default_doi)
    if not isinstance(double_opt_in, bool):
        problems.add(f"{where}.double_opt_in", "must be true or false")
        double_opt_in = default_doi
    jurisdictions = raw.get("jurisdictions", [])
    if not isinstance(jurisdictions, list) or not all(
        isinstance(j, str) and JURISDICTION_RE.match(j) for j in jurisdictions
    ):
        problems.add(f"{where}.jurisdictions", 'must be a list of ISO 3166 codes such as "US-CA"')
        jurisdictions = []
    if mechanism == Mechanism.OPT_OUT and not jurisdictions:
        problems.add(
            f"{where}.jurisdictions",
            "an opt-out purpose must name the jurisdictions where opt-out is lawful",
        )
    notices = raw.get("notice")
    texts: dict[str, str] = {}
    notice_change, change_summary = "material", None
    if isinstance(notices, dict):
        notice_change, change_summary = _notice_change(notices, f"{where}.notice", problems)
        notices = {k: v for k, v in notices.items() if k not in NOTICE_META_KEYS}
    if not isinstance(notices, dict) or not notices:
        problems.add(f"{where}.notice", "a table of notice texts per locale is required")
    else:
        for locale, text in notices.items():
            if not LOCALE_RE.match(locale):
                problems.add(f"{where}.notice.{locale}", "is not a locale such as en or de-AT")
            elif locales and locale not in locales:
                problems.add(
                    f"{where}.notice.{locale}", f"locale not in site.locales {list(locales)}"
                )
            if not isinstance(text, str) or not text.strip():
                problems.add(f"{where}.notice.{locale}", "must be a non-empty string")
            elif len(text) > MAX_NOTICE_LENGTH:
                problems.add(f"{where}.notice.{locale}", f"at most {MAX_NOTICE_LENGTH} characters")
            else:
                texts[locale] = text.strip()
    translated = _Translated(locales)
    return PurposeSpec(
        key=key,
        title=translated.text(raw, "title", where, problems),
        description=translated.text(
            raw, "description", where, problems, required=False, limit=2000
        ),
        category=category,
        legal_basis=legal_basis,
        mechanism=mechanism,
        double_opt_in=bool(double_opt_in),
        jurisdictions=tuple(jurisdictions),
        notices=texts,
        notice_change=notice_change,
        change_summary=change_summary,
        translations=translated.stored(),
        **_expiry(raw, where, mechanism, problems),
    )


def _days(raw: Mapping[str, object], key: str, where: str, problems: ConfigProblems) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_EXPIRY_DAYS:
        problems.add(f"{where}.{key}", f"must be a whole number of days, 1 to {MAX_EXPIRY_DAYS}")
        return None
    return value


def _expiry(
    raw: Mapping[str, object], where: str, mechanism: str, problems: ConfigProblems
) -> dict[str, int | None]:
    """``expires_after_days`` and ``remind_before_days`` of a purpose (issue 16)."""
    expires = _days(raw, "expires_after_days", where, problems)
    remind = _days(raw, "remind_before_days", where, problems)
    if expires is not None and mechanism == Mechanism.OPT_OUT:
        problems.add(
            f"{where}.expires_after_days",
            "an opt-out purpose is permitted without a grant: there is nothing to expire",
        )
    if remind is not None and "expires_after_days" not in raw:
        problems.add(f"{where}.remind_before_days", "needs expires_after_days")
    elif remind is not None and expires is not None and remind >= expires:
        problems.add(
            f"{where}.remind_before_days", f"must be less than expires_after_days ({expires})"
        )
    return {"expires_after_days": expires, "remind_before_days": remind}


def _notice_change(
    notices: Mapping[str, object], where: str, problems: ConfigProblems
) -> tuple[str, str | None]:
    """``change`` and ``summary`` of a notice table: how a changed text counts."""
    change = notices.get("change", "material")
    if change not in NOTICE_CHANGE_KINDS:
        problems.add(
            f"{where}.change",
            f"must be one of {', '.join(NOTICE_CHANGE_KINDS)} (got {change!r})",
        )
        change = "material"
    summary = notices.get("summary")
    if summary is not None and (
        not isinstance(summary, str) or not summary.strip() or len(summary) > MAX_SUMMARY_LENGTH
    ):
        problems.add(
            f"{where}.summary", f"must be a non-empty string of at most {MAX_SUMMARY_LENGTH}"
        )
        summary = None
    return str(change), summary.strip() if isinstance(summary, str) else None


def parse(
    raw: Mapping[str, object], locales: tuple[str, ...], problems: ConfigProblems
) -> LedgerConfig:
    """Check the ``purposes`` and ``topics`` tables, adding every problem to ``problems``."""
    purposes_raw = raw.get("purposes")
    purposes: list[PurposeSpec] = []
    if not isinstance(purposes_raw, dict) or not purposes_raw:
        problems.add("purposes", "at least one purpose is required")
    else:
        for key, value in purposes_raw.items():
            spec = _purpose(key, value, locales, problems)
            if spec is not None:
                purposes.append(spec)
    keys = {p.key for p in purposes}
    topics: list[TopicSpec] = []
    topics_raw = raw.get("topics", {})
    if not isinstance(topics_raw, dict):
        problems.add("topics", "must be a table")
        topics_raw = {}
    for key, value in topics_raw.items():
        where = f"topics.{key}"
        if not KEY_RE.match(key):
            problems.add(where, "topic keys are lower-case letters, digits, '-' and '_'")
        if not isinstance(value, dict):
            problems.add(where, "must be a table")
            continue
        for meta in sorted(NOTICE_META_KEYS & set(value)):
            problems.add(f"{where}.{meta}", "only a purpose's notice changes materially or "
                         "editorially (purposes.KEY.notice.change)")  # fmt: skip
        _unknown(value, TOPIC_KEYS | NOTICE_META_KEYS, where, problems)
        purpose = _text(value, "purpose", where, problems, limit=64)
        if purpose and purpose not in keys:
            problems.add(f"{where}.purpose", f"no purpose {purpose!r} in this file")
        translated = _Translated(locales)
        topics.append(
            TopicSpec(
                key=key,
                purpose=purpose,
                title=translated.text(value, "title", where, problems),
                description=translated.text(
                    value, "description", where, problems, required=False, limit=2000
                ),
                translations=translated.stored(),
            )
        )
    return LedgerConfig(tuple(purposes), tuple(topics))


def apply(session: Session, config: LedgerConfig) -> list[str]:
    """Write ``config``; returns a line per change (empty when nothing changed)."""
    changes: list[str] = []
    for spec in config.purposes:
        purpose = session.get(Purpose, spec.key)
        values = {
            "title": spec.title,
            "description": spec.description,
            "category": spec.category,
            "legal_basis": spec.legal_basis,
            "mechanism": spec.mechanism,
            "double_opt_in": spec.double_opt_in,
            "jurisdictions": orjson.dumps(list(spec.jurisdictions)).decode(),
            "expires_after_days": spec.expires_after_days,
            "remind_before_days": spec.remind_before_days,
            "translations": spec.translations,
        }
        if purpose is None:
            session.add(Purpose(key=spec.key, **values))
            changes.append(f"purpose {spec.key}: created")
        elif any(getattr(purpose, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(purpose, k, v)
            changes.append(f"purpose {spec.key}: updated")
        session.flush()
        for locale, text in spec.notices.items():
            changes.extend(
                _publish_notice(
                    session, spec.key, locale, text, spec.notice_change, spec.change_summary
                )
            )
    for topic_spec in config.topics:
        topic = session.get(Topic, topic_spec.key)
        topic_values = {
            "purpose_key": topic_spec.purpose,
            "title": topic_spec.title,
            "description": topic_spec.description,
            "translations": topic_spec.translations,
        }
        if topic is None:
            session.add(Topic(key=topic_spec.key, **topic_values))
            changes.append(f"topic {topic_spec.key}: created")
        elif any(getattr(topic, k) != v for k, v in topic_values.items()):
            for k, v in topic_values.items():
                setattr(topic, k, v)
            changes.append(f"topic {topic_spec.key}: updated")
    session.flush()
    return changes


def _publish_notice(
    session: Session,
    purpose: str,
    locale: str,
    text: str,
    change: str = "material",
    summary: str | None = None,
) -> list[str]:
    latest = session.execute(
        select(NoticeVersion)
        .where(NoticeVersion.purpose_key == purpose, NoticeVersion.locale == locale)
        .order_by(NoticeVersion.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    digest = notice_sha256(text)
    if latest is not None and latest.sha256 == digest:
        return []
    version = (
        session.execute(
            select(func.coalesce(func.max(NoticeVersion.version), 0)).where(
                NoticeVersion.purpose_key == purpose, NoticeVersion.locale == locale
            )
        ).scalar_one()
        + 1
    )
    kind = "initial" if version == 1 else change
    session.add(
        NoticeVersion(
            purpose_key=purpose,
            locale=locale,
            version=version,
            text=text,
            sha256=digest,
            change=kind,
            change_summary=summary if version > 1 else None,
        )
    )
    line = f"notice {purpose}/{locale}: version {version} (sha256 {digest[:12]}…)"
    if kind == "material":
        line += ": material change, earlier grants expire and leads are asked again"
    elif kind == "editorial":
        line += ": editorial change, consent kept"
    return [line]
