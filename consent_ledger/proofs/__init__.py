"""Proofs anyone can check: the Merkle tree over the ledger (RFC 9162), signed
checkpoints, inclusion and consistency proofs, and consent receipts.

``merkle`` holds the RFC 9162 hashing and proof algorithms; ``tree`` keeps the tree's
nodes in the database as entries are appended; ``checkpoints`` signs and parses
checkpoint notes; ``transparency`` makes, stores and serves checkpoints with this host's
key; ``receipts`` builds and verifies a receipt a regulator can check offline.
"""
