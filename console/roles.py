"""Staff roles and what each may do.

- ``admin``: everything.
- ``compliance``: read and export everything, run ledger verification, process
  data-subject requests; changes nothing else.
- ``marketer``: forms, quizzes and their versions, reports, leads and their timelines
  without raw evidence (no IP addresses, no user agents), no exports.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    COMPLIANCE = "compliance"
    MARKETER = "marketer"


class Permission(StrEnum):
    VIEW_LEADS = "view-leads"
    VIEW_EVIDENCE = "view-evidence"
    VIEW_LEDGER = "view-ledger"
    EXPORT = "export"
    VIEW_PROOFS = "view-proofs"
    VIEW_HEALTH = "view-health"
    RUN_VERIFICATION = "run-verification"
    HANDLE_REQUESTS = "handle-requests"
    VIEW_REPORTS = "view-reports"
    VIEW_VERSIONS = "view-versions"
    VIEW_AUDIT_LOG = "view-audit-log"


_COMPLIANCE = frozenset(Permission) - {Permission.VIEW_AUDIT_LOG}
_MARKETER = frozenset({Permission.VIEW_LEADS, Permission.VIEW_REPORTS, Permission.VIEW_VERSIONS})

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.COMPLIANCE: _COMPLIANCE,
    Role.MARKETER: _MARKETER,
}


def may(role: str, permission: Permission) -> bool:
    try:
        return permission in PERMISSIONS[Role(role)]
    except ValueError:
        return False
