"""Benchmarks: zeroparty's hot paths beside a bare baseline measured in the same run.

Each scenario is a module runnable alone (``python -m bench.ledger_appends``);
``python -m bench.run_all [--quick]`` runs them all and rewrites ``BENCHMARKS.md``.
Figures are judged as a ratio against the bare baseline (see the notes in
``BENCHMARKS.md``), never as absolute numbers from another machine.
"""
