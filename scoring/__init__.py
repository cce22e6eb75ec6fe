"""Consent-gated lead scoring, lifecycle stages and hand-off to sales.

Only leads whose consent for the gating purpose (and for the purpose each input was
collected for) is live are scored, staged beyond Lead or handed off (SPEC rule 3); a
withdrawal removes scores and hand-off eligibility in the transaction that records it.
"""
