"""The compliance console: staff accounts and roles, audit search and timelines, ledger
filters and exports, proofs, ledger health, data-subject requests, reports, versions."""
