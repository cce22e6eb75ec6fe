"""Capture's personal data: exported on access requests, deleted on erasure."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from starlette.testclient import TestClient

from capture.models import Answer, Submission
from consent_ledger.api import ConsentLedger
from consent_ledger.models import ConsentEvent
from consent_ledger.subjects import find_subject_id
from zeroparty.db import Database


def test_export_and_erase(
    app_client: TestClient, render: Callable[..., str], database: Database, ledger: ConsentLedger
) -> None:
    app_client.post(
        "/f/contact",
        data={"email": "lea@example.com", "message": "hi", "company": "Lea AG",
              "consent": "profiling", "_rt": render("contact")},
    )  # fmt: skip
    app_client.post(
        "/f/newsletter", data={"email": "other@example.com", "_rt": render("newsletter")}
    )
    (provider,) = [p for p in ledger.personal_data_providers if p.name == "capture"]
    with database.read() as session:
        subject_id = find_subject_id(session, "lea@example.com")
        assert subject_id is not None
        exported = provider.export(session, subject_id)
    assert len(exported) == 1
    assert exported[0]["form"] == "contact"
    assert exported[0]["form_version"] == 1
    assert exported[0]["answers"] == {
        "email": ["lea@example.com"], "message": ["hi"], "company": ["Lea AG"]
    }  # fmt: skip
    with database.write() as session:
        provider.erase(session, subject_id)
    with database.read() as session:
        assert provider.export(session, subject_id) is None
        assert (
            session.execute(
                select(func.count()).select_from(Answer).where(Answer.subject_id == subject_id)
            ).scalar_one()
            == 0
        )
        assert session.execute(select(func.count()).select_from(Submission)).scalar_one() == 1
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 1
