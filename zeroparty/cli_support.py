"""What every package's commands share: the database and the wired ledger of one command.

The CLI (:mod:`zeroparty.cli`) builds the parser from each package's wiring
(:attr:`zeroparty.wiring.Feature.commands`); a handler takes the parsed arguments and the
settings and returns the exit code (0 success, 1 a check failed, 2 bad usage or input).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from zeroparty.db import Database
from zeroparty.settings import Settings

if TYPE_CHECKING:
    from consent_ledger.api import ConsentLedger

if TYPE_CHECKING:
    # The top-level sub-commands a package adds its own to.
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


@contextmanager
def opened_database(settings: Settings) -> Iterator[Database]:
    """The database for one command, its connections closed when the command ends."""
    database = Database.from_url(settings.database_url)
    try:
        yield database
    finally:
        database.dispose()


@contextmanager
def opened_ledger(settings: Settings) -> Iterator[ConsentLedger]:
    """The ledger of one command, wired as the app's (every package's listeners and
    personal data), on :func:`opened_database`."""
    from zeroparty.wiring import build_ledger

    with opened_database(settings) as database:
        yield build_ledger(database)


def lead_id(database: Database, raw_email: str) -> str | None:
    """The lead id of an email typed on the command line; ``None`` (and a line on
    stderr) when there is no such lead."""
    from consent_ledger.subjects import find_subject_id, normalise_email

    email = normalise_email(raw_email)
    with database.read() as session:
        subject_id = find_subject_id(session, email)
    if subject_id is None:
        print(f"no lead with email {email}", file=sys.stderr)
    return subject_id
