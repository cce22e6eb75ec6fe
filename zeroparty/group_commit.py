"""Group commit: concurrent write transactions of one process share one commit.

On PostgreSQL a ledger append locks the ledger head's row until its transaction
commits, WAL flush included, so the appends of a process's threads queue behind each
other's commits and four writers append hardly more than one. Here a thread that opens
a write transaction while another thread's is running joins it instead of opening its
own: the bodies run one after another on the one connection, each after the first
inside its own savepoint, and the last member to finish commits for all of them. The
head is locked once and the WAL flushed once per group.

What a caller sees does not change:

- the ``with`` block returns only after the group's commit, so "the block returned"
  still means "committed" (and code after it, such as mail, runs after the commit);
- a body that raises undoes its own statements only (its savepoint, or for the group's
  first work the whole transaction, begun again) and gets its own exception, once the
  group has committed (a later member that fails on an earlier one's rows, such as a
  retry meeting the first submission's unique key, then finds them committed, as it
  would have after waiting for that transaction);
- if the commit fails, or the transaction was lost under the group (a body rolled back
  more than its own work, or swallowed an error PostgreSQL had already failed the
  transaction for, which COMMIT would silently turn into a rollback), every member whose
  work was in it gets an error and nothing of the group is kept. Never is a member told
  "committed" for work that is not.

A group takes at most ``limit`` members; later arrivals start the next group, which
waits at the head lock for this one's commit like any other transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from psycopg.pq import TransactionStatus
from sqlalchemy import Engine
from sqlalchemy.engine import Connection, NestedTransaction, RootTransaction

# PostgreSQL keeps 64 subtransaction ids per backend before its snapshots slow down
# for everyone ("subxid overflow"); every member after the first is one.
GROUP_LIMIT = 32


class GroupAborted(RuntimeError):
    """The shared transaction was lost under the group; nothing of it was kept."""


def _aborted(connection: Connection) -> bool:
    """Whether the database already failed this connection's transaction (PostgreSQL)."""
    info = getattr(connection.connection.dbapi_connection, "info", None)
    return getattr(info, "transaction_status", None) == TransactionStatus.INERROR


@dataclass(eq=False, slots=True)
class _Group:
    """One shared transaction and the threads in it."""

    turn: threading.Lock = field(default_factory=threading.Lock)  # who uses the connection
    done: threading.Event = field(default_factory=threading.Event)  # committed or failed
    connection: Connection | None = None
    transaction: RootTransaction | None = None
    members: int = 0  # joined, not yet finished
    joined: int = 0
    has_work: bool = False  # a finished body's statements are in the transaction
    error: BaseException | None = None  # the group cannot commit (or its commit failed)


class GroupCommit:
    """Write transactions on ``engine`` that the threads of this process share."""

    def __init__(self, engine: Engine, *, limit: int = GROUP_LIMIT) -> None:
        self._engine = engine
        self._limit = limit
        self._mutex = threading.Lock()
        self._open: _Group | None = None  # the group new members join

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a write transaction shared with other threads' bodies;
        committed (for all of them) before this returns.

        The body may bind an ORM session to the connection with
        ``join_transaction_mode="rollback_only"``: it then joins this body's savepoint,
        and a failed flush rolls back this body's work only."""
        group = self._join()
        failed = True
        try:
            with group.turn:
                connection = self._connection(group)
                savepoint = self._savepoint(group, connection)
                try:
                    yield connection
                except BaseException:
                    self._undo(group, connection, savepoint)
                    raise
                self._kept(group, connection)
                failed = False
        finally:
            # A failed member waits for the commit too: its failure may come from an
            # earlier member's rows (a unique key both insert), and what it does next,
            # such as reading those rows in a new transaction, must find them committed,
            # as it would have after waiting for that member's own transaction.
            if self._leave(group):
                self._commit(group)
            else:
                group.done.wait()
        if group.error is not None and not failed:
            raise group.error

    def _join(self) -> _Group:
        with self._mutex:
            group = self._open
            if group is None or group.joined >= self._limit:
                group = self._open = _Group()
            group.members += 1
            group.joined += 1
            return group

    def _leave(self, group: _Group) -> bool:
        """Whether the caller was the group's last member and so commits it."""
        with self._mutex:
            group.members -= 1
            if group.members:
                return False
            if self._open is group:
                self._open = None
            return True

    def _connection(self, group: _Group) -> Connection:
        if group.error is not None:
            raise group.error
        if group.connection is None:
            # The first member to get the turn opens the group's transaction. If it
            # cannot, it alone fails; the next member tries again.
            connection = self._engine.connect()
            try:
                group.transaction = connection.begin()
            except BaseException:
                connection.close()
                raise
            group.connection = connection
        return group.connection

    def _savepoint(self, group: _Group, connection: Connection) -> NestedTransaction | None:
        """A savepoint before this body when earlier bodies' work is in the transaction.
        It is never released: the commit keeps it, a rollback to it drops this body's
        work only, and a release would cost a round trip for nothing."""
        if not group.has_work:
            return None
        try:
            return connection.begin_nested()
        except BaseException as exc:
            group.error = exc  # the earlier bodies' work can no longer be kept apart
            raise

    def _undo(
        self, group: _Group, connection: Connection, savepoint: NestedTransaction | None
    ) -> None:
        """Drop a failed body's work, and only its work."""
        root = group.transaction
        assert root is not None
        try:
            if savepoint is not None:
                if savepoint.is_active:  # a failed ORM flush rolled it back already
                    savepoint.rollback()
                if not root.is_active:
                    raise GroupAborted("a write undid more than its own work; nothing was kept")
                return
            # Nobody else's work is in the transaction yet: start it again.
            if root.is_active:
                root.rollback()
            group.transaction = connection.begin()
        except BaseException as exc:
            group.error = exc  # the group's transaction is gone: it cannot commit

    def _kept(self, group: _Group, connection: Connection) -> None:
        """After a body that returned: its work is the group's."""
        root = group.transaction
        assert root is not None
        if not root.is_active:
            # The body rolled back the whole transaction (an ORM session's rollback()).
            if group.has_work:
                group.error = GroupAborted(
                    "a write undid more than its own work; nothing of its group was kept"
                )
                return
            group.transaction = connection.get_transaction() or connection.begin()
        group.has_work = True

    def _commit(self, group: _Group) -> None:
        try:
            if group.connection is None:
                return
            root = group.transaction
            if group.error is None and root is not None:
                if _aborted(group.connection):
                    # PostgreSQL answers COMMIT in a failed transaction with a silent
                    # rollback: a body swallowed a database error without a savepoint.
                    group.error = GroupAborted(
                        "a write transaction failed and was rolled back; nothing was kept"
                    )
                    root.rollback()
                elif group.has_work:
                    root.commit()
                else:
                    root.rollback()
        except BaseException as exc:
            group.error = exc
        finally:
            try:
                if group.connection is not None:
                    group.connection.close()
            finally:
                group.done.set()
