"""Consent sync: carries every permission, and every change to it, to the tools that act
on it (audiences for sending tools, the change feed, the suppression list, outgoing
subscriptions and inbound unsubscribes).

It reaches the ledger only through :mod:`consent_ledger.api` and the read-only queries
of :mod:`consent_ledger.read_model`, like every feature package.
"""
