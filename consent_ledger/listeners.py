"""Listeners told of every ledger append, inside the appending transaction.

A feature package that keeps data derived from consent (scoring keeps scores and
events) names a listener in its wiring (:mod:`zeroparty.wiring`), and the app's
:class:`consent_ledger.api.ConsentLedger` calls it so a withdrawal takes effect in the
same transaction that records it (SPEC rule 2), without the ledger importing that
package. Listeners run after the projection is updated, under the ledger head lock:
they must be quick and must only act on the few entries they care about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consent_ledger.entries import LedgerEntry
from zeroparty.db import Transaction

# A listener is given the appending transaction as the appender holds it: an ORM session
# (Database.write) or a plain connection (Database.write_connection, which then costs no
# session). Listeners run Core statements only, so either serves.
ConsentListener = Callable[[Transaction, Sequence[LedgerEntry]], None]
