"""Staff roles and what each may do.

- ``admin``: everything, including ending the sessions of any staff account.
- ``compliance``: read and export everything, run ledger verification, process
  data-subject requests; changes nothing else (the hand-off SLA page is read-only).
- ``marketer`` (marketing and sales ops): forms, quizzes and their versions, reports,
  accounts, leads and their timelines without raw evidence (no IP addresses, no user
  agents), no exports; acknowledges hand-offs on the SLA page and records BANT and
  won/lost on a lead's page.
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
    VIEW_ACCOUNTS = "view-accounts"
    VIEW_SLA = "view-sla"
    ACKNOWLEDGE_HANDOFFS = "acknowledge-handoffs"
    RECORD_SALES = "record-sales"  # BANT and won/lost on a lead's page
    MANAGE_STAFF = "manage-staff"  # end the sessions of any staff account


# Compliance reads the hand-off SLA page and sales' records but does not act for sales
# (no acknowledgements, no BANT or outcomes).
_COMPLIANCE = frozenset(Permission) - {
    Permission.VIEW_AUDIT_LOG,
    Permission.ACKNOWLEDGE_HANDOFFS,
    Permission.RECORD_SALES,
    Permission.MANAGE_STAFF,
}
_MARKETER = frozenset(
    {
        Permission.VIEW_LEADS,
        Permission.VIEW_REPORTS,
        Permission.VIEW_VERSIONS,
        Permission.VIEW_ACCOUNTS,
        Permission.VIEW_SLA,
        Permission.ACKNOWLEDGE_HANDOFFS,
        Permission.RECORD_SALES,
    }
)

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
