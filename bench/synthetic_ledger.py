"""A large, valid ledger built directly, fast: for the verify and look-up scenarios.

Entries are sealed with :func:`consent_ledger.entries.seal` exactly as
:func:`consent_ledger.ledger.append_many` seals them, evidence is committed to with
:func:`consent_ledger.evidence.seal_evidence`, and ``consent_state`` is what
:func:`consent_ledger.projection.apply` gives, so ``zeroparty ledger verify`` finds the
ledger intact. Rows go in with Core ``executemany`` in batches (the append-only triggers
refuse only UPDATE and DELETE).

Each subject (a lead with a profile and an email, ``lead0000042@bench.example``) has
one entry per purpose of the demo site: a double opt-in grant still pending, a
confirmed grant, a grant, and an opt-out refusal, so the kept states are varied.

SQLite files are cached between runs in the temp directory, keyed by size, schema head
and :data:`GENERATOR_VERSION`; PostgreSQL databases are made per run and dropped.
"""

from __future__ import annotations

import importlib
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from alembic.script import ScriptDirectory
from sqlalchemy import Table, insert, select, update

from bench.databases import prepare, remove_sqlite, sqlite_url
from consent_ledger import projection
from consent_ledger.entries import GENESIS_HASH, format_timestamp, seal
from consent_ledger.evidence import seal_evidence
from consent_ledger.models import (
    ConsentEvent,
    ConsentEvidence,
    ConsentState,
    LedgerHead,
    NoticeVersion,
    Subject,
    SubjectProfile,
)
from zeroparty import migrations
from zeroparty.apikeys import create_api_key
from zeroparty.db import Database

GENERATOR_VERSION = 2
BATCH_SUBJECTS = 5_000
SEED = 20261125
API_KEY_NAME = "bench"
CACHE_DIR = Path(tempfile.gettempdir()) / "zeroparty-bench-cache"
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)

_events, _evidence, _state, _subjects, _profiles, _head = (
    cast(Table, model.__table__)
    for model in (ConsentEvent, ConsentEvidence, ConsentState, Subject, SubjectProfile, LedgerHead)
)


@dataclass(frozen=True, slots=True)
class EntryPlan:
    """What one subject's entry for one purpose says."""

    purpose: str
    action: str
    method: str
    confirmation_required: bool


PLANS = (
    EntryPlan("newsletter", "granted", "checkbox", True),
    EntryPlan("product_updates", "granted", "double-opt-in", False),
    EntryPlan("profiling", "granted", "checkbox", False),
    EntryPlan("sale_sharing", "refused", "checkbox", False),
)
JURISDICTIONS = ("DE", "US-CA", "FR", None)


@dataclass(frozen=True, slots=True)
class GeneratedLedger:
    url: str
    entries: int
    subjects: int
    api_key: str
    seconds: float  # 0.0 when it came from the cache


def email_of(index: int) -> str:
    return f"lead{index:07d}@bench.example"


def subjects_for(entries: int) -> int:
    return -(-entries // len(PLANS))


def _batches(entries: int, notices: dict[str, str]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    rng = random.Random(SEED)
    seq, prev_hash = 0, GENESIS_HASH
    subject_count = subjects_for(entries)
    for first in range(0, subject_count, BATCH_SUBJECTS):
        batch: dict[str, list[dict[str, Any]]] = {
            "subjects": [],
            "profiles": [],
            "events": [],
            "evidence": [],
            "state": [],
        }
        for index in range(first, min(first + BATCH_SUBJECTS, subject_count)):
            subject_id = f"{rng.getrandbits(128):032x}"
            jurisdiction = JURISDICTIONS[index % len(JURISDICTIONS)]
            created = BASE_TIME + timedelta(milliseconds=seq)
            batch["subjects"].append(
                {
                    "id": subject_id,
                    "locale": "en",
                    "jurisdiction": jurisdiction,
                    "created_at": created,
                    "erased_at": None,
                }
            )
            batch["profiles"].append(
                {
                    "subject_id": subject_id,
                    "email": email_of(index),
                    "name": None,
                    "created_at": created,
                    "updated_at": created,
                }
            )
            for plan in PLANS:
                if seq >= entries:
                    break
                seq += 1
                occurred_at = BASE_TIME + timedelta(milliseconds=seq)
                recorded_at = occurred_at + timedelta(milliseconds=40)
                sealed = seal_evidence(
                    {
                        "ip": f"203.0.{index % 256}.0/24",
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) zeroparty-bench",
                        "page": "https://northwind.example/signup",
                    }
                )
                fields: dict[str, Any] = {
                    "seq": seq,
                    "prev_hash": prev_hash,
                    "subject_id": subject_id,
                    "purpose": plan.purpose,
                    "action": plan.action,
                    "confirmation_required": plan.confirmation_required,
                    "notice_sha256": notices[plan.purpose],
                    "source": "form",
                    "source_ref": "signup-v3",
                    "jurisdiction": jurisdiction,
                    "method": plan.method,
                    "locale": "en",
                    "occurred_at": format_timestamp(occurred_at),
                    "recorded_at": format_timestamp(recorded_at),
                    "evidence_sha256": sealed.commitment,
                }
                digest = seal(fields)
                row = dict(fields, hash=digest, occurred_at=occurred_at, recorded_at=recorded_at)
                row["purpose_key"] = row.pop("purpose")
                batch["events"].append(row)
                batch["evidence"].append({"seq": seq, "salt": sealed.salt, "body": sealed.body})
                fact = projection.ConsentFact(
                    seq, plan.action, plan.confirmation_required, notices[plan.purpose], occurred_at
                )
                state = projection.apply(None, fact)
                batch["state"].append(
                    {
                        "subject_id": subject_id,
                        "purpose_key": plan.purpose,
                        "status": state.status,
                        "permitted": state.permitted,
                        "since": state.since,
                        "notice_sha256": state.notice_sha256,
                        "last_seq": state.last_seq,
                        "last_occurred_at": state.last_occurred_at,
                    }
                )
                prev_hash = digest
        batch["head"] = [{"seq": seq, "hash": prev_hash}]
        yield batch


def fill(url: str, entries: int) -> str:
    """Write ``entries`` entries into the migrated database at ``url``; returns an API key."""
    database = Database.from_url(url)
    try:
        with database.read() as session:
            stmt = select(NoticeVersion.purpose_key, NoticeVersion.sha256).where(
                NoticeVersion.locale == "en"
            )
            notices = {str(k): str(v) for k, v in session.execute(stmt)}
        head: dict[str, Any] = {"seq": 0, "hash": GENESIS_HASH}
        for batch in _batches(entries, notices):
            with database.engine.begin() as connection:
                connection.execute(insert(_subjects), batch["subjects"])
                connection.execute(insert(_profiles), batch["profiles"])
                if batch["events"]:
                    connection.execute(insert(_events), batch["events"])
                    connection.execute(insert(_evidence), batch["evidence"])
                    connection.execute(insert(_state), batch["state"])
            head = batch["head"][0]
        with database.write() as session:
            session.execute(update(_head).where(_head.c.id == 1).values(**head))
            api_key = create_api_key(session, API_KEY_NAME)
        _extend_stored_tree(database)
        if database.dialect == "sqlite":
            with database.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            with database.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                for table in ("consent_events", "consent_evidence", "consent_state"):
                    connection.exec_driver_sql(f"VACUUM ANALYZE {table}")
                connection.exec_driver_sql("VACUUM ANALYZE subjects")
                connection.exec_driver_sql("VACUUM ANALYZE subject_profiles")
    finally:
        database.dispose()
    return api_key


def schema_key() -> str:
    """The migration heads: a cached file from another schema is never reused."""
    heads = ScriptDirectory.from_config(migrations.alembic_config()).get_heads()
    return "+".join(sorted(heads))


def _extend_stored_tree(database: Database) -> None:
    """Store the Merkle tree's nodes where the ledger keeps them (as a served ledger has).

    Done through the ledger's own ``tree.extend_tree`` when this version has it, so a
    server started on the generated ledger does not spend the measurement building it.
    """
    try:
        tree = importlib.import_module("consent_ledger.proofs.tree")
    except ImportError:
        return
    extend = getattr(tree, "extend_tree", None)
    if extend is None:
        return
    with database.write() as session:
        extend(session.connection())


def cached_sqlite(entries: int) -> GeneratedLedger:
    """The SQLite ledger of ``entries`` entries, generated once and then reused."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    stem = f"ledger-{entries}-{schema_key()}-v{GENERATOR_VERSION}"
    path = CACHE_DIR / f"{stem}.db"
    key_file = CACHE_DIR / f"{stem}.key"
    if path.exists() and key_file.exists():
        return GeneratedLedger(
            sqlite_url(path), entries, subjects_for(entries), key_file.read_text().strip(), 0.0
        )
    partial = CACHE_DIR / f"{stem}.partial.db"
    remove_sqlite(partial)
    started = time.perf_counter()
    prepare(sqlite_url(partial))
    api_key = fill(sqlite_url(partial), entries)
    remove_sqlite(path)
    shutil.move(partial, path)
    remove_sqlite(partial)
    key_file.write_text(api_key + "\n")
    seconds = time.perf_counter() - started
    return GeneratedLedger(sqlite_url(path), entries, subjects_for(entries), api_key, seconds)


def generate_postgres(url: str, entries: int) -> GeneratedLedger:
    """Fill the empty database at ``url`` (migrated here) with ``entries`` entries."""
    started = time.perf_counter()
    prepare(url)
    api_key = fill(url, entries)
    seconds = time.perf_counter() - started
    return GeneratedLedger(url, entries, subjects_for(entries), api_key, seconds)
