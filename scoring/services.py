"""Scoring's domain logic: intake, incremental rescoring, stages, consent changes.

Every function takes a session in the caller's write transaction; nothing commits
here. The invariant kept (SPEC rule 3): a lead has scoring rows only while its consent
for the model's gating purpose is live, and an input counts only if that consent was
live when it happened (:mod:`scoring.consent`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache, partial
from typing import Any, cast
from weakref import WeakKeyDictionary

import orjson
from sqlalchemy import (
    String,
    Table,
    any_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.orm import Session

from consent_ledger.api import NO_RECORD, PENDING, is_negative
from consent_ledger.entries import LedgerEntry, format_timestamp
from consent_ledger.read_model import consent_states, lead_profiles
from scoring import actions, consent, crm_notices, engine
from scoring.consent import LATEST_MODEL_KEY
from scoring.counted_events import counted_events, counted_rows
from scoring.lifecycle import DEFAULT as DEFAULT_LIFECYCLE
from scoring.lifecycle import Lifecycle
from scoring.models import (
    DroppedEvents,
    HandoffAck,
    LeadAttribute,
    LeadEvent,
    LeadOutcome,
    Qualification,
    ScoredLead,
    ScorePoint,
    ScoringModelVersion,
    StageChange,
    Webhook,
)
from scoring.rules import BehaviourRule, ScoringModel, model_from_json
from scoring.stages import Actor
from zeroparty.db import (
    DriverStatement,
    Prepared,
    Transaction,
    connection_of,
    driver_cursor,
    sqlite_time,
    utcnow,
)
from zeroparty.errors import Conflict, InvalidInput, NotFound
from zeroparty.lead_signals import LeadInput, LeadSignal

_leads, _attrs, _events, _points, _changes, _hooks, _dropped = (
    cast(Table, m.__table__)
    for m in (
        ScoredLead,
        LeadAttribute,
        LeadEvent,
        ScorePoint,
        StageChange,
        Webhook,
        DroppedEvents,
    )
)
_profiles = lead_profiles

_cs = consent_states
_qual = cast(Table, Qualification.__table__)
_outcomes = cast(Table, LeadOutcome.__table__)
# The ids' range bounds the rows the planner reads: without it, it hashes the whole
# table for each batch (the rows' count is unknown to it, 1,000 by default), which a
# full rescore runs 100 times over a table growing to 100,000 rows.
_UPDATE_SCORES_PG = Prepared(
    text(
        "UPDATE scoring_leads AS l SET score = v.score, model_id = :model_id, scored_at = :at "
        "FROM unnest(CAST(:ids AS text[]), CAST(:scores AS float8[])) AS v(subject_id, score) "
        "WHERE l.subject_id = v.subject_id AND l.subject_id BETWEEN :first AND :last"
    )
)
# PostgreSQL: rows as column arrays (unnest), one statement whatever the count, instead
# of a pipeline of one statement per row.
_INSERT_LEADS_PG = text(
    "INSERT INTO scoring_leads (subject_id, stage, score, scored_at, stage_since) "
    "SELECT sid, :stage, 0, :at, :at FROM unnest(CAST(:ids AS text[])) AS ids(sid) "
    "ON CONFLICT DO NOTHING RETURNING subject_id"
)
_WIDEN_PURPOSES = (
    update(_attrs).where(_attrs.c.id == bindparam("row_id")).values(purposes=bindparam("purposes"))
)
_MODELS: dict[str, ScoringModel] = {}
# The model in force per database (engine), as this process last read it: confirmed by a
# column of the first query of a hot path (LATEST_MODEL_KEY), so a model loaded by
# another process is used from its next request on, without a statement of its own.
_IN_FORCE: WeakKeyDictionary[Engine, ActiveModel] = WeakKeyDictionary()
_LATEST_MODEL = (
    select(ScoringModelVersion.id, ScoringModelVersion.sha256)
    .order_by(ScoringModelVersion.id.desc())
    .limit(1)
)


def _among(connection: Connection, column: Any, ids: Sequence[str]) -> Any:
    """``column IN ids``; on PostgreSQL ``= ANY(array)``: one parameter, one statement text
    whatever the count (an IN list of 1,000 is parsed afresh every time)."""
    if connection.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))
    return column.in_(list(ids))


def _per_dialect(build: Callable[[Callable[[Any], Any]], Any]) -> dict[str, Any]:
    """A statement built once per dialect at import: ``build`` gets ``among(column)``,
    ``column IN :ids`` on SQLite (an expanding parameter) and ``column = ANY(:ids)`` on
    PostgreSQL (one array parameter, one statement text whatever the count)."""
    return {
        "sqlite": build(lambda column: column.in_(bindparam("ids", expanding=True))),
        "postgresql": build(lambda column: column == any_(bindparam("ids", type_=ARRAY(String)))),
    }


# On the driver's cursor (scoring.services' hot statements: every submission and event
# batch runs them). Locked in id order, like the inserts before it: two writers never
# wait on each other in opposite orders (no deadlock).
def _prepared_per_dialect(build: Callable[[Callable[[Any], Any]], Any]) -> dict[str, Prepared]:
    """:func:`_per_dialect`, each statement run on the driver's cursor (:class:`Prepared`)."""
    return {dialect: Prepared(statement) for dialect, statement in _per_dialect(build).items()}


_LEAD_ROWS = {
    dialect: Prepared(statement.with_for_update() if dialect == "postgresql" else statement)
    for dialect, statement in _per_dialect(
        lambda among: select(_leads).where(among(_leads.c.subject_id)).order_by(_leads.c.subject_id)
    ).items()
}
# SQLite: rows as plain tuples on the driver's executemany, times as UTCDateTime stores
# them (a full rescore inserts or updates every lead's row).
_INSERT_LEADS_SQLITE = (
    "INSERT INTO scoring_leads (subject_id, stage, score, model_id, scored_at, stage_since) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_UPDATE_SCORE_SQLITE = (
    "UPDATE scoring_leads SET score = ?, model_id = ?, scored_at = ? WHERE subject_id = ?"
)
_PERMITTED = _prepared_per_dialect(
    lambda among: select(_cs.c.subject_id, _cs.c.purpose_key).where(
        among(_cs.c.subject_id), _cs.c.permitted
    )
)
_ATTRIBUTES = _prepared_per_dialect(
    lambda among: select(_attrs).where(among(_attrs.c.subject_id)).order_by(_attrs.c.id)
)
_EVENT_FACTS = _per_dialect(
    lambda among: select(
        _events.c.subject_id,
        _events.c.id,
        _events.c.type,
        _events.c.occurred_at,
        _events.c.consent_seq,
    ).where(among(_events.c.subject_id))
)
_BANT = _prepared_per_dialect(
    lambda among: select(_qual).where(
        _qual.c.id.in_(
            select(func.max(_qual.c.id))
            .where(among(_qual.c.subject_id))
            .group_by(_qual.c.subject_id, _qual.c.field)
            .scalar_subquery()
        ),
        _qual.c.value.is_not(None),
    )
)
_DELETE_POINTS = _prepared_per_dialect(
    lambda among: delete(_points).where(among(_points.c.subject_id))
)
_INSERT_POINTS_SQLITE = (
    "INSERT INTO scoring_points (subject_id, rule, kind, points, source, occurred_at, "
    "consent_seq) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_STORED_POINTS = _prepared_per_dialect(
    lambda among: (
        select(
            _points.c.subject_id,
            _points.c.rule,
            _points.c.kind,
            _points.c.points,
            _points.c.source,
            _points.c.occurred_at,
            _points.c.consent_seq,
        )
        .where(among(_points.c.subject_id))
        .order_by(_points.c.id)
    )
)
_EVENT_COLUMNS = (
    _events.c.subject_id,
    _events.c.id,
    _events.c.type,
    _events.c.occurred_at,
    _events.c.consent_seq,
)
_EVENTS_OF_TYPES = {
    "sqlite": Prepared(
        select(*_EVENT_COLUMNS).where(
            _events.c.subject_id.in_(bindparam("ids", expanding=True)),
            _events.c.type.in_(bindparam("types", expanding=True)),
            _events.c.occurred_at >= bindparam("since"),
        )
    ),
    "postgresql": Prepared(
        select(*_EVENT_COLUMNS).where(
            _events.c.subject_id == any_(bindparam("ids", type_=ARRAY(String))),
            _events.c.type == any_(bindparam("types", type_=ARRAY(String))),
            _events.c.occurred_at >= bindparam("since"),
        )
    ),
}
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_TOUCH_LEADS = _prepared_per_dialect(
    lambda among: update(_leads).where(among(_leads.c.subject_id)).values(scored_at=bindparam("at"))
)
_INSERT_POINTS_PG = text(
    "INSERT INTO scoring_points (subject_id, rule, kind, points, source, occurred_at, "
    "consent_seq) SELECT * FROM unnest(CAST(:subject_ids AS text[]), CAST(:rules AS text[]), "
    "CAST(:kinds AS text[]), CAST(:points AS float8[]), CAST(:sources AS text[]), "
    "CAST(:occurred_at AS timestamptz[]), CAST(:consent_seqs AS bigint[]))"
)

_COPY_POINTS_PG = (
    "COPY scoring_points (subject_id, rule, kind, points, source, occurred_at, consent_seq) "
    "FROM STDIN"
)
_COPY_POINTS_FROM = 500  # rows; fewer (an event batch's) go as one INSERT over arrays


class ConsentMissing(Conflict):
    """The lead has no live consent for the gating purpose."""

    code = "consent_missing"


@dataclass(frozen=True, slots=True)
class ActiveModel:
    id: int
    model: ScoringModel
    sha256: str = ""

    @property
    def key(self) -> str:
        """What :data:`LATEST_MODEL_KEY` reads while this model is in force."""
        return f"{self.id}:{self.sha256}"


@dataclass(frozen=True, slots=True)
class EventIn:
    """A checked event from ``POST /api/events`` (``index``: its place in the batch)."""

    index: int
    id: str
    email: str
    type: str
    occurred_at: datetime
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IntakeResult:
    accepted: int
    duplicates: int
    dropped: int


@dataclass(frozen=True, slots=True)
class LeadScore:
    subject_id: str
    stage: str
    score: float
    points: list[engine.Point]
    moved: bool = False


def active_model(session: Transaction) -> ActiveModel | None:
    """The model in force (the latest loaded), parsed once per process per version."""
    connection = connection_of(session)
    row = connection.execute(_LATEST_MODEL).first()
    if row is None:
        _IN_FORCE.pop(connection.engine, None)
        return None
    # Keyed by content hash, not id: several databases (tests, tools) may share a process.
    model = _MODELS.get(row.sha256)
    if model is None:
        definition = connection.execute(
            select(ScoringModelVersion.definition).where(ScoringModelVersion.id == row.id)
        ).scalar_one()
        model = _MODELS[row.sha256] = model_from_json(definition)
    active = _IN_FORCE[connection.engine] = ActiveModel(row.id, model, row.sha256)
    return active


def cached_model(connection: Connection) -> ActiveModel | None:
    """The model this process last found in force on ``connection``'s database, without
    a statement: the caller confirms it with :func:`confirmed_model` and the
    :data:`LATEST_MODEL_KEY` column of its first query (no extra round trip)."""
    return _IN_FORCE.get(connection.engine)


def confirmed_model(
    connection: Connection, cached: ActiveModel | None, latest: str | None
) -> ActiveModel | None:
    """``cached`` if ``latest`` (a :data:`LATEST_MODEL_KEY` value read in this
    transaction) names it; otherwise the model in force, read again."""
    if cached is not None and latest == cached.key:
        return cached
    return active_model(connection)


def lifecycle_in_force(session: Transaction) -> Lifecycle:
    """The lifecycle of the model in force (the fixed chain while none is loaded)."""
    active = active_model(session)
    return active.model.lifecycle if active is not None else DEFAULT_LIFECYCLE


def stage_named(lifecycle: Lifecycle, raw: object, *, beyond_start: bool = False) -> str:
    """The stage of ``lifecycle`` named ``raw`` (any case); :class:`InvalidInput` on the
    field ``stage`` naming the stages otherwise (``beyond_start``: the first is refused)."""
    stage = lifecycle.parse(raw)
    names = lifecycle.beyond_start if beyond_start else lifecycle.stages
    if stage is None or stage not in names:
        raise InvalidInput(
            "stage: must be one of " + ", ".join(names),
            fields={"stage": "must be one of " + ", ".join(names)},
        )
    return stage


def require_model(session: Transaction) -> ActiveModel:
    active = active_model(session)
    if active is None:
        raise NotFound("no scoring model is loaded: add [scoring] to site.toml and load it")
    return active


# --- rescoring one lead -----------------------------------------------------------------


def _lock_lead(connection: Connection, subject_id: str, start: str) -> Any:
    return _lock_leads(connection, [subject_id], utcnow(), start=start)[0][subject_id]


@dataclass(frozen=True, slots=True)
class _NewLead:
    """The scoring row of a lead this transaction just created (as it was inserted)."""

    subject_id: str
    stage: str
    score: float
    scored_at: datetime
    stage_since: datetime
    model_id: int | None = None
    recycled_score: float | None = None
    inserted: bool = True
    lead_types: str | None = None


def _lock_leads(
    connection: Connection,
    subject_ids: list[str],
    now: datetime,
    *,
    start: str,
    defer_new: bool = False,
    fresh: Collection[str] = (),
) -> tuple[dict[str, Any], set[str]]:
    """The leads' scoring rows, created at stage ``start`` (the lifecycle's first) if
    new, locked for this transaction (so two writers scoring one lead queue, and a
    threshold is crossed once); and the ids
    of the leads this call created (new to scoring: no points, events or answers yet).

    ``defer_new``: on SQLite (one writer: nothing to lock), the new leads' rows are not
    inserted here but by :func:`_store_scores`, with their first score. ``fresh``: leads
    created in this transaction, which cannot have a row yet (not looked for)."""
    dialect = connection.dialect.name
    leads: dict[str, Any]
    if dialect == "postgresql":
        created = set(
            connection.execute(
                _INSERT_LEADS_PG, {"ids": list(subject_ids), "at": now, "stage": start}
            ).scalars()
        )
        # A row just inserted is this transaction's, locked, and as the insert wrote it.
        leads = {sid: _NewLead(sid, start, 0.0, now, now) for sid in created}
        known = [sid for sid in subject_ids if sid not in created]
        if known:
            leads.update(
                (row.subject_id, row)
                for row in _LEAD_ROWS[dialect].execute(connection, {"ids": known})
            )
        return leads, created
    # SQLite: this transaction is the one writer (BEGIN IMMEDIATE); read first and
    # insert only the leads new to scoring (most batches have none), whose rows are then
    # known without reading them back.
    known = [sid for sid in subject_ids if sid not in fresh]
    leads = {}
    if known:
        leads = {
            row.subject_id: row for row in _LEAD_ROWS[dialect].execute(connection, {"ids": known})
        }
    missing = [sid for sid in subject_ids if sid not in leads]
    if missing:
        new = [_NewLead(sid, start, 0.0, now, now, inserted=not defer_new) for sid in missing]
        leads.update((lead.subject_id, lead) for lead in new)
        if defer_new:
            return leads, set(missing)
        _insert_lead_rows(
            connection,
            [
                {
                    "subject_id": lead.subject_id,
                    "stage": lead.stage,
                    "score": lead.score,
                    "model_id": None,
                    "scored_at": lead.scored_at,
                    "stage_since": lead.stage_since,
                }
                for lead in new
            ],
        )
    return leads, set(missing)


def _facts(
    connection: Connection,
    subject_ids: list[str],
    *,
    events: bool = True,
    permitted: Mapping[str, set[str]] | None = None,
) -> tuple[dict[str, list[engine.AttributeFact]], dict[str, list[engine.EventFact]]]:
    """The leads' answers (only those collected for a purpose still permitted) and, if
    ``events``, their events. ``permitted``: the purposes each lead permits, if the
    caller read them already."""
    dialect, params = connection.dialect.name, {"ids": list(subject_ids)}
    kept = _ATTRIBUTES[dialect].execute(connection, params)
    if permitted is None:
        permitted = defaultdict(set)
        # Read only where there are answers to check (a full rescore: most leads have
        # only events).
        for row in _PERMITTED[dialect].execute(connection, params) if kept else ():
            permitted[row.subject_id].add(row.purpose_key)
    attributes: dict[str, list[engine.AttributeFact]] = defaultdict(list)
    for r in kept:
        if permitted.get(r.subject_id, set()).intersection(orjson.loads(r.purposes)):
            attributes[r.subject_id].append(
                engine.AttributeFact(
                    r.kind, r.name, r.value, r.source_ref, r.occurred_at, r.consent_seq
                )
            )
    facts: dict[str, list[engine.EventFact]] = defaultdict(list)
    if events:
        for r in connection.execute(_EVENT_FACTS[dialect], params):
            facts[r.subject_id].append(engine.EventFact(r.id, r.type, r.occurred_at, r.consent_seq))
    # Current BANT values count as fields "bant.<name>" (scoring.qualification); sales
    # recorded them under a live gating consent, and they are deleted with it.
    for r in _BANT[dialect].execute(connection, params):
        attributes[r.subject_id].append(
            engine.AttributeFact(
                "field", f"bant.{r.field}", r.value, "bant", r.recorded_at, r.consent_seq
            )
        )
    return attributes, facts


def _stored_points(connection: Connection, subject_ids: list[str]) -> dict[str, list[engine.Point]]:
    """The leads' stored points, in the order they were computed (each id is a key)."""
    stored: dict[str, list[engine.Point]] = {sid: [] for sid in subject_ids}
    if subject_ids:
        rows = _STORED_POINTS[connection.dialect.name].execute(
            connection, {"ids": list(subject_ids)}
        )
        for r in rows:
            stored[r.subject_id].append(
                engine.Point(r.rule, r.kind, r.points, r.source, r.occurred_at, r.consent_seq)
            )
    return stored


def _events_of_types(
    connection: Connection,
    subject_ids: list[str],
    needs: Mapping[str, Mapping[str, datetime | None]],
) -> dict[str, list[engine.EventFact]]:
    """The leads' stored events of the types ``needs`` names (per lead: type → earliest
    time that counts), in one statement for all of them."""
    found: dict[str, list[engine.EventFact]] = defaultdict(list)
    if not subject_ids:
        return found
    types = sorted({t for sid in subject_ids for t in needs[sid]})
    times = [since for sid in subject_ids for since in needs[sid].values()]
    since = _EPOCH if any(t is None for t in times) else min(t for t in times if t is not None)
    rows = _EVENTS_OF_TYPES[connection.dialect.name].execute(
        connection, {"ids": list(subject_ids), "types": types, "since": since}
    )
    for r in rows:
        found[r.subject_id].append(engine.EventFact(r.id, r.type, r.occurred_at, r.consent_seq))
    return found


def rescore_leads(
    session: Transaction,
    active: ActiveModel,
    subject_ids: Iterable[str],
    *,
    now: datetime | None = None,
) -> dict[str, LeadScore]:
    """Recompute permissioned leads' points, scores and stages, in a few statements for
    the whole set (the caller checked their consent, holding the gating state locked).
    A score crossing a threshold moves the lead forward, records the move and queues the
    hand-off in this transaction."""
    connection = connection_of(session)
    ids = sorted(set(subject_ids))
    if not ids:
        return {}
    now = now or utcnow()
    # On SQLite the rows of leads new to scoring are inserted with their first score.
    leads, created = _lock_leads(
        connection, ids, now, start=active.model.lifecycle.start, defer_new=True
    )
    return _rescore_locked(connection, active, leads, now, created)


def _rescore_locked(
    connection: Connection,
    active: ActiveModel,
    leads: Mapping[str, Any],
    now: datetime,
    created: Collection[str] = (),
) -> dict[str, LeadScore]:
    """:func:`rescore_leads` of ``leads``, their rows as :func:`_lock_leads` locked them
    (``created``: the leads it created): every fact of each lead read and scored again.
    Of the events, only those a rule counts are kept (:mod:`scoring.counted_events`,
    the engine's count over the batch in one pass)."""
    ids = sorted(leads)
    if not ids:
        return {}
    model = active.model
    attributes, _ = _facts(connection, ids, events=False)
    counted = counted_events(connection, model, ids, now)
    computed = {
        sid: engine.score_lead(model, attributes[sid], (), now)
        + engine.counted_points(model, counted.get(sid, ()), now)
        for sid in ids
    }
    unstored = [
        sid for sid in created if isinstance(leads[sid], _NewLead) and not leads[sid].inserted
    ]
    return _store_scores(connection, active, leads, computed, {}, now, unstored)


@dataclass(frozen=True, slots=True)
class FullRescore:
    """What :func:`rescore_in_full` did: points stored, leads moved by a threshold."""

    points: int
    moved: int


def rescore_in_full(
    session: Transaction, active: ActiveModel, subject_ids: Iterable[str], now: datetime
) -> FullRescore:
    """:func:`rescore_leads` for ``zeroparty score`` (:mod:`scoring.rescore`): the same
    rows written (points, scores, stages, moves, hand-offs, lead types), without the
    leads' points in memory: the events a behaviour rule counts
    (:func:`scoring.counted_events.counted_rows`) go straight into point rows, each
    worth :func:`scoring.engine.behaviour_value`, and a lead's score is
    :func:`scoring.engine.total_of` its points' values in the engine's order (answers'
    points first, then each rule's, as :func:`scoring.engine.score_lead`)."""
    connection = connection_of(session)
    ids = sorted(set(subject_ids))
    if not ids:
        return FullRescore(0, 0)
    model = active.model
    leads, created = _lock_leads(connection, ids, now, start=model.lifecycle.start, defer_new=True)
    unstored = [
        sid for sid in created if isinstance(leads[sid], _NewLead) and not leads[sid].inserted
    ]
    attributes, _ = _facts(connection, ids, events=False)
    counted = counted_rows(connection, model, ids, now)
    rules, loaded, written = model.behaviour, counted.loaded, counted.as_written
    at = _stored_time(connection)
    # A rule without decay gives every event it counts the same value.
    fixed = [None if r.half_life_days else engine.behaviour_value(r, now, now) for r in rules]
    rows: list[tuple[Any, ...]] = []
    replaced: list[str] = []
    writes = _LeadWrites(active, now, unstored)
    moved = 0
    for sid in ids:
        lead = leads[sid]
        inputs = engine.score_lead(model, attributes[sid], (), now) if sid in attributes else []
        behaviour = [
            (
                i,
                event_id,
                stored_at,
                seq,
                value
                if (value := fixed[i]) is not None
                else engine.behaviour_value(rules[i], loaded(stored_at), now),
            )
            for i, event_id, stored_at, seq in counted.by_lead.get(sid, ())
        ]
        if lead.model_id is not None:
            replaced.append(sid)  # as _store_scores: points not read, all replaced
        rows += [
            (sid, p.rule, p.kind, float(p.points), p.source, at(p.occurred_at), p.consent_seq)
            for p in inputs
        ]
        rows += [
            (sid, rules[i].name, "behaviour", value, f"event:{event_id}", written(stored_at), seq)
            for i, event_id, stored_at, seq, value in behaviour
        ]
        score = engine.total_of([*(p.points for p in inputs), *(b[4] for b in behaviour)])
        _, did_move = writes.score(
            connection,
            sid,
            lead,
            score,
            partial(_rules_that_scored, rules, inputs, behaviour),
        )
        moved += did_move
    writes.insert_new(connection)
    if replaced:
        _DELETE_POINTS[connection.dialect.name].execute(connection, {"ids": replaced})
    _write_point_tuples(connection, rows)
    writes.update_known(connection)
    return FullRescore(len(rows), moved)


def _rules_that_scored(
    rules: Sequence[BehaviourRule],
    inputs: Iterable[engine.Point],
    behaviour: Iterable[tuple[int, str, Any, int, float]],
) -> set[str]:
    """:func:`_scored_rules` of :func:`rescore_in_full`'s points of a lead."""
    return _scored_rules(inputs) | {rules[b[0]].name for b in behaviour if b[4] > 0}


def _rescore_changed(
    connection: Connection,
    active: ActiveModel,
    leads: Mapping[str, Any],
    now: datetime,
    *,
    created: Collection[str],
    new_events: Mapping[str, list[engine.EventFact]] | None = None,
    new_answers: Mapping[str, list[engine.AttributeFact]] | None = None,
    permitted: Mapping[str, set[str]] | None = None,
) -> dict[str, LeadScore]:
    """:func:`_rescore_locked`, reading only what changed, with the same result.

    ``new_events``: the events this transaction stored, by lead; ``new_answers``: the
    answers it stored, by lead (``None``: no answer changed; a lead in it has its
    answers read again unless it is in ``created``, the leads new to scoring, whose
    facts are exactly the new ones). A lead scored before by the model in force keeps
    its stored points and has only its behaviour points carried on
    (:func:`scoring.engine.continued_points`: the events of a rule are read only where
    its stored points cannot tell, e.g. a rule with ``min_count`` above 1); any other
    lead is scored again from all its facts."""
    ids = sorted(leads)
    if not ids:
        return {}
    model = active.model
    new_events = new_events or {}
    computed: dict[str, list[engine.Point]] = {}
    carried: list[str] = []
    full: list[str] = []
    for sid in ids:
        lead = leads[sid]
        if sid in created:
            answers = list(new_answers.get(sid, ())) if new_answers is not None else []
            computed[sid] = engine.score_lead(model, answers, new_events.get(sid, []), now)
        elif lead.model_id == active.id and lead.scored_at <= now:
            carried.append(sid)
        else:
            full.append(sid)
    if full:
        attributes, events = _facts(connection, full, permitted=permitted)
        for sid in full:
            computed[sid] = engine.score_lead(model, attributes[sid], events[sid], now)
    stored = _stored_points(connection, carried)
    needs = {
        sid: engine.types_to_read(model, stored[sid], leads[sid].scored_at, now) for sid in carried
    }
    reading = [sid for sid in carried if needs[sid]]
    read = _events_of_types(connection, reading, needs)
    answered = [sid for sid in carried if new_answers is not None and sid in new_answers]
    if answered:
        attributes, _ = _facts(connection, answered, events=False, permitted=permitted)
    for sid in carried:
        of_type: dict[str, list[engine.EventFact]] = {t: [] for t in needs[sid]}
        for event in read.get(sid, ()):
            if event.type in of_type:
                of_type[event.type].append(event)
        points = engine.continued_points(
            model, stored[sid], new_events.get(sid, []), leads[sid].scored_at, now, of_type
        )
        if sid in answered:
            # Answers changed: fit and quiz points from the answers, before behaviour.
            behaviour = [p for p in points if p.kind == "behaviour"]
            points = engine.score_lead(model, attributes[sid], [], now) + behaviour
        computed[sid] = points
    unstored = [
        sid for sid in created if isinstance(leads[sid], _NewLead) and not leads[sid].inserted
    ]
    return _store_scores(connection, active, leads, computed, stored, now, unstored)


def _store_scores(
    connection: Connection,
    active: ActiveModel,
    leads: Mapping[str, Any],
    computed: Mapping[str, list[engine.Point]],
    stored: Mapping[str, list[engine.Point]],
    now: datetime,
    unstored: Collection[str] = (),
) -> dict[str, LeadScore]:
    """Store the leads' points (``stored``: those known to be in the table, per lead;
    unchanged points stay, new ones after them are added, anything else is replaced),
    scores and stages; a score crossing a threshold moves the lead forward, records the
    move and queues the hand-off. ``unstored``: new leads whose rows
    :func:`_lock_leads` left to insert here, with their first score."""
    point_rows: list[dict[str, Any]] = []
    replaced: list[str] = []
    writes = _LeadWrites(active, now, unstored)
    scored: dict[str, LeadScore] = {}
    for sid in sorted(computed):
        points = computed[sid]
        lead = leads[sid]
        before = stored.get(sid)
        if before is None:
            # Not read: a lead never scored (no model yet: its row was just created)
            # has no points. An import scores thousands of new leads in one
            # transaction, where PostgreSQL plans a delete as a scan of every point
            # written so far, chunk after chunk.
            if lead.model_id is not None:
                replaced.append(sid)
            added = points
        elif points[: len(before)] == before:
            added = points[len(before) :]
        else:
            replaced.append(sid)
            added = points
        point_rows += [
            {
                "subject_id": sid,
                "rule": p.rule,
                "kind": p.kind,
                "points": p.points,
                "source": p.source,
                "occurred_at": p.occurred_at,
                "consent_seq": p.consent_seq,
            }
            for p in added
        ]
        score = engine.total(points)
        stage, moved = writes.score(connection, sid, lead, score, partial(_scored_rules, points))
        scored[sid] = LeadScore(sid, stage, score, points, moved)
    dialect = connection.dialect.name
    writes.insert_new(connection)
    if replaced:
        _DELETE_POINTS[dialect].execute(connection, {"ids": replaced})
    if point_rows:
        _insert_points(connection, point_rows)
    writes.update_known(connection)
    return scored


def _scored_rules(points: Iterable[engine.Point]) -> set[str]:
    """The rules that gave a lead points (what a lead type's ``rules`` ask for)."""
    return {p.rule for p in points if p.points > 0}


@dataclass
class _LeadWrites:
    """The scoring rows' side of a store: each lead's new score (:meth:`score`, which
    moves it forward at a threshold and gives it the lead types it earns), then the
    rows written a statement for all (:meth:`insert_new`, :meth:`update_known`).
    ``unstored``: new leads whose rows :func:`_lock_leads` left to insert here."""

    active: ActiveModel
    now: datetime
    unstored: Collection[str]
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    typed: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Asked once per lead: a set, not the caller's list (a batch of 1,000 new leads
        # scanned a 1,000-item list for each).
        self.unstored = frozenset(self.unstored)

    def score(
        self,
        connection: Connection,
        sid: str,
        lead: Any,
        score: float,
        scored_rules: Callable[[], set[str]],
    ) -> tuple[str, bool]:
        """Take ``score`` for ``lead`` (its locked row); its stage after, and whether
        the score moved it. ``scored_rules``: the rules that gave it points."""
        model, now = self.active.model, self.now
        rank = model.lifecycle.rank
        stage, reached = str(lead.stage), model.stage_for(score)
        held = lead.recycled_score is not None and score <= lead.recycled_score
        if rank(reached) > rank(stage) and not held:
            threshold = dict(model.thresholds)[reached]
            _move(
                connection,
                model,
                sid,
                stage,
                reached,
                Actor.THRESHOLD.value,
                f"score {score:g} reached the {reached} threshold ({threshold:g})",
                score,
                now,
            )
            if sid not in self.unstored:
                connection.execute(
                    update(_leads)
                    .where(_leads.c.subject_id == sid)
                    .values(stage=reached, stage_since=now, recycled_score=None)
                )
            stage, moved = reached, True
        else:
            moved = False
        if sid in self.unstored:
            self.inserts.append(
                {
                    "subject_id": sid,
                    "stage": stage,
                    "score": score,
                    "model_id": self.active.id,
                    "scored_at": now,
                    "stage_since": now,
                }
            )
        elif score == lead.score and lead.model_id == self.active.id:
            self.unchanged.append(sid)
        else:
            self.updates.append(
                {"sid": sid, "score": score, "model_id": self.active.id, "scored_at": now}
            )
        if model.lead_types:
            earned = _earned_types(model, lead.lead_types, score, scored_rules(), now)
            if earned is not None:
                self.typed.append({"sid": sid, "types": earned})
        return stage, moved

    def insert_new(self, connection: Connection) -> None:
        if self.inserts:
            _insert_lead_rows(connection, self.inserts)

    def update_known(self, connection: Connection) -> None:
        dialect, now = connection.dialect.name, self.now
        if self.unchanged:
            # Same score, same model: one statement moves their scoring time.
            _TOUCH_LEADS[dialect].execute(connection, {"ids": self.unchanged, "at": now})
        if self.updates and dialect == "postgresql":
            # One statement over two arrays rather than a pipeline of one UPDATE per lead.
            ids = [u["sid"] for u in self.updates]
            _UPDATE_SCORES_PG.execute(
                connection,
                {
                    "ids": ids,
                    "scores": [float(u["score"]) for u in self.updates],
                    "model_id": self.active.id,
                    "at": now,
                    "first": min(ids),
                    "last": max(ids),
                },
            )
        elif self.updates:
            at = _sqlite_times()
            _sqlite_many(
                connection,
                _UPDATE_SCORE_SQLITE,
                [(u["score"], u["model_id"], at(u["scored_at"]), u["sid"]) for u in self.updates],
            )
        if self.typed:
            connection.execute(_UPDATE_TYPES, self.typed)


_UPDATE_TYPES = (
    update(_leads)
    .where(_leads.c.subject_id == bindparam("sid"))
    .values(lead_types=bindparam("types"))
)


def held_types(raw: str | None) -> dict[str, dict[str, str]]:
    """The lead types a scoring row holds (its ``lead_types`` column)."""
    return cast(dict[str, dict[str, str]], orjson.loads(raw)) if raw else {}


def _earned_types(
    model: ScoringModel, raw: str | None, score: float, scored_rules: set[str], now: datetime
) -> str | None:
    """The lead's types with those it earns now added (JSON), ``None`` if none is new
    (``scored_rules``: the rules that gave it points). A type once earned is kept, like
    the stage a threshold reached."""
    held = held_types(raw)
    new = [t for t in model.lead_types if t.name not in held and t.earned(score, scored_rules)]
    if not new:
        return None
    for lead_type in new:
        because = []
        if lead_type.min_score is not None:
            because.append(f"score {score:g} reached {lead_type.min_score:g}")
        if lead_type.rules:
            because.append("rules " + ", ".join(lead_type.rules) + " scored")
        held[lead_type.name] = {
            "at": format_timestamp(now),
            "by": Actor.THRESHOLD.value,
            "reason": " and ".join(because),
        }
    return orjson.dumps(held).decode()


def give_lead_type(
    session: Session, subject_id: str, name: str, *, actor: str, reason: str
) -> tuple[bool, LeadTypes]:
    """A lead type given by a person (sales marks an SQL-from-service). Needs a live
    gating consent; returns whether it is new, and the lead's types after."""
    connection = session.connection()
    active = require_model(connection)
    lead_type = active.model.lead_type(name)
    if lead_type is None:
        known = ", ".join(t.name for t in active.model.lead_types) or "none declared"
        raise InvalidInput(f"type: no lead type {name!r} ({known})", fields={"type": "unknown"})
    gate = consent.gate_states(connection, [subject_id], active.model.purpose, lock=True).get(
        subject_id
    )
    if gate is None or not gate.permitted:
        raise ConsentMissing(
            f"this lead has no live consent for {active.model.purpose}: it holds no type"
        )
    lead = _lock_lead(connection, subject_id, active.model.lifecycle.start)
    held = held_types(lead.lead_types)
    if name in held:
        return False, LeadTypes(subject_id, held)
    held[name] = {"at": format_timestamp(utcnow()), "by": actor[:100], "reason": reason}
    connection.execute(_UPDATE_TYPES, {"sid": subject_id, "types": orjson.dumps(held).decode()})
    return True, LeadTypes(subject_id, held)


@dataclass(frozen=True, slots=True)
class LeadTypes:
    subject_id: str
    held: dict[str, dict[str, str]]

    def as_json(self) -> list[dict[str, str]]:
        return [{"type": name, **given} for name, given in self.held.items()]


def _insert_lead_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """New leads' scoring rows, on SQLite (the one writer: :func:`_lock_leads`)."""
    at = _sqlite_times()
    _sqlite_many(
        connection,
        _INSERT_LEADS_SQLITE,
        [
            (
                r["subject_id"],
                r["stage"],
                float(r["score"]),
                r["model_id"],
                at(r["scored_at"]),
                at(r["stage_since"]),
            )
            for r in rows
        ],
    )


def _sqlite_many(connection: Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """``sql`` (SQLite's ``?`` style) once for each of ``rows``, on the driver's cursor:
    the rows are plain tuples already, and a SQLAlchemy execution around the driver's
    ``executemany`` (events, a result object: about 40 µs) would cost more than a hot
    request's one-row write."""
    with driver_cursor(connection) as cursor:
        cursor.executemany(sql, rows)


def _sqlite_times() -> Callable[[datetime], str]:
    """:func:`sqlite_time`, each moment formatted once (the rows of one store mostly
    share the store's ``now``)."""
    formatted: dict[datetime, str] = {}

    def at(moment: datetime) -> str:
        text = formatted.get(moment)
        if text is None:
            text = formatted[moment] = sqlite_time(moment)
        return text

    return at


def _insert_points(connection: Connection, rows: list[dict[str, Any]]) -> None:
    postgresql = connection.dialect.name == "postgresql"
    if not postgresql or len(rows) >= _COPY_POINTS_FROM:
        at = _stored_time(connection)
        _write_point_tuples(
            connection,
            [
                (
                    r["subject_id"],
                    r["rule"],
                    r["kind"],
                    float(r["points"]),
                    r["source"],
                    at(r["occurred_at"]),
                    r["consent_seq"],
                )
                for r in rows
            ],
        )
        return
    # PostgreSQL, a few rows (an event batch's): column arrays, one statement.
    connection.execute(
        _INSERT_POINTS_PG,
        {
            "subject_ids": [r["subject_id"] for r in rows],
            "rules": [r["rule"] for r in rows],
            "kinds": [r["kind"] for r in rows],
            "points": [float(r["points"]) for r in rows],
            "sources": [r["source"] for r in rows],
            "occurred_at": [r["occurred_at"] for r in rows],
            "consent_seqs": [r["consent_seq"] for r in rows],
        },
    )


def _stored_time(connection: Connection) -> Callable[[datetime], Any]:
    """A time as :func:`_write_point_tuples` takes it: UTCDateTime's text on SQLite."""
    return sqlite_time if connection.dialect.name != "postgresql" else _as_given


def _as_given(moment: datetime) -> datetime:
    return moment


def _write_point_tuples(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Point rows as tuples in the table's order (subject_id, rule, kind, points,
    source, occurred_at, consent_seq), times as the driver stores them. SQLite: the
    driver's executemany (a full rescore writes hundreds of thousands); PostgreSQL: COPY,
    whose rows psycopg formats in C (column arrays are built in Python element by
    element)."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        _sqlite_many(connection, _INSERT_POINTS_SQLITE, list(rows))
        return
    with driver_cursor(connection) as cursor, cursor.copy(_COPY_POINTS_PG) as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True, slots=True)
class DueResult:
    scored: dict[str, LeadScore]
    changed: int
    """How many of them have another score than the one stored before."""


def rescore_due(
    connection: Connection, active: ActiveModel, subject_ids: Sequence[str], now: datetime
) -> DueResult:
    """Rescore leads the scheduled pass found due (:mod:`scoring.upkeep`), at ``now``:
    only those whose gating consent is live (read under lock, so a withdrawal committed
    meanwhile wins), incrementally like an event's rescoring with no new event."""
    gates = consent.gate_states(connection, subject_ids, active.model.purpose, lock=True)
    live = sorted(sid for sid in subject_ids if (g := gates.get(sid)) is not None and g.permitted)
    if not live:
        return DueResult({}, 0)
    leads, _ = _lock_leads(connection, live, now, start=active.model.lifecycle.start)
    before = {sid: leads[sid].score for sid in live}
    scored = _rescore_changed(connection, active, leads, now, created=())
    return DueResult(scored, sum(scored[sid].score != before[sid] for sid in scored))


def demote_idle(
    connection: Connection, active: ActiveModel, subject_ids: Sequence[str], now: datetime
) -> int:
    """Recycle to the lifecycle's first stage the leads the scheduled pass found idle
    (:mod:`scoring.upkeep`), each checked again under its row lock (still at that stage
    since before the cutoff, consent live); the move is recorded with its reason and
    pending hand-offs are cancelled. Returns how many moved."""
    days = active.model.demote_after_days
    if days is None or not subject_ids:
        return 0
    cutoff = now - timedelta(days=days)
    gates = consent.gate_states(connection, subject_ids, active.model.purpose, lock=True)
    live = sorted(sid for sid in subject_ids if (g := gates.get(sid)) is not None and g.permitted)
    lifecycle = active.model.lifecycle
    leads, _ = _lock_leads(connection, live, now, start=lifecycle.start) if live else ({}, set())
    # Under the lock: an event, answer or BANT value that committed after the caller
    # found these leads idle keeps its lead where it is.
    activity = (
        (_events, _events.c.occurred_at),
        (_attrs, _attrs.c.occurred_at),
        (_qual, _qual.c.recorded_at),
    )
    busy: set[str] = set()
    for table, column in activity if live else ():
        busy.update(
            connection.execute(
                select(table.c.subject_id)
                .where(table.c.subject_id.in_(live), column > cutoff)
                .distinct()
            ).scalars()
        )
    moved = 0
    for sid in live:
        lead = leads[sid]
        if sid in busy:
            continue
        stage = str(lead.stage)
        if lifecycle.rank(stage) <= 1 or lead.stage_since > cutoff:
            continue
        reason = (
            f"no activity for {days:g} days (no event, answer, BANT value or stage move "
            f"since {format_timestamp(cutoff)}): recycled to {lifecycle.start} at score "
            f"{lead.score:g}"
        )
        _move(
            connection, active.model, sid, stage, lifecycle.start, Actor.INACTIVITY.value,
            reason, lead.score, now,
        )  # fmt: skip
        connection.execute(
            update(_leads)
            .where(_leads.c.subject_id == sid)
            .values(stage=lifecycle.start, stage_since=now, recycled_score=lead.score)
        )
        _cancel_webhooks(connection, sid, "demoted")
        moved += 1
    return moved


def rescore_lead(
    session: Transaction,
    active: ActiveModel,
    subject_id: str,
    *,
    now: datetime | None = None,
) -> LeadScore:
    """:func:`rescore_leads` for one lead."""
    return rescore_leads(session, active, [subject_id], now=now)[subject_id]


def _move(
    connection: Connection,
    model: ScoringModel,
    subject_id: str,
    old: str,
    new: str,
    actor: str,
    reason: str,
    score: float | None,
    now: datetime,
) -> None:
    """Record a stage move; a forward move into a hand-off stage queues its webhook."""
    connection.execute(
        insert(_changes).values(
            subject_id=subject_id,
            from_stage=old,
            to_stage=new,
            actor=actor[:100],
            reason=reason,
            score=score,
            created_at=now,
        )
    )
    rank = model.lifecycle.rank
    if rank(new) > rank(old) and any(rank(old) < rank(s) <= rank(new) for s in model.handoff):
        connection.execute(
            insert(_hooks).values(
                id=f"msg_{uuid.uuid4().hex}",
                subject_id=subject_id,
                stage=new,
                created_at=now,
                attempts=0,
                next_attempt_at=now,
            )
        )


# --- events -------------------------------------------------------------------------------


_SUBJECTS_BY_EMAIL = Prepared(
    select(_profiles.c.email, _profiles.c.subject_id, LATEST_MODEL_KEY).where(
        _profiles.c.email.in_(bindparam("emails", expanding=True))
    )
)
_SEEN_EVENTS = Prepared(
    select(_events.c.id).where(_events.c.id.in_(bindparam("ids", expanding=True)))
)
# PostgreSQL: one parameter (an array) and one statement text whatever the batch size.
_SUBJECTS_BY_EMAIL_PG = Prepared(
    select(_profiles.c.email, _profiles.c.subject_id, LATEST_MODEL_KEY).where(
        _profiles.c.email == any_(bindparam("emails", type_=ARRAY(String)))
    )
)
_SEEN_EVENTS_PG = Prepared(
    select(_events.c.id).where(_events.c.id == any_(bindparam("ids", type_=ARRAY(String))))
)
# A retry racing its first attempt (another process, PostgreSQL) waits on the unique id
# and then inserts nothing, rather than failing the batch.
_INSERT_EVENTS_SQLITE = (
    "INSERT INTO scoring_events "
    "(id, subject_id, type, occurred_at, received_at, properties, consent_seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)


_INSERT_EVENTS_PG = text(
    "INSERT INTO scoring_events "
    "(id, subject_id, type, occurred_at, received_at, properties, consent_seq) "
    "SELECT id, subject_id, type, occurred_at, :received_at, properties, consent_seq "
    "FROM unnest(CAST(:ids AS text[]), CAST(:subject_ids AS text[]), CAST(:types AS text[]), "
    "CAST(:occurred_at AS timestamptz[]), CAST(:properties AS text[]), "
    "CAST(:consent_seqs AS bigint[])) "
    "AS v(id, subject_id, type, occurred_at, properties, consent_seq) "
    "ON CONFLICT DO NOTHING RETURNING id"
)


def _count_dropped_stmt(dialect: Any) -> Any:
    stmt = dialect.insert(_dropped).values(
        day=bindparam("day"), type=bindparam("type"), count=bindparam("count")
    )
    return stmt.on_conflict_do_update(
        index_elements=[_dropped.c.day, _dropped.c.type],
        set_={"count": _dropped.c.count + stmt.excluded.count},
    )


_COUNT_DROPPED = {
    "sqlite": _count_dropped_stmt(sqlite),
    "postgresql": _count_dropped_stmt(postgresql),
}


def _subject_ids(
    connection: Connection, emails: Iterable[str]
) -> tuple[dict[str, str], str | None]:
    """The leads of ``emails`` (email → id), and :data:`LATEST_MODEL_KEY` (``None``
    when no email is known)."""
    pg = connection.dialect.name == "postgresql"
    stmt = _SUBJECTS_BY_EMAIL_PG if pg else _SUBJECTS_BY_EMAIL
    subjects: dict[str, str] = {}
    latest: str | None = None
    for email, subject_id, model_key in stmt.execute(connection, {"emails": sorted(set(emails))}):
        subjects[email], latest = subject_id, model_key
    return subjects, latest


def _count_dropped(connection: Connection, dropped: dict[tuple[str, str], int]) -> None:
    connection.execute(
        _COUNT_DROPPED[connection.dialect.name],
        [
            {"day": day, "type": event_type, "count": count}
            for (day, event_type), count in sorted(dropped.items())
        ],
    )


def _insert_events(
    connection: Connection, rows: list[dict[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    """Insert the events; returns the rows inserted (on PostgreSQL, a retry racing its
    first attempt in another transaction inserts nothing for the events that one kept)."""
    if connection.dialect.name != "postgresql":
        # SQLite: this transaction is the one writer; the ids were checked unseen. The
        # driver's executemany of plain tuples, times in the text UTCDateTime stores:
        # no per-row parameter processing.
        received = sqlite_time(now)
        _sqlite_many(
            connection,
            _INSERT_EVENTS_SQLITE,
            [
                (
                    r["id"],
                    r["subject_id"],
                    r["type"],
                    sqlite_time(r["occurred_at"]),
                    received,
                    r["properties"],
                    r["consent_seq"],
                )
                for r in rows
            ],
        )
        return rows
    # PostgreSQL: the rows as column arrays, one statement for the batch.
    inserted = set(
        connection.execute(
            _INSERT_EVENTS_PG,
            {
                "received_at": now,
                "ids": [r["id"] for r in rows],
                "subject_ids": [r["subject_id"] for r in rows],
                "types": [r["type"] for r in rows],
                "occurred_at": [r["occurred_at"] for r in rows],
                "properties": [r["properties"] for r in rows],
                "consent_seqs": [r["consent_seq"] for r in rows],
            },
        ).scalars()
    )
    return [r for r in rows if r["id"] in inserted]


def ingest_events(session: Transaction, events: Sequence[EventIn]) -> IntakeResult:
    """Keep the events whose lead's gating consent is live now and was live when the
    event happened; count the others (no personal data); rescore each lead once.

    All or nothing: an unknown event type or lead refuses the whole batch, naming
    every bad item in ``fields``. A few statements for the whole batch: the leads by
    email, the ids seen before, the leads' gating consent, the inserts, the rescoring
    of the leads touched.
    """
    connection = connection_of(session)
    cached = cached_model(connection)
    subjects, latest = _subject_ids(connection, (e.email for e in events))
    active = confirmed_model(connection, cached, latest)
    if active is None:
        active = require_model(connection)
    known = active.model.event_types
    problems: dict[str, str] = {}
    for event in events:
        if event.type not in known:
            problems[f"events[{event.index}].type"] = (
                f"unknown event type {event.type[:64]!r} (known: {', '.join(sorted(known))})"
            )
        if event.email not in subjects:
            problems[f"events[{event.index}].email"] = "no lead with this email"
    if problems:
        raise InvalidInput(
            f"{len(problems)} problem(s) in the batch; nothing was stored", fields=problems
        )
    seen_stmt = _SEEN_EVENTS_PG if connection.dialect.name == "postgresql" else _SEEN_EVENTS
    seen = {row.id for row in seen_stmt.execute(connection, {"ids": [e.id for e in events]})}
    gates = consent.gate_states(connection, set(subjects.values()), active.model.purpose, lock=True)
    rows: list[dict[str, Any]] = []
    dropped: dict[tuple[str, str], int] = {}
    duplicates = 0
    now = utcnow()
    fresh: list[EventIn] = []
    for event in events:
        if event.id in seen:
            duplicates += 1
            continue
        seen.add(event.id)
        fresh.append(event)
    # Only leads whose consent is live now keep events; for them, was it live then?
    live = {sid: gate for sid, gate in gates.items() if gate.permitted}
    permits = consent.permitting_entries(
        connection,
        active.model.purpose,
        [(subjects[e.email], e.occurred_at) for e in fresh if subjects[e.email] in live],
        live,
    )
    for event in fresh:
        subject_id = subjects[event.email]
        seq = permits.get((subject_id, event.occurred_at))
        if seq is None:
            key = (event.occurred_at.date().isoformat(), event.type)
            dropped[key] = dropped.get(key, 0) + 1
            continue
        rows.append(
            {
                "id": event.id,
                "subject_id": subject_id,
                "type": event.type,
                "occurred_at": event.occurred_at,
                "received_at": now,
                "properties": orjson.dumps(event.properties).decode(),
                "consent_seq": seq,
            }
        )
    if rows:
        stored = _insert_events(connection, rows, now)
        duplicates += len(rows) - len(stored)
        rows = stored
    if dropped:
        _count_dropped(connection, dropped)
    new_events: dict[str, list[engine.EventFact]] = defaultdict(list)
    for row in rows:
        new_events[row["subject_id"]].append(
            engine.EventFact(row["id"], row["type"], row["occurred_at"], row["consent_seq"])
        )
    if new_events:
        # Only the new events are scored: each lead's points are carried on from its
        # stored ones (scoring.engine.continued_points), not recomputed from every event.
        leads, created = _lock_leads(
            connection,
            sorted(new_events),
            now,
            start=active.model.lifecycle.start,
            defer_new=True,
        )
        scored = _rescore_changed(
            connection, active, leads, now, created=created, new_events=new_events
        )
        if active.model.stage_events:
            _move_by_events(connection, active.model, scored, new_events, now)
    return IntakeResult(len(rows), duplicates, sum(dropped.values()))


def _move_by_events(
    connection: Connection,
    model: ScoringModel,
    scored: Mapping[str, LeadScore],
    new_events: Mapping[str, list[engine.EventFact]],
    now: datetime,
) -> None:
    """Move each lead to the furthest stage its new events reach (``stage_events``),
    forward only, recorded with the event that did it; a hand-off stage queues its
    webhook like a threshold does."""
    rank = model.lifecycle.rank
    for sid in sorted(new_events):
        lead = scored.get(sid)
        if lead is None:
            continue
        reached: tuple[str, engine.EventFact] | None = None
        for event in new_events[sid]:
            stage = model.stage_for_event(event.type)
            if stage is not None and (reached is None or rank(stage) > rank(reached[0])):
                reached = (stage, event)
        if reached is None or rank(reached[0]) <= rank(lead.stage):
            continue
        stage, event = reached
        reason = f"event {event.type} ({event.event_id}) moves the lead to {stage}"
        _move(connection, model, sid, lead.stage, stage, Actor.EVENT.value, reason, lead.score, now)
        connection.execute(
            update(_leads)
            .where(_leads.c.subject_id == sid)
            .values(stage=stage, stage_since=now, recycled_score=None)
        )


# --- answers from capture and imports --------------------------------------------------------


@dataclass(slots=True)
class _KeptAnswer:
    """A lead's answer to one field or question while a batch is applied: stored as the
    rows ``row_ids``, or new and still to be inserted as ``rows`` (then no ids)."""

    values: frozenset[str]
    purposes: list[str]
    occurred_at: datetime
    row_ids: list[int] = field(default_factory=list)
    rows: list[dict[str, object]] = field(default_factory=list)
    widened: bool = False


def record_answers(tx: Transaction, signals: Sequence[LeadSignal]) -> None:
    """Keep the answers of ``signals`` for scoring and rescore the leads they changed
    (the :mod:`zeroparty.lead_signals` listener; capture sends one submission, an import
    a chunk of rows, so this costs a few statements per batch, not per lead).

    An answer is kept only while the gating consent is live now and was live when the
    answer was given (the submission's or row's own grant counts: it was appended just
    before), and only if it was collected for a purpose the lead permits now. Per lead
    and answer name one answer stands, the latest given:

    - the same value(s) again: the kept answer stays as it was (its first source and
      time) and counts for the new purposes too, so a re-import or a resubmission
      changes nothing, and an answer given for two purposes (two imported rows of one
      lead) is forgotten only once both are withdrawn;
    - other values given no earlier than the kept ones replace them;
    - other values given before the kept ones are ignored: an old file imported after
      a form submission must not undo what the lead told us since.
    """
    signals = [s for s in signals if s.inputs]
    if not signals:
        return
    connection = connection_of(tx)
    subjects = sorted({s.subject_id for s in signals})
    active = cached_model(connection) or active_model(connection)
    if active is None:
        return
    gates, permitted, latest = consent.gates_and_permitted(
        connection, subjects, active.model.purpose, lock=True
    )
    if latest is not None and latest != active.key:
        # Another model was loaded since this process last looked: read it, ask again.
        active = confirmed_model(connection, active, latest)
        if active is None:
            return
        gates, permitted, _ = consent.gates_and_permitted(
            connection, subjects, active.model.purpose, lock=True
        )
    purpose = active.model.purpose
    candidates: list[tuple[LeadSignal, list[LeadInput]]] = []
    for signal in signals:
        gate = gates.get(signal.subject_id)
        allowed = permitted.get(signal.subject_id) if gate is not None and gate.permitted else None
        inputs = [i for i in signal.inputs if allowed and allowed.intersection(i.purposes)]
        if inputs:
            candidates.append((signal, inputs))
    permits = consent.permitting_entries(
        connection, purpose, [(s.subject_id, s.occurred_at) for s, _ in candidates], gates
    )
    accepted: list[tuple[LeadSignal, int, list[LeadInput]]] = []
    for signal, inputs in candidates:
        seq = permits[(signal.subject_id, signal.occurred_at)]
        if seq is not None:
            accepted.append((signal, seq, inputs))
    if not accepted:
        return
    now = utcnow()
    subjects = sorted({signal.subject_id for signal, _, _ in accepted})
    # Lock the leads' scoring rows before reading their answers: two writers keeping
    # answers of one lead queue here rather than both replacing the same answer.
    leads, created = _lock_leads(
        connection,
        subjects,
        now,
        start=active.model.lifecycle.start,
        defer_new=True,
        fresh={signal.subject_id for signal, _, _ in accepted if signal.new_lead},
    )
    changed = {sid for sid, lead in leads.items() if lead.model_id is None}  # never scored
    names = {item.name for _, _, inputs in accepted for item in inputs}
    # A lead new to scoring has no answers stored yet.
    known = [sid for sid in subjects if sid not in created]
    kept = _kept_answers(connection, known, names) if known else {}
    stale: list[int] = []
    for signal, seq, inputs in accepted:
        for item in inputs:
            key = (signal.subject_id, item.kind.value, item.name)
            current = kept.get(key)
            if current is not None and current.values == frozenset(item.values):
                wider = [p for p in item.purposes if p not in current.purposes]
                if wider:
                    current.purposes += wider
                    current.widened = True
                continue
            if current is not None:
                if signal.occurred_at < current.occurred_at:
                    continue
                stale += current.row_ids
            kept[key] = _KeptAnswer(
                frozenset(item.values),
                list(item.purposes),
                signal.occurred_at,
                rows=[
                    {
                        "subject_id": signal.subject_id,
                        "kind": item.kind.value,
                        "name": item.name,
                        "value": value,
                        "source_ref": signal.source_ref,
                        "occurred_at": signal.occurred_at,
                        "consent_seq": seq,
                    }
                    for value in item.values
                ],
            )
            changed.add(signal.subject_id)
    inserted = _store_answers(connection, kept.values(), stale)
    new_answers: dict[str, list[engine.AttributeFact]] = defaultdict(list)
    for row in inserted:
        new_answers[str(row["subject_id"])].append(
            engine.AttributeFact(
                str(row["kind"]),
                str(row["name"]),
                str(row["value"]),
                str(row["source_ref"]),
                cast(datetime, row["occurred_at"]),
                cast(int, row["consent_seq"]),
            )
        )
    # Only new values change a score: a lead whose answers all stood is left as it was;
    # the others keep their behaviour points (no events read when only answers changed).
    _rescore_changed(
        connection,
        active,
        {sid: leads[sid] for sid in changed},
        now,
        created=created,
        new_answers=new_answers,
        permitted=permitted,
    )


def _kept_answers(
    connection: Connection, subject_ids: list[str], names: Collection[str]
) -> dict[tuple[str, str, str], _KeptAnswer]:
    """The leads' stored answers named ``names``, by (lead, kind, name)."""
    kept: dict[tuple[str, str, str], _KeptAnswer] = {}
    rows = connection.execute(
        select(
            _attrs.c.id,
            _attrs.c.subject_id,
            _attrs.c.kind,
            _attrs.c.name,
            _attrs.c.value,
            _attrs.c.purposes,
            _attrs.c.occurred_at,
        )
        .where(
            _among(connection, _attrs.c.subject_id, subject_ids),
            _attrs.c.name.in_(sorted(names)),
        )
        .order_by(_attrs.c.id)
    )
    for row in rows:
        key = (row.subject_id, row.kind, row.name)
        answer = kept.get(key)
        if answer is None:
            kept[key] = _KeptAnswer(
                frozenset([row.value]), orjson.loads(row.purposes), row.occurred_at, [row.id]
            )
            continue
        answer.values |= {row.value}
        answer.purposes += [p for p in orjson.loads(row.purposes) if p not in answer.purposes]
        answer.occurred_at = max(answer.occurred_at, row.occurred_at)
        answer.row_ids.append(row.id)
    return kept


_ANSWER_CHUNK = 500  # rows per multi-row insert (7 parameters each)


def _store_answers(
    connection: Connection, answers: Iterable[_KeptAnswer], stale: list[int]
) -> list[dict[str, object]]:
    """Delete the replaced rows, insert the new answers (in multi-row statements), widen
    the purposes of kept ones; returns the rows inserted, in insertion order."""
    inserts: list[dict[str, object]] = []
    widened: list[dict[str, object]] = []
    for answer in answers:
        purposes = orjson.dumps(answer.purposes).decode()
        if answer.rows:
            inserts += [{**row, "purposes": purposes} for row in answer.rows]
        elif answer.widened:
            widened += [{"row_id": row_id, "purposes": purposes} for row_id in answer.row_ids]
    if stale:
        connection.execute(delete(_attrs).where(_attrs.c.id.in_(stale)))
    if widened:
        connection.execute(_WIDEN_PURPOSES, widened)
    for start in range(0, len(inserts), _ANSWER_CHUNK):
        chunk = inserts[start : start + _ANSWER_CHUNK]
        _insert_answers(len(chunk)).execute(
            connection,
            {f"{c}_{i}": row[c] for i, row in enumerate(chunk) for c in _ANSWER_COLUMNS},
        )
    return inserts


_ANSWER_COLUMNS = (
    "subject_id",
    "kind",
    "name",
    "value",
    "purposes",
    "source_ref",
    "occurred_at",
    "consent_seq",
)
_INSERT_ANSWERS: dict[int, Prepared] = {}


def _insert_answers(rows: int) -> Prepared:
    """One multi-row INSERT of ``rows`` answers, compiled once per row count, for the
    driver's cursor. As text: a multi-row ``insert().values([...])`` would be compiled
    again for every submission. Its parameters keep their columns' types (timestamps
    are converted as elsewhere)."""
    stmt = _INSERT_ANSWERS.get(rows)
    if stmt is None:
        columns = ", ".join(_ANSWER_COLUMNS)
        values = ", ".join(
            "(" + ", ".join(f":{c}_{i}" for c in _ANSWER_COLUMNS) + ")" for i in range(rows)
        )
        stmt = _INSERT_ANSWERS[rows] = Prepared(
            text(f"INSERT INTO {_attrs.name} ({columns}) VALUES {values}").bindparams(
                *(
                    bindparam(f"{c}_{i}", type_=_attrs.c[c].type)
                    for i in range(rows)
                    for c in _ANSWER_COLUMNS
                )
            )
        )
    return stmt


# --- consent changes --------------------------------------------------------------------------


# The model in force (LATEST_MODEL_KEY) and whether the lead has stored answers: what a
# consent listener needs first, in one statement.
_MODEL_AND_INPUTS = select(
    LATEST_MODEL_KEY.label("model"),
    exists().where(_attrs.c.subject_id == bindparam("subject_id")).label("inputs"),
)


@cache
def _model_and_inputs(dialect: Dialect) -> DriverStatement:
    return DriverStatement.compile(_MODEL_AND_INPUTS, dialect)


def on_consent_change(tx: Transaction, entries: Sequence[LedgerEntry]) -> None:
    """Ledger listener: a refusal, withdrawal, GPC opt-out, expiry or erasure of the
    gating purpose removes the lead's scoring data at once; of another purpose, the
    answers collected only for it. Grants change nothing here (costs no query); a no
    for a lead without stored answers costs one statement, which confirms the model
    this process has cached."""
    negative = [(e.subject_id, e.purpose, e) for e in entries if is_negative(e.action)]
    if not negative:
        return
    connection = connection_of(tx)
    statement = _model_and_inputs(connection.dialect)
    for subject_id, purpose, entry in negative:
        with driver_cursor(connection) as cursor:
            cursor.execute(statement.sql, statement.parameters({"subject_id": subject_id}))
            latest, inputs = cursor.fetchone()
        if latest is None:
            return  # no model loaded: nothing is scored
        active = confirmed_model(connection, cached_model(connection), latest)
        if active is None:
            return
        if purpose == active.model.purpose:
            handed_off = purge_lead(
                connection,
                active.model,
                subject_id,
                f"consent {entry.action} for {purpose} (ledger entry {entry.seq})",
            )
            if handed_off is not None and entry.action != "erased":
                # The CRM holding the lead is told (an erasure tells it from erase_scoring).
                crm_notices.queue_withdrawal(connection, subject_id, handed_off, entry, utcnow())
        elif inputs:
            _forget_inputs_of(connection, active, subject_id)


def purge_lead(
    connection: Connection, model: ScoringModel, subject_id: str, reason: str
) -> str | None:
    """Delete the lead's scores, points, events, answers and outcome, cancel its pending
    webhooks, and put it back at the lifecycle's first stage (recorded, if it was
    beyond). Returns the
    stage of its latest hand-off the CRM took, if any (see :mod:`scoring.crm_notices`)."""
    lead = connection.execute(
        select(_leads.c.stage, _leads.c.score).where(_leads.c.subject_id == subject_id)
    ).first()
    for table in (_points, _events, _attrs, _outcomes, _qual, _leads):
        connection.execute(delete(table).where(table.c.subject_id == subject_id))
    handed_off = _cancel_webhooks(connection, subject_id, "consent")
    if lead is not None and lead.stage != model.lifecycle.start:
        connection.execute(
            insert(_changes).values(
                subject_id=subject_id,
                from_stage=lead.stage,
                to_stage=model.lifecycle.start,
                actor=Actor.CONSENT.value,
                reason=reason,
                score=None,
                created_at=utcnow(),
            )
        )
    return handed_off


def _cancel_webhooks(connection: Connection, subject_id: str, reason: str) -> str | None:
    """Cancel the lead's pending hand-offs; returns the stage of its latest hand-off
    the CRM took (read by the same statement), or ``None``. Withdrawal and erasure
    notices (:mod:`scoring.crm_notices`) are never cancelled: they are the news."""
    pending = select(_hooks.c.id, _hooks.c.stage, _hooks.c.delivered_at).where(
        _hooks.c.subject_id == subject_id,
        _hooks.c.event == crm_notices.HANDOFF_EVENT,
        _hooks.c.failed_at.is_(None),
        _hooks.c.cancelled_at.is_(None),
    )
    if connection.dialect.name == "postgresql":
        # A row a dispatcher holds is skipped, not waited for: that dispatcher waits for
        # this transaction's consent change, then sees it and cancels the row itself.
        pending = pending.with_for_update(skip_locked=True)
    found = list(connection.execute(pending))
    ids = [row.id for row in found if row.delivered_at is None]
    if ids:
        connection.execute(
            update(_hooks)
            .where(_hooks.c.id.in_(ids))
            .values(cancelled_at=utcnow(), cancel_reason=reason)
        )
    delivered = [row for row in found if row.delivered_at is not None]
    return max(delivered, key=lambda row: row.delivered_at).stage if delivered else None


_LEAD_ATTRIBUTES = select(_attrs.c.id, _attrs.c.purposes).where(
    _attrs.c.subject_id == bindparam("subject_id")
)


def _forget_inputs_of(connection: Connection, active: ActiveModel, subject_id: str) -> None:
    attributes = connection.execute(_LEAD_ATTRIBUTES, {"subject_id": subject_id}).all()
    if not attributes:
        return
    permitted = consent.permitted_purposes(connection, subject_id)
    stale = [row.id for row in attributes if not permitted.intersection(orjson.loads(row.purposes))]
    if not stale:
        return
    connection.execute(delete(_attrs).where(_attrs.c.id.in_(stale)))
    if active.model.purpose in permitted:
        rescore_lead(connection, active, subject_id)


# --- stage moves by people ------------------------------------------------------------------------


def move_stage(
    session: Session, subject_id: str, to: str, *, actor: str, reason: str, recycle: bool
) -> tuple[str, LeadScore]:
    """Move a lead to ``to`` (a stage name, any case) on a person's say-so. Forward
    moves need a live consent; a backward move (recycling) only with ``recycle`` and a
    reason. Returns the stage moved from and the lead's state after."""
    connection = session.connection()
    active = require_model(connection)
    lifecycle = active.model.lifecycle
    to = stage_named(lifecycle, to)
    gate = consent.gate_states(connection, [subject_id], active.model.purpose, lock=True).get(
        subject_id
    )
    if gate is None or not gate.permitted:
        raise ConsentMissing(
            f"this lead has no live consent for {active.model.purpose}: it stays at "
            f"{lifecycle.start} "
            "and is not handed to sales"
        )
    if to == lifecycle.start and not recycle:
        raise InvalidInput(
            'stage: moving back needs "recycle": true',
            fields={"stage": "a backward move is a recycle"},
        )
    lead = _lock_lead(connection, subject_id, lifecycle.start)
    old = str(lead.stage)
    if to == old:
        raise Conflict(f"the lead is at {old} already", fields={"stage": "unchanged"})
    if lifecycle.rank(to) < lifecycle.rank(old) and not recycle:
        raise InvalidInput(
            f'stage: {to} is before {old}; send "recycle": true with a reason',
            fields={"stage": "a backward move is a recycle"},
        )
    if lifecycle.rank(to) > lifecycle.rank(old) and recycle:
        raise InvalidInput(
            f"recycle: {to} is after {old}, not a recycle",
            fields={"recycle": "only for backward moves"},
        )
    if recycle and not reason.strip():
        raise InvalidInput("reason: a recycle needs a reason", fields={"reason": "required"})
    now = utcnow()
    _move(
        connection,
        active.model,
        subject_id,
        old,
        to,
        actor,
        reason.strip() or "moved by sales",
        lead.score,
        now,
    )
    values: dict[str, object] = {"stage": to, "stage_since": now}
    if recycle:
        # A recycled lead moves up by threshold again only once it earns new points.
        values["recycled_score"] = lead.score
        _cancel_webhooks(connection, subject_id, "recycled")
    connection.execute(update(_leads).where(_leads.c.subject_id == subject_id).values(values))
    return old, LeadScore(subject_id, to, lead.score, [])


# --- reading -------------------------------------------------------------------------------------


class ScoreStatus(StrEnum):
    """Where a lead stands with scoring: every state an explanation can describe."""

    SCORED = "scored"
    """Consent live and a score stored (possibly 0)."""
    NOT_SCORED = "not_scored"
    """Consent live, but no score yet: no input since, or the model came later."""
    NO_CONSENT = "no_consent"
    """No decision recorded for the gating purpose (never asked, or another purpose)."""
    PENDING = "pending"
    """Granted, awaiting its double opt-in confirmation: not live yet."""
    CONSENT_ENDED = "consent_ended"
    """Withdrawn, refused, opted out (GPC), expired or erased: the scoring data is gone."""
    NO_MODEL = "no_model"
    """No scoring model is loaded: nobody is scored."""


_ENDED_AS = {
    "withdrawn": "withdrawn",
    "refused": "refused",
    "gpc-opt-out": "opted out of by a Global Privacy Control signal",
    "expired": "expired",
    "erased": "erased with the lead's personal data",
}


@dataclass(frozen=True, slots=True)
class ExplainedOutcome:
    outcome: str
    decided_at: datetime
    recorded_by: str


@dataclass(frozen=True, slots=True)
class Explanation:
    subject_id: str
    permitted: bool
    stage: str
    score: float | None
    model_id: int | None
    scored_at: datetime | None
    points: list[engine.Point]
    changes: list[dict[str, object]]
    status: ScoreStatus
    reason: str
    """Why the lead has (or has no) score, in one sentence for people."""
    outcome: ExplainedOutcome | None
    intent: engine.Intent = engine.NO_INTENT
    """Tags and quiz scores of the lead's kept answers (none without live consent)."""
    lead_types: dict[str, dict[str, str]] = field(default_factory=dict)
    """The types the lead holds beside its stage, each with when, by whom and why."""
    temperature: str | None = None
    """The model's temperature band of the score (``None``: no bands, or no score)."""
    next_action: dict[str, str] | None = None
    """The first matching ``[[scoring.next_action]]`` rule's action (live consent only)."""


_QUIZ_ANSWERS = _per_dialect(
    lambda among: (
        select(_attrs)
        .where(among(_attrs.c.subject_id), _attrs.c.kind == "quiz-answer")
        .order_by(_attrs.c.id)
    )
)


def lead_intents(
    connection: Connection, model: ScoringModel, subject_ids: Sequence[str]
) -> dict[str, engine.Intent]:
    """The tags and quiz scores of leads (each id a key), from their kept quiz answers
    collected for a purpose they still permit: the consent rule of answers, in two
    statements for the whole set (permitted purposes, answers)."""
    found = dict.fromkeys(subject_ids, engine.NO_INTENT)
    if not subject_ids or not model.quizzes:
        return found
    dialect, params = connection.dialect.name, {"ids": list(subject_ids)}
    permitted: dict[str, set[str]] = defaultdict(set)
    for row in _PERMITTED[dialect].execute(connection, params):
        permitted[row.subject_id].add(row.purpose_key)
    answers: dict[str, list[engine.AttributeFact]] = defaultdict(list)
    for r in connection.execute(_QUIZ_ANSWERS[dialect], params):
        purposes = permitted.get(r.subject_id, set())
        if model.purpose in purposes and purposes.intersection(orjson.loads(r.purposes)):
            answers[r.subject_id].append(
                engine.AttributeFact(
                    r.kind, r.name, r.value, r.source_ref, r.occurred_at, r.consent_seq
                )
            )
    for sid, facts in answers.items():
        found[sid] = engine.intent_of(model, facts)
    return found


def _status(
    purpose: str | None, gate: consent.GateState | None, lead: Any
) -> tuple[ScoreStatus, str]:
    if purpose is None:
        return ScoreStatus.NO_MODEL, "no scoring model is loaded: nobody is scored"
    if gate is None or gate.status == NO_RECORD:
        return ScoreStatus.NO_CONSENT, (
            f"no consent for {purpose} recorded: not scored, never staged beyond Lead, "
            "never handed off"
        )
    entry = f"ledger entry {gate.last_seq}"
    if gate.permitted and lead is None:
        return ScoreStatus.NOT_SCORED, (
            f"consent for {purpose} is live ({entry}) but the lead has not been scored yet: "
            "its next event or answer scores it, or zeroparty score"
        )
    if gate.permitted:
        return ScoreStatus.SCORED, (
            f"scored under consent for {purpose} ({entry}) at {format_timestamp(lead.scored_at)}"
        )
    if gate.status == PENDING:
        return ScoreStatus.PENDING, (
            f"consent for {purpose} awaits its double opt-in confirmation ({entry}): "
            "not scored until it is confirmed"
        )
    ended = _ENDED_AS.get(gate.status, gate.status)
    when = f" at {format_timestamp(gate.since)}" if gate.since is not None else ""
    return ScoreStatus.CONSENT_ENDED, (
        f"consent for {purpose} {ended}{when} ({entry}): its score, points, events, "
        "answers and outcome were deleted; not scored, never handed off"
    )


def explain(connection: Connection, subject_id: str) -> Explanation:
    """Every point of the lead's score, with rule, input and permitting ledger entry,
    and the lead's :class:`ScoreStatus` with the reason for it, in every state a lead
    can be in (consented but never scored included: ``score`` is then ``None``)."""
    active = active_model(connection)
    purpose = active.model.purpose if active is not None else None
    start = active.model.lifecycle.start if active is not None else DEFAULT_LIFECYCLE.start
    gate = (
        consent.gate_states(connection, [subject_id], purpose).get(subject_id)
        if purpose is not None
        else None
    )
    lead = connection.execute(select(_leads).where(_leads.c.subject_id == subject_id)).first()
    points = [
        engine.Point(r.rule, r.kind, r.points, r.source, r.occurred_at, r.consent_seq)
        for r in connection.execute(
            select(_points).where(_points.c.subject_id == subject_id).order_by(_points.c.id)
        )
    ]
    changes = [
        {
            "from": r.from_stage,
            "to": r.to_stage,
            "actor": r.actor,
            "reason": r.reason,
            "score": r.score,
            "at": r.created_at,
        }
        for r in connection.execute(
            select(_changes).where(_changes.c.subject_id == subject_id).order_by(_changes.c.id)
        )
    ]
    outcome = connection.execute(
        select(_outcomes).where(_outcomes.c.subject_id == subject_id)
    ).first()
    status, reason = _status(purpose, gate, lead)
    live = active is not None and gate is not None and gate.permitted
    intent = (
        lead_intents(connection, active.model, [subject_id])[subject_id]
        if active is not None and live
        else engine.NO_INTENT
    )
    action = None
    if active is not None and live and active.model.next_actions:
        acknowledged = lead is not None and bool(
            connection.execute(
                select(_ACKED).select_from(_leads).where(_leads.c.subject_id == subject_id)
            ).scalar()
        )
        action = next_action_of(
            active.model,
            lead.stage if lead is not None else start,
            lead.score if lead is not None else None,
            held_types(lead.lead_types) if lead is not None else {},
            intent,
            acknowledged,
        )
    return Explanation(
        subject_id,
        bool(gate and gate.permitted),
        str(lead.stage) if lead is not None else start,
        lead.score if lead is not None else None,
        lead.model_id if lead is not None else None,
        lead.scored_at if lead is not None else None,
        points,
        changes,
        status,
        reason,
        ExplainedOutcome(outcome.outcome, outcome.decided_at, outcome.recorded_by)
        if outcome is not None
        else None,
        intent,
        held_types(lead.lead_types) if lead is not None else {},
        active.model.temperature_for(lead.score if lead is not None else None)
        if active is not None
        else None,
        action,
    )


@dataclass(frozen=True, slots=True)
class LeadRow:
    subject_id: str
    email: str
    stage: str
    score: float
    stage_since: datetime
    scored_at: datetime
    lead_types: list[str] = field(default_factory=list)
    temperature: str | None = None
    acknowledged: bool = False
    """Sales acknowledged its hand-off into the current stage."""


_acks = cast(Table, HandoffAck.__table__)
_ACKED = (
    select(_acks.c.id)
    .where(
        _acks.c.subject_id == _leads.c.subject_id,
        _acks.c.stage == _leads.c.stage,
        _acks.c.entered_at == _leads.c.stage_since,
    )
    .exists()
)


def next_action_of(
    model: ScoringModel,
    stage: str,
    score: float | None,
    lead_types: Collection[str],
    intent: engine.Intent,
    acknowledged: bool,
) -> dict[str, str] | None:
    """The lead's next best action under ``model`` (:mod:`scoring.actions`)."""
    if not model.next_actions:
        return None
    facts = actions.LeadFacts(
        stage,
        score,
        lead_types,
        intent.tag_names(),
        model.temperature_for(score),
        acknowledged,
    )
    return actions.next_action(model.next_actions, facts)


@dataclass(frozen=True, slots=True)
class LeadsPage:
    leads: list[LeadRow]
    next_cursor: str | None
    """The ``after`` of the next page; ``None`` on the last."""


def page_of_leads(stages: Sequence[str], after: str, limit: int) -> Any:
    """The next ``limit`` lead ids after ``after`` at any of ``stages``, in id order: one
    walk of the (stage, subject_id) index per stage, merged, and no other table.

    A list page walks these first and joins exactly the closed range ``after < id <=
    last`` (:func:`list_leads`, :func:`scoring.sla.pending`). With the range open at one
    end, PostgreSQL did not carry the bound across the joins and merge-joined every
    profile before the page (at 1M leads: 30 ms a page at the start, 630 ms half-way)."""
    walks = [
        select(_leads.c.subject_id)
        .where(_leads.c.stage == stage, _leads.c.subject_id > after)
        .order_by(_leads.c.subject_id)
        .limit(limit)
        for stage in stages
    ]
    if len(walks) == 1:
        return walks[0]
    # Each walk a subquery of its own: SQLite refuses LIMIT on a bare arm of a UNION.
    arms = [walk.subquery() for walk in walks]
    merged = union_all(*(select(arm.c.subject_id) for arm in arms)).subquery()
    return select(merged.c.subject_id).order_by(merged.c.subject_id).limit(limit)


def list_leads(connection: Connection, stage: str, limit: int, after: str) -> LeadsPage:
    """Permissioned leads at ``stage``, by id after ``after`` (keyset pagination). The
    consent join is belt and braces: the listener already removed anyone else. A page
    walks ``limit`` leads at ``stage``: it holds fewer when some of them are not
    permissioned (even none), and ``next_cursor`` still moves on."""
    active = require_model(connection)
    walked = connection.execute(page_of_leads([stage], after, limit)).scalars().all()
    if not walked:
        return LeadsPage([], None)
    cs = _cs
    rows = connection.execute(
        select(_leads, _profiles.c.email, _ACKED.label("acknowledged"))
        .join(_profiles, _profiles.c.subject_id == _leads.c.subject_id)
        .join(
            cs,
            (cs.c.subject_id == _leads.c.subject_id)
            & (cs.c.purpose_key == active.model.purpose)
            & cs.c.permitted,
        )
        .where(
            _leads.c.stage == stage,
            _leads.c.subject_id > after,
            _leads.c.subject_id <= walked[-1],
        )
        .order_by(_leads.c.subject_id)
    )
    model = active.model
    leads = [
        LeadRow(
            r.subject_id,
            r.email,
            str(r.stage),
            r.score,
            r.stage_since,
            r.scored_at,
            list(held_types(r.lead_types)),
            model.temperature_for(r.score),
            bool(r.acknowledged),
        )
        for r in rows
    ]
    return LeadsPage(leads, walked[-1] if len(walked) == limit else None)
