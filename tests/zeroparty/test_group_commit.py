"""Group commit (``zeroparty.group_commit``): concurrent write transactions of one
process's threads share one commit, and each body's work still stands or falls alone.

The groups are made deterministic here: the first member waits inside its body until
the others have joined, so they queue for the connection and run after it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import anyio
import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from consent_ledger.actions import ConsentAction, ConsentMethod, ConsentSource
from consent_ledger.models import ConsentEvent, Subject
from consent_ledger.services import ConsentRecord, record_consent
from consent_ledger.verify import verify_ledger
from tests.factories import notice_hash
from zeroparty.db import WRITE_OPTION, Database
from zeroparty.group_commit import GroupAborted, GroupCommit

WAIT_S = 10.0


def _grant(database: Database, email: str) -> ConsentRecord:
    return ConsentRecord(
        email=email,
        purpose="profiling",
        action=ConsentAction.GRANTED,
        source=ConsentSource.API,
        method=ConsentMethod.CHECKBOX,
        notice_sha256=notice_hash(database, "profiling"),
        jurisdiction="DE",
        evidence={"ip": "198.51.100.23", "user_agent": "pytest"},
    )


@dataclass(eq=False)
class Commits:
    """Counts the COMMITs the writer engine sends."""

    engine: Engine
    count: int = 0

    def __call__(self, _connection: Connection) -> None:
        self.count += 1


@pytest.fixture
def writer(database: Database) -> Engine:
    return database.engine.execution_options(**{WRITE_OPTION: True})


@pytest.fixture
def commits(writer: Engine) -> Iterator[Commits]:
    counter = Commits(writer)
    event.listen(writer, "commit", counter)
    yield counter
    event.remove(writer, "commit", counter)


@dataclass
class Member:
    """One thread's body and what came of it."""

    body: Callable[[Connection], object]
    result: object = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


def _run(group: GroupCommit, members: list[Member]) -> None:
    """Run ``members[0]`` first; it waits in its body until all others have joined."""

    def go(member: Member) -> None:
        try:
            with group.transaction() as connection:
                member.result = member.body(connection)
        except BaseException as exc:
            member.error = exc

    first, rest = members[0], members[1:]
    entered = threading.Event()
    body = first.body

    def first_body(connection: Connection) -> object:
        entered.set()
        _until(lambda: _members(group) == len(members))
        return body(connection)

    first.body = first_body
    first.thread = threading.Thread(target=go, args=(first,))
    first.thread.start()
    assert entered.wait(WAIT_S)
    for member in rest:
        member.thread = threading.Thread(target=go, args=(member,))
        member.thread.start()
    for member in members:
        assert member.thread is not None
        member.thread.join(WAIT_S)
        assert not member.thread.is_alive()


def _members(group: GroupCommit) -> int:
    open_group = group._open
    return 0 if open_group is None else open_group.members


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "the other members never joined"
        time.sleep(0.005)


def _appender(database: Database, email: str) -> Callable[[Connection], object]:
    return lambda connection: record_consent(connection, _grant(database, email)).seq


def _failing(database: Database, email: str) -> Callable[[Connection], object]:
    def body(connection: Connection) -> object:
        record_consent(connection, _grant(database, email))
        raise RuntimeError(f"{email}: after the append, before the commit")

    return body


def _emails(database: Database) -> list[str]:
    with database.read() as session:
        rows = session.execute(
            text(
                "SELECT p.email FROM consent_events e JOIN subject_profiles p "
                "ON p.subject_id = e.subject_id ORDER BY e.seq"
            )
        )
        return [row[0] for row in rows]


def _chain_ok(database: Database) -> bool:
    with database.connect() as connection:
        return verify_ledger(connection).ok


def test_concurrent_bodies_share_one_commit(
    database: Database, writer: Engine, commits: Commits
) -> None:
    group = GroupCommit(writer)
    members = [Member(_appender(database, f"m{i}@example.com")) for i in range(4)]
    _run(group, members)
    assert [m.error for m in members] == [None] * 4
    assert sorted(m.result for m in members) == [1, 2, 3, 4]  # type: ignore[type-var]
    assert commits.count == 1
    assert sorted(_emails(database)) == [f"m{i}@example.com" for i in range(4)]
    assert _chain_ok(database)


def test_a_failing_body_undoes_its_own_work_only(
    database: Database, writer: Engine, commits: Commits
) -> None:
    group = GroupCommit(writer)
    members = [
        Member(_appender(database, "a@example.com")),
        Member(_failing(database, "b@example.com")),
        Member(_appender(database, "c@example.com")),
    ]
    _run(group, members)
    assert members[0].error is None
    assert isinstance(members[1].error, RuntimeError)
    assert "b@example.com" in str(members[1].error)
    assert members[2].error is None
    assert commits.count == 1
    # b's savepoint took its entry and its move of the head with it: no gap in the chain.
    assert sorted(_emails(database)) == ["a@example.com", "c@example.com"]
    assert sorted(m.result for m in (members[0], members[2])) == [1, 2]  # type: ignore[type-var]
    assert _chain_ok(database)


def test_the_first_body_failing_leaves_the_others_whole(database: Database, writer: Engine) -> None:
    group = GroupCommit(writer)
    members = [
        Member(_failing(database, "first@example.com")),
        Member(_appender(database, "second@example.com")),
        Member(_appender(database, "third@example.com")),
    ]
    _run(group, members)
    assert isinstance(members[0].error, RuntimeError)
    assert [members[1].error, members[2].error] == [None, None]
    assert sorted(_emails(database)) == ["second@example.com", "third@example.com"]
    assert _chain_ok(database)


def test_a_failed_commit_reaches_every_member_and_keeps_nothing(
    database: Database, writer: Engine
) -> None:
    group = GroupCommit(writer)

    def refuse(_connection: Connection) -> None:
        raise RuntimeError("the commit failed")

    event.listen(writer, "commit", refuse)
    try:
        members = [Member(_appender(database, f"n{i}@example.com")) for i in range(3)]
        _run(group, members)
    finally:
        event.remove(writer, "commit", refuse)
    assert [str(m.error) for m in members] == ["the commit failed"] * 3
    assert _emails(database) == []


def test_a_swallowed_database_error_fails_the_whole_group(
    database: Database, writer: Engine
) -> None:
    """PostgreSQL answers COMMIT in a failed transaction with a silent rollback; the
    group sees the failed state and tells every member instead of acknowledging."""
    if database.dialect != "postgresql":
        pytest.skip("only PostgreSQL fails a whole transaction on one statement's error")
    group = GroupCommit(writer)

    def swallow(connection: Connection) -> object:
        # The careless body this test is about: it swallows the database's error.
        with contextlib.suppress(DBAPIError):
            connection.execute(text("SELECT 1 / 0"))
        return None

    members = [Member(_appender(database, "kept@example.com")), Member(swallow)]
    _run(group, members)
    assert all(isinstance(m.error, GroupAborted) for m in members)
    assert _emails(database) == []


def test_a_full_group_lets_the_next_one_start(
    database: Database, writer: Engine, commits: Commits
) -> None:
    group = GroupCommit(writer, limit=2)
    first = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def member(email: str, hold: bool) -> None:
        try:
            with group.transaction() as connection:
                if hold:
                    first.set()
                    assert release.wait(WAIT_S)
                record_consent(connection, _grant(database, email))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=member, args=("g0@example.com", True))]
    threads[0].start()
    assert first.wait(WAIT_S)
    for i in (1, 2):
        threads.append(threading.Thread(target=member, args=(f"g{i}@example.com", False)))
        threads[-1].start()
    # g1 joins the held group (now full); g2 starts the next one and waits at the head.
    _until(lambda: group._open is not None and group._open.joined == 1 and _members(group) == 1)
    release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert errors == []
    assert commits.count == 2
    assert sorted(_emails(database)) == [f"g{i}@example.com" for i in range(3)]
    assert _chain_ok(database)


def test_many_threads_append_once_each_in_order(database: Database) -> None:
    """The ledger through ``Database.write_connection()`` from many threads doing
    request work (a group commit on PostgreSQL, the write lock on SQLite): every
    acknowledged entry is in the chain once, and the chain verifies."""
    threads, per_thread = 8, 10
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer_thread(t: int) -> None:
        try:
            for i in range(per_thread):
                with database.sharing(), database.write_connection() as connection:
                    seq = record_consent(connection, _grant(database, f"t{t}-{i}@example.com")).seq
                with lock:
                    acknowledged.append(seq)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=writer_thread, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert sorted(acknowledged) == list(range(1, threads * per_thread + 1))
    with database.read() as session:
        assert session.execute(select(func.count()).select_from(ConsentEvent)).scalar_one() == 80
    assert _chain_ok(database)


def test_a_write_inside_a_write_does_not_wait_for_itself(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer: a write inside a write waits, as it always has")
    with database.sharing(), database.write_connection() as outer:
        record_consent(outer, _grant(database, "outer@example.com"))
        with database.write_connection() as inner:
            assert inner is not outer
            assert inner.execute(text("SELECT 1")).scalar_one() == 1
    with database.write() as session:
        with database.write_connection() as inner:
            assert inner.execute(text("SELECT 1")).scalar_one() == 1
        session.execute(text("SELECT 1"))
    assert _emails(database) == ["outer@example.com"]


# ORM sessions: Database.write() on PostgreSQL joins the same groups.


def _session_member(
    database: Database, subject_id: str, *, hold: threading.Event | None = None
) -> Callable[[], None]:
    def run() -> None:
        with database.sharing(), database.write() as session:
            if hold is not None:
                hold.wait(WAIT_S)
            session.add(Subject(id=subject_id, locale="en"))

    return run


def _subjects(database: Database) -> list[str]:
    with database.read() as session:
        return sorted(session.execute(select(Subject.id)).scalars())


def _threads(database: Database, runs: list[Callable[[], None]]) -> list[BaseException | None]:
    """Start ``runs[0]``; once it holds the group, the rest; their errors, in order."""
    errors: list[BaseException | None] = [None] * len(runs)

    def go(i: int) -> None:
        try:
            runs[i]()
        except BaseException as exc:  # the test inspects it
            errors[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(runs))]
    threads[0].start()
    group = database._group  # the PostgreSQL group commit, None on SQLite
    if group is not None:
        _until(lambda: _members(group) == 1)
    for thread in threads[1:]:
        thread.start()
    if group is not None:
        _until(lambda: _members(group) == len(runs))
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive()
    return errors


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failed_flush_in_a_shared_session_undoes_its_own_work_only(
    database: Database, failing: int
) -> None:
    """A duplicate key at flush (what an idempotent retry of a form meets): the member
    gets the IntegrityError; the others' rows are committed, first member or not."""
    with database.write() as session:
        session.add(Subject(id="taken", locale="en"))
    hold = threading.Event()
    ids = ["s0", "s1", "s2"]
    ids[failing] = "taken"
    runs = [
        _session_member(database, ids[0], hold=hold),
        _session_member(database, ids[1]),
        _session_member(database, ids[2]),
    ]
    releaser = threading.Timer(0.2, hold.set)
    releaser.start()
    errors = _threads(database, runs)
    releaser.join()
    assert [type(e) if e else None for e in errors] == [
        IntegrityError if i == failing else None for i in range(3)
    ]
    assert _subjects(database) == sorted({"taken", *ids})


def test_after_commit_listeners_run_once_the_group_committed(database: Database) -> None:
    seen: list[list[str]] = []

    def listener(_session: Session) -> None:
        seen.append(_subjects(database))  # another connection: only committed rows

    with database.sharing(), database.write() as session:
        event.listen(session, "after_commit", listener, once=True)
        session.add(Subject(id="listened", locale="en"))
    assert seen == [["listened"]]


def test_a_shared_session_is_rolled_back_by_raising(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("the group commit is PostgreSQL's; SQLite sessions commit as before")

    def roll_back() -> None:
        with database.sharing(), database.write() as session:
            session.add(Subject(id="never", locale="en"))
            session.rollback()

    def commit() -> None:
        with database.sharing(), database.write() as session:
            session.commit()

    with pytest.raises(TypeError, match="rolled back by raising"):
        roll_back()
    with pytest.raises(TypeError, match="commits when its block ends"):
        commit()
    assert _subjects(database) == []


def test_a_job_keeps_its_own_transaction(database: Database) -> None:
    """Writes outside request work (a job's rescoring batch, a purge) are never shared:
    a request's write does not queue behind a job's long body."""
    if database.dialect != "postgresql":
        pytest.skip("SQLite has one writer: the request waits for the job, as it always has")
    inside = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def job() -> None:
        try:
            with database.write() as session:
                session.add(Subject(id="job", locale="en"))
                inside.set()
                assert release.wait(WAIT_S)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=job)
    thread.start()
    assert inside.wait(WAIT_S)
    with database.sharing(), database.write() as session:
        session.add(Subject(id="request", locale="en"))
    assert _subjects(database) == ["request"]  # committed while the job still runs
    release.set()
    thread.join(WAIT_S)
    assert errors == []
    assert _subjects(database) == ["job", "request"]


def test_a_request_s_work_shares_through_run(database: Database) -> None:
    """``Database.run`` is where a request's work is marked as sharing."""
    seen: list[bool] = []
    # An event loop of its own, in a thread of its own (the suite may have one running).
    thread = threading.Thread(
        target=anyio.run, args=(database.run, lambda: seen.append(database._shares()))
    )
    thread.start()
    thread.join(WAIT_S)
    assert seen == [database.dialect == "postgresql"]
