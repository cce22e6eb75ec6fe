"""Database engine, sessions and the one declarative base.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL`` (durable
across application crashes; an OS crash may lose the last transactions but never
corrupts), foreign keys on, and ``secure_delete`` so erased personal data is overwritten
in the file rather than left in free pages. Write transactions on SQLite start with
``BEGIN IMMEDIATE`` so two writers never deadlock on a lock upgrade; read transactions
stay deferred so readers never wait for writers.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

import anyio.to_thread
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlalchemy.sql.compiler import ExpandedState, SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.types import TypeDecorator

from zeroparty.group_commit import GroupCommit

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_SIZE = 40
WRITE_OPTION = "zeroparty_write"
P = ParamSpec("P")
T = TypeVar("T")
LOOKUP_OPTION = "zeroparty_lookup"

Transaction = Session | Connection
"""A writer's transaction as the writer holds it: the request's ORM session, or a plain
connection from :meth:`Database.write_connection` (one-click, the consent API)."""


class Base(DeclarativeBase):
    """The one declarative base every package maps its tables on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    SQLite has no timezone type: values are stored as naive UTC and come back aware.
    Naive datetimes are refused on the way in, so nothing local-time slips through.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: timestamps are timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled once for a dialect, to run on a DBAPI cursor (hot paths
    where SQLAlchemy's execution would cost several times the query). Result rows come
    back as the driver gives them: no type processing (SQLite timestamps are text), and
    parameters go as given (no expanding ``IN`` lists)."""

    sql: str
    positions: tuple[str, ...] | None  # parameter names in order (qmark), or None (named)
    defaults: Mapping[str, object]  # the statement's own values (literals such as ":")

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> DriverStatement:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        positions = compiled.positiontup
        defaults = {
            compiled.bind_names[bind]: bind.effective_value
            for bind in compiled.binds.values()
            if not bind.required
        }
        return cls(compiled.string, tuple(positions) if positions else None, defaults)

    def parameters(self, values: dict[str, object]) -> tuple[object, ...] | dict[str, object]:
        if self.defaults:
            values = {**self.defaults, **values}
        if self.positions is None:
            return values
        return tuple(values[name] for name in self.positions)


class Prepared:
    """A Core statement run on the DBAPI cursor, compiled once per dialect, with its
    column types' own bind and result processing (so a timestamp goes in and comes out
    as it would through an execution), and none of the engine's per-execution work
    (events, cache key, result object): a few microseconds instead of several tens.

    For the statements of hot requests. Expanding ``IN`` lists are rendered by SQLAlchemy
    (:meth:`SQLCompiler.construct_expanded_state`) once per shape, the lengths of the
    lists; later calls of a shape only pick their values. Rows come back as named tuples of
    the statement's column keys. Driver errors surface as SQLAlchemy's exception
    classes (:func:`driver_cursor`)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, _PreparedFor] = {}

    def on(self, dialect: Dialect) -> _PreparedFor:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _PreparedFor.compile(self.statement, dialect)
        return compiled

    def execute(
        self, connection: Connection, values: Mapping[str, object] | None = None
    ) -> list[Any]:
        """Run with ``values``; the rows it returns (none for a statement without)."""
        dialect = connection.dialect
        prepared = self._compiled.get(dialect) or self.on(dialect)
        sql, parameters = prepared.render(values or {})
        # driver_cursor's work, inline: this runs for every statement of a hot request.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql, parameters)
            description = cursor.description
            return prepared.rows(description, cursor.fetchall()) if description else []
        except dialect.loaded_dbapi.Error as exc:
            raise _translated(dialect, exc) from exc
        finally:
            cursor.close()

    def executemany(self, connection: Connection, rows: Sequence[Mapping[str, object]]) -> None:
        """Run once per mapping of ``rows`` (no expanding lists, nothing returned)."""
        if not rows:
            return
        prepared = self.on(connection.dialect)
        with driver_cursor(connection) as cursor:
            cursor.executemany(prepared.sql, [prepared.render(row)[1] for row in rows])


@dataclass(frozen=True, slots=True)
class _PreparedFor:
    """:class:`Prepared` for one dialect."""

    dialect: Dialect
    compiled: SQLCompiler
    sql: str
    expanding: bool
    lists: tuple[str, ...]  # the expanding parameters (IN lists)
    shapes: dict[tuple[int, ...], _Shape]  # rendered SQL by the lists' lengths
    positions: tuple[str, ...] | None  # parameter names in order (qmark), or None (named)
    defaults: Mapping[str, object]  # the statement's own values (literals, LIMIT)
    binds: Mapping[str, Callable[[Any], Any]]  # bind processors, by parameter name
    # Positional, no list, no value of its own: each driver parameter's name and bind
    # processor, in order (the common case, rendered without building a dict).
    ordered: tuple[tuple[str, Callable[[Any], Any] | None], ...] | None
    columns: tuple[Any, ...]  # the statement's columns (their types process results)
    row: Callable[..., Any] | None  # the named tuple of a returned row
    # Result processors per column (None: nothing to do), by the driver's type codes
    # (None: SQLite, which gives none).
    results: dict[tuple[Any, ...] | None, tuple[Callable[[Any], Any] | None, ...] | None]

    @classmethod
    def compile(cls, statement: ClauseElement, dialect: Dialect) -> _PreparedFor:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        binds: dict[str, Callable[[Any], Any]] = {}
        defaults: dict[str, object] = {}
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binds[name] = processor
            if not bind.required:
                defaults[name] = bind.effective_value
        columns = tuple(getattr(statement, "exported_columns", None) or ())
        keys = [column.key for column in columns]
        positions = tuple(compiled.positiontup) if compiled.positiontup else None
        expanding = bool(compiled.post_compile_params)
        simple = positions is not None and not expanding and not defaults
        return cls(
            dialect=dialect,
            compiled=compiled,
            sql=compiled.string,
            expanding=expanding,
            lists=tuple(sorted(compiled.bind_names[b] for b in compiled.post_compile_params)),
            shapes={},
            positions=positions,
            defaults=defaults,
            binds=binds,
            ordered=tuple((n, binds.get(n)) for n in positions or ()) if simple else None,
            columns=columns,
            row=namedtuple("Row", keys, rename=True) if keys else None,
            results={},
        )

    def render(self, values: Mapping[str, object]) -> tuple[str, Any]:
        """The SQL for ``values``, and its parameters, processed, in the driver's style."""
        if self.ordered is not None:
            return self.sql, tuple(
                values[name] if process is None or values[name] is None else process(values[name])
                for name, process in self.ordered
            )
        params = {**self.defaults, **values} if self.defaults else dict(values)
        if self.expanding:
            return self._render_expanded(params)
        for name, processor in self.binds.items():
            value = params.get(name)
            if value is not None:
                params[name] = processor(value)
        if self.positions is None:
            return self.sql, params
        return self.sql, tuple(params[name] for name in self.positions)

    def _render_expanded(self, params: dict[str, Any]) -> tuple[str, Any]:
        """:meth:`render` with ``IN`` lists: SQLAlchemy renders each shape (the lists'
        lengths) once; later calls of that shape only pick the values."""
        lengths = tuple(len(params[name]) for name in self.lists)
        shape = self.shapes.get(lengths)
        if shape is None:
            state = self.compiled.construct_expanded_state(params)
            shape = _Shape.of(state, params)
            if shape is None:
                return _expanded_parameters(state)
            self.shapes[lengths] = shape
        picked = []
        for _target, name, index, processor in shape.sources:
            value = params[name] if index is None else params[name][index]
            if processor is not None and value is not None:
                value = processor(value)
            picked.append(value)
        if shape.positional:
            return shape.sql, tuple(picked)
        return shape.sql, {s[0]: value for s, value in zip(shape.sources, picked, strict=True)}

    def rows(self, description: Any, fetched: Sequence[Any]) -> list[Any]:
        """Fetched rows as named tuples, their values processed by the column types
        (``description``: the cursor's, whose type codes some processors depend on)."""
        make = self.row
        assert make is not None
        # SQLite gives no type codes (all None): one set of processors, looked up at once.
        codes = None if self.dialect.name == "sqlite" else tuple(c[1] for c in description)
        try:
            results = self.results[codes]
        except KeyError:
            processors = tuple(
                column.type.dialect_impl(self.dialect).result_processor(self.dialect, code)
                for column, code in zip(
                    self.columns, codes or (None,) * len(self.columns), strict=True
                )
            )
            results = self.results[codes] = processors if any(processors) else None
        if results is None:
            return [make(*row) for row in fetched]
        return [
            make(*[value if p is None else p(value) for p, value in zip(results, row, strict=True)])
            for row in fetched
        ]


@dataclass(frozen=True, slots=True)
class _Shape:
    """An expanded statement for one length of each ``IN`` list: its SQL, and for each
    driver parameter (in order) its name, the caller's parameter it comes from, the
    index in that list (``None``: not a list) and its bind processor."""

    sql: str
    positional: bool
    sources: tuple[tuple[str, str, int | None, Callable[[Any], Any] | None], ...]

    @classmethod
    def of(cls, state: ExpandedState, params: Mapping[str, Any]) -> _Shape | None:
        """The shape of ``state``, or ``None`` where values went into the SQL itself or
        a list is not one parameter per item (tuples): render those every time."""
        origin: dict[str, tuple[str, int]] = {}
        for name, expanded in (state.parameter_expansion or {}).items():
            values = params.get(name)
            if not isinstance(values, list | tuple) or len(expanded) != len(values):
                return None
            origin.update((target, (name, i)) for i, target in enumerate(expanded))
        targets = state.positiontup if state.positiontup is not None else list(state.parameters)
        sources = []
        for target in targets:
            name, index = origin.get(target, (target, None))
            if index is None and target not in params:
                return None
            sources.append((target, name, index, state.processors.get(target)))
        return cls(state.statement, state.positiontup is not None, tuple(sources))


def _expanded_parameters(state: ExpandedState) -> tuple[str, Any]:
    """The SQL and processed parameters of an expanded statement, as SQLAlchemy gives them."""
    params = dict(state.parameters)
    for name, processor in state.processors.items():
        if name in params and params[name] is not None:
            params[name] = processor(params[name])
    if state.positiontup is None:
        return state.statement, params
    return state.statement, tuple(params[name] for name in state.positiontup)


def connection_of(tx: Transaction) -> Connection:
    """The connection ``tx`` runs on (a session's own, begun if it was not yet)."""
    return tx.connection() if isinstance(tx, Session) else tx


@contextmanager
def driver_cursor(connection: Connection) -> Iterator[Any]:
    """The DBAPI cursor of ``connection``, inside its transaction. Driver errors come out
    as the exception classes SQLAlchemy would raise (``IntegrityError``, …), so callers
    and the app's error handling see no difference."""
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except connection.dialect.loaded_dbapi.Error as exc:
        raise _translated(connection.dialect, exc) from exc
    finally:
        cursor.close()


def _translated(dialect: Dialect, exc: Exception) -> StatementError:
    """``exc``, a driver error, as the SQLAlchemy exception class an execution raises."""
    return DBAPIError.instance(
        None, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
    )


def sqlite_time(moment: datetime) -> str:
    """``moment`` as :class:`UTCDateTime` stores it on SQLite (SQLAlchemy's DATETIME
    text: naive UTC, microseconds), for statements sent on the driver's cursor."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def utcnow() -> datetime:
    """The server's clock, UTC, microsecond precision (what the database keeps)."""
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    """Let people write ``postgresql://`` and still get the psycopg 3 driver."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours
        # (SQLAlchemy's documented recipe for pysqlite, needed for BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get(LOOKUP_OPTION):
            return  # each statement is its own snapshot; no BEGIN/ROLLBACK round trips
        # On the driver's cursor: SQLAlchemy's execution around it cost more than the
        # BEGIN itself, once per transaction.
        with driver_cursor(connection) as cursor:
            cursor.execute("BEGIN IMMEDIATE" if options.get(WRITE_OPTION) else "BEGIN")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for ``url`` with zeroparty's connection settings applied."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        # As many pooled connections as Starlette has threadpool threads (40): opening a
        # SQLite connection and running its PRAGMAs costs more than a look-up query.
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False},
            hide_parameters=True,
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=60,
        )
        _configure_sqlite(engine)
        return engine
    # hide_parameters: an error message must never carry an email into the logs.
    # No pool_pre_ping (a round trip per request): a connection found dead is
    # invalidated by SQLAlchemy on its first error, and the pool recovers by itself.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        hide_parameters=True,
    )


class _SharedSession(Session):
    """A session in a transaction shared with other threads' writes: only the group
    commits it, and a body rolls its own work back by raising."""

    def commit(self) -> None:
        raise TypeError("a shared write commits when its block ends; do not commit it")

    def rollback(self) -> None:
        raise TypeError("a shared write is rolled back by raising from its block")


KEPT_LOOKUP = 4
"""SQLite: how many threads at most keep a connection for :meth:`Database.lookup_cursor`
(a server worker's look-ups run on its event loop's one thread)."""


class Database:
    """The engine plus the two kinds of session the app uses.

    ``write()`` begins a transaction that will write (``BEGIN IMMEDIATE`` on SQLite);
    ``read()`` a transaction that only reads. Both commit on success and roll back on
    any exception, so a failed request never leaves half its rows behind.
    """

    def __init__(self, engine: Engine, *, group_commit: bool = True) -> None:
        self.engine = engine
        # SQLite has one writer at a time. Threads of this process queue here rather
        # than in SQLite's busy handler, which sleeps up to 100 ms between tries (the
        # p99 of every write path under load); other processes still meet at SQLite's
        # own lock. Re-entrant, so a nested write fails as before rather than hanging.
        self._write_lock: AbstractContextManager[object] = (
            threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()
        )
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._write_sessions = sessionmaker(bind=self._writer, expire_on_commit=False)
        # PostgreSQL: concurrent write transactions of requests (their work runs in
        # run()) share one commit and one ledger head lock (zeroparty.group_commit).
        # Not a job's writes, whose bodies may run for seconds (a rescoring batch, a
        # purge) and would hold up every request queued behind them, and not a write
        # opened inside another write of the same thread: it would wait for its own
        # group.
        self._group: GroupCommit | None = (
            GroupCommit(self._writer)
            if group_commit and engine.dialect.name == "postgresql"
            else None
        )
        self._writing = threading.local()
        # SQLite: the connection each thread keeps for lookup_cursor(), and its thread.
        self._kept: dict[int, tuple[threading.Thread, PoolProxiedConnection]] = {}
        self._kept_lock = threading.Lock()
        self._kept_reserved = 0  # slots taken by threads checking out to keep
        self._read_sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._wal_autocheckpoint: int | None = None
        self._wal_listening = False

    @classmethod
    def from_url(cls, url: str) -> Database:
        return cls(make_engine(url))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def write_lock(self) -> AbstractContextManager[object]:
        """The process's SQLite write lock (a no-op on PostgreSQL): held, no thread of
        this process writes."""
        return self._write_lock

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in a write transaction, committed when the block ends (on
        PostgreSQL perhaps together with other threads' writes: see
        :meth:`write_connection`). Roll back by raising: in a shared transaction the
        session cannot roll back or commit by itself."""
        if self._shares():
            with self._shared_session() as session:
                yield session
            return
        with (
            self._write_lock,
            self._outside_group(),
            self._write_sessions() as session,
            session.begin(),
        ):
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """Like :meth:`write`, on a plain connection: for write paths made of Core
        statements only (the ledger's appends), which would otherwise pay for an ORM
        session they never use. Commits on success, rolls back on any exception.

        On PostgreSQL a request's transaction (one opened in :meth:`run`'s work, or under
        :meth:`sharing`) may be shared with other requests' (group commit,
        :mod:`zeroparty.group_commit`): each body's work still stands or falls alone, and
        the block returns only once it is committed."""
        if self._group is not None and self._shares():
            with self._marked_writing(), self._group.transaction() as connection:
                yield connection
            return
        with (
            self._write_lock,
            self._outside_group(),
            self._writer.connect() as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def _shared_session(self) -> Iterator[Session]:
        """An ORM session on a group-commit connection: it joins the body's savepoint
        (``rollback_only``), so a failed flush undoes this body's work only; its
        ``after_commit`` listeners run once the group has committed."""
        assert self._group is not None
        with self._marked_writing():
            with self._group.transaction() as connection:
                session = _SharedSession(
                    bind=connection, join_transaction_mode="rollback_only", expire_on_commit=False
                )
                try:
                    yield session
                    session.flush()
                finally:
                    session.close()
            session.dispatch.after_commit(session)

    @contextmanager
    def sharing(self) -> Iterator[None]:
        """Let this thread's write transactions share a group commit (PostgreSQL):
        what :meth:`run` does for a request's work, whose bodies are short by design."""
        outer = getattr(self._writing, "share", False)
        self._writing.share = True
        try:
            yield
        finally:
            self._writing.share = outer

    def _shares(self) -> bool:
        local = self._writing
        return (
            self._group is not None
            and getattr(local, "share", False)
            and not getattr(local, "active", False)
        )

    def _shared_work(self, work: Callable[[], T]) -> T:
        with self.sharing():
            return work()

    def _outside_group(self) -> AbstractContextManager[object]:
        """A write transaction of its own: marked, so that a write nested in it keeps
        its own too, where there are groups to join (PostgreSQL); else nothing to do."""
        return self._marked_writing() if self._group is not None else nullcontext()

    @contextmanager
    def _marked_writing(self) -> Iterator[None]:
        outer = getattr(self._writing, "active", False)
        self._writing.active = True
        try:
            yield
        finally:
            self._writing.active = outer

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session, session.begin():
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A plain connection for streaming reads (exports, verification)."""
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def lookup(self) -> Iterator[Connection]:
        """A connection for independent single-statement reads (the consent API's hot
        path): on SQLite no explicit transaction, so no BEGIN/ROLLBACK per request.
        Never write through it, and never rely on two of its reads agreeing."""
        with self.engine.connect() as connection:
            yield connection.execution_options(**{LOOKUP_OPTION: True})

    @contextmanager
    def lookup_cursor(self) -> Iterator[Any]:
        """A DBAPI cursor for reads of one statement each outside any transaction (the
        consent API's look-up): no BEGIN/ROLLBACK and no SQLAlchemy execution around
        it. On SQLite the connections run without implicit transactions, and a thread
        keeps one for these reads (a request's work runs on the event loop's thread;
        up to :data:`KEPT_LOOKUP` threads do): no pool checkout per look-up, 9 µs of 10
        for one statement. On
        PostgreSQL a pooled connection is in autocommit for the duration: one
        statement, one round trip. Driver errors come out as SQLAlchemy's exception
        classes. Never write through it."""
        dialect = self.engine.dialect
        sqlite = dialect.name == "sqlite"
        pooled, kept = self._kept_connection() if sqlite else (self.engine.raw_connection(), False)
        try:
            if not sqlite:
                pooled.driver_connection.autocommit = True  # type: ignore[union-attr]
            try:
                cursor = pooled.cursor()
                try:
                    yield cursor
                finally:
                    cursor.close()
            finally:
                if not sqlite:
                    pooled.driver_connection.autocommit = False  # type: ignore[union-attr]
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, pooled.dbapi_connection, None):
                self._drop_kept(pooled)
                pooled.invalidate(exc)
            raise DBAPIError.instance(
                None, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True, dialect=dialect
            ) from exc
        finally:
            if not kept:
                pooled.close()

    def _kept_connection(self) -> tuple[PoolProxiedConnection, bool]:
        """This thread's kept look-up connection and true; or, when :data:`KEPT_LOOKUP`
        threads keep one already, an ordinary checkout and false (the caller gives it
        back). Kept connections of threads that ended go back to the pool first, so
        threads that come and go never hold the pool's connections."""
        thread = threading.current_thread()
        found = self._kept.get(thread.ident or 0)
        if found is not None and found[0] is thread:
            return found[1], True
        with self._kept_lock:
            for ident, (owner, connection) in list(self._kept.items()):
                if not owner.is_alive():
                    del self._kept[ident]
                    connection.close()
            # A slot is taken before the checkout, so threads arriving together never
            # keep more than KEPT_LOOKUP between them.
            keep = len(self._kept) + self._kept_reserved < KEPT_LOOKUP
            self._kept_reserved += keep
        try:
            pooled = self.engine.raw_connection()
        except BaseException:
            if keep:
                with self._kept_lock:
                    self._kept_reserved -= 1
            raise
        if keep:
            with self._kept_lock:
                self._kept_reserved -= 1
                self._kept[thread.ident or 0] = (thread, pooled)
        return pooled, keep

    def _drop_kept(self, pooled: PoolProxiedConnection) -> None:
        with self._kept_lock:
            for ident, (_, connection) in list(self._kept.items()):
                if connection is pooled:
                    del self._kept[ident]

    @property
    def runs_inline(self) -> bool:
        """Whether :meth:`run` calls its work on the event loop (SQLite) rather than
        in the threadpool."""
        return self.engine.dialect.name == "sqlite"

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Do a request's database work: the one place a request leaves the event loop.

        On SQLite the work runs right here, on the event loop, as the bare stack does:
        its statements take microseconds, SQLite has one writer at a time anyway, and a
        hop to the threadpool and back costs more than the work (PERF-NOTES: writes
        through ``run_in_threadpool`` halved throughput). On PostgreSQL every statement
        is a network round trip, so the work makes one hop to the threadpool, where its
        write transactions may share a group commit with other requests' (:meth:`sharing`).

        ``work`` opens its own transaction(s) (:meth:`write`, :meth:`read`, ...) and
        must not await anything: a request gathers its input first, then calls this
        once, then renders what it returned.
        """
        if self.runs_inline:
            return work(*args, **kwargs)
        return await anyio.to_thread.run_sync(self._shared_work, lambda: work(*args, **kwargs))

    def set_wal_autocheckpoint(self, pages: int | None) -> None:
        """SQLite only: ``PRAGMA wal_autocheckpoint=pages`` on this database's connections
        from now on (``0``: commits never checkpoint; ``None``: SQLite's default of 1000
        pages). The pool's idle connections are closed so every connection handed out
        next has the setting; connections checked out now keep theirs until returned.
        ``serve`` turns auto-checkpoints off while its checkpoint job runs
        (:mod:`zeroparty.wal`), so no request's commit copies the WAL back."""
        if self.dialect != "sqlite":
            return
        self._wal_autocheckpoint = pages
        if not self._wal_listening:
            event.listen(self.engine, "connect", self._apply_wal_autocheckpoint)
            self._wal_listening = True
        self.engine.dispose()

    def _apply_wal_autocheckpoint(self, dbapi_connection: Any, _record: object) -> None:
        pages = self._wal_autocheckpoint
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA wal_autocheckpoint={1000 if pages is None else int(pages)}")
        cursor.close()

    def dispose(self) -> None:
        with self._kept_lock:
            kept = [connection for _, connection in self._kept.values()]
            self._kept.clear()
        for connection in kept:
            connection.close()
        self.engine.dispose()
