"""Who runs this site: the ``[site]`` table of ``site.toml``, kept for receipts and pages."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zeroparty.db import Base

SITE_INFO_ID = 1


class SiteInfo(Base):
    __tablename__ = "site_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    controller: Mapped[str] = mapped_column(Text, default="")
    policy_url: Mapped[str] = mapped_column(String(500), default="")
    default_locale: Mapped[str] = mapped_column(String(16), default="en")
    locales: Mapped[str] = mapped_column(Text, default='["en"]')


@dataclass(frozen=True, slots=True)
class SiteIdentity:
    name: str
    controller: str
    policy_url: str
    default_locale: str
    locales: tuple[str, ...]


UNNAMED = SiteIdentity("zeroparty", "", "", "en", ("en",))


def site_identity(session: Session) -> SiteIdentity:
    row = session.execute(select(SiteInfo).where(SiteInfo.id == SITE_INFO_ID)).scalar_one_or_none()
    if row is None:
        return UNNAMED
    return SiteIdentity(
        row.name,
        row.controller,
        row.policy_url,
        row.default_locale,
        tuple(orjson.loads(row.locales)),
    )


def store_site_identity(session: Session, identity: SiteIdentity) -> list[str]:
    row = session.get(SiteInfo, SITE_INFO_ID)
    values = {
        "name": identity.name,
        "controller": identity.controller,
        "policy_url": identity.policy_url,
        "default_locale": identity.default_locale,
        "locales": orjson.dumps(list(identity.locales)).decode(),
    }
    if row is None:
        session.add(SiteInfo(id=SITE_INFO_ID, **values))
        return ["site: created"]
    if any(getattr(row, key) != value for key, value in values.items()):
        for key, value in values.items():
            setattr(row, key, value)
        return ["site: updated"]
    return []
